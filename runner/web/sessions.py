"""Console sessions: a random id signed with its times in the cookie, so a session is checked
without Redis (the incident page works while Redis is down); signed-out sessions are listed in
Redis and refused whenever Redis answers. The strength rule for the token lives here too."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import structlog
from redis import Redis

from runner.config import Settings
from runner.connections.redis import REDIS_DOWN
from runner.errors import ConfigError
from runner.keys import Keys

log = structlog.get_logger("runner.web")
TOKEN_MIN_LENGTH = 32
TOKEN_MIN_DISTINCT = 16
REFRESH_SECONDS = 60.0  # a session in use gets a new idle deadline at most this often
REDIS_PAUSE_SECONDS = (
    5.0  # after Redis failed to answer, sessions are not checked there for this long
)
MAKE_ONE = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'


def check_token(token: str | None) -> None:
    """Raise ConfigError unless `token` is unset or long and varied enough to resist guessing."""
    if token is None:
        return
    if len(token) < TOKEN_MIN_LENGTH or len(set(token)) < TOKEN_MIN_DISTINCT:
        raise ConfigError(
            f"RUNNER_WEB_TOKEN is too weak ({len(token)} characters, {len(set(token))} distinct):"
            f" it needs at least {TOKEN_MIN_LENGTH} characters and {TOKEN_MIN_DISTINCT} distinct"
            f" ones; make one with: {MAKE_ONE}"
        )


def equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def handle(session_id: str) -> str:
    """A non-secret name of a session for the logs: a hash prefix of its id."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in browser: its id, when it signed in, and when it ends unless used again."""

    id: str
    started: float
    ends: float

    @property
    def handle(self) -> str:
        return handle(self.id)


class Sessions:
    """Issues, checks and revokes the console's session cookies (keyed by the token)."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        if settings.web_token is None:
            raise ConfigError("sessions need RUNNER_WEB_TOKEN")
        self.redis = redis
        self.keys = Keys(settings.prefix)
        self.idle = settings.web_session_idle_seconds
        self.longest = settings.web_session_max_seconds
        self._key = hmac.new(settings.web_token.encode(), b"runner-console-session", "sha256")
        https = (settings.web_origin or "").startswith("https://")
        self.cookie = "__Host-runner_console" if https else "runner_console"
        self.secure = https
        self._redis_back_at = 0.0  # monotonic time to ask Redis again after it failed

    def start(self, *, now: float | None = None) -> Session:
        """A new session (a new id at every sign-in: a cookie set before it is worth nothing)."""
        now = time.time() if now is None else now
        return Session(secrets.token_urlsafe(18), now, min(now + self.idle, now + self.longest))

    def renewed(self, session: Session, *, now: float | None = None) -> Session | None:
        """The session with a later idle deadline, when it is due one; else None."""
        now = time.time() if now is None else now
        ends = min(now + self.idle, session.started + self.longest)
        if ends - session.ends < REFRESH_SECONDS:
            return None
        return Session(session.id, session.started, ends)

    def value(self, session: Session) -> str:
        body = f"{session.id}.{int(session.started)}.{int(session.ends)}"
        return f"{body}.{self._sign(body)}"

    def check(self, value: str, *, now: float | None = None) -> Session | None:
        """The session a cookie value holds, if its signature holds, it has not ended and (when
        Redis answers) it was not signed out."""
        now = time.time() if now is None else now
        parts = value.split(".")
        if len(parts) != 4 or not all(p.isascii() for p in parts):
            return None
        sid, started_text, ends_text, signature = parts
        if not equal(signature, self._sign(f"{sid}.{started_text}.{ends_text}")):
            return None
        started, ends = int(started_text), int(ends_text)
        if now >= ends or now >= started + self.longest:
            return None
        if self._revoked(sid):
            return None
        return Session(sid, started, ends)

    def revoke(self, session: Session) -> None:
        """Sign the session out: refused from now on wherever Redis answers."""
        ttl = max(1, int(session.started + self.longest - time.time()) + 1)
        self.redis.set(self.keys.web_revoked(session.id), "1", ex=ttl)

    def _revoked(self, sid: str) -> bool:
        """Whether the session signed out; False while Redis does not answer (the signature
        alone decides), without waiting for it on every request of an outage."""
        if time.monotonic() < self._redis_back_at:
            return False
        try:
            return bool(self.redis.exists(self.keys.web_revoked(sid)))
        except REDIS_DOWN:
            self._redis_back_at = time.monotonic() + REDIS_PAUSE_SECONDS
            log.warning("web.sessions_unchecked", reason="redis is down")
            return False

    def _sign(self, body: str) -> str:
        mac = self._key.copy()
        mac.update(body.encode())
        return mac.hexdigest()[:40]
