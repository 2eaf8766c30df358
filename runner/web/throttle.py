"""Sign-in throttling: attempts counted per client address and overall in Redis (so every
console process shares them), in fixed windows; over the limit, 429 with Retry-After."""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from redis import Redis

from runner.connections.redis import REDIS_DOWN
from runner.keys import Keys

log = structlog.get_logger("runner.web")
WINDOW_SECONDS = 60
PER_CLIENT = 10  # attempts per client address per window
OVERALL = 100  # attempts from every client together per window


@dataclass(frozen=True, slots=True)
class SignInThrottle:
    """Counts one attempt and says how long to wait, or 0 when it may go ahead."""

    redis: Redis
    keys: Keys
    per_client: int = PER_CLIENT
    overall: int = OVERALL

    def wait(self, client: str) -> int:
        """Count an attempt from `client`; seconds it must wait (0: go ahead). With Redis
        down nothing is counted (the token's length is what stops guessing)."""
        mine, every = self.keys.web_sign_ins(client), self.keys.web_sign_ins("*")
        pipe = self.redis.pipeline(transaction=True)
        for key in (mine, every):
            pipe.set(key, 0, ex=WINDOW_SECONDS, nx=True)  # a new window starts at 0
            pipe.incr(key)
            pipe.ttl(key)
        try:
            _, mine_count, mine_ttl, _, every_count, every_ttl = pipe.execute()
        except REDIS_DOWN:
            log.warning("web.sign_in_not_throttled", reason="redis is down", client=client)
            return 0
        waits = [
            max(1, int(ttl)) for count, limit, ttl in
            ((mine_count, self.per_client, mine_ttl), (every_count, self.overall, every_ttl))
            if int(count) > limit
        ]  # fmt: skip
        if waits:
            log.warning("web.sign_in_throttled", client=client, retry_after=max(waits))
        return max(waits, default=0)
