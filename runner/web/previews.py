"""Bulk rerun previews: the exact runs a preview listed (token -> state and attempt), stored
in Redis under a one-time id; confirming claims the id (a replay finds nothing) and keeps what
happened for the result page (POST/redirect/GET)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from dataclasses import asdict
from typing import cast

from redis import Redis

from runner.keys import Keys
from runner.record import RunRecord
from runner.runs.rerun import Rerun, RerunAction

PREVIEW_SECONDS = 3600  # a preview not confirmed within this is gone: preview again


class Previews:
    """Where previews and their outcomes live."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    def create(self, runs: Iterable[RunRecord]) -> str:
        """Store the runs a preview shows; its one-time id."""
        preview = secrets.token_urlsafe(16)
        listed = {r.token: f"{r.state}:{r.attempt}" for r in runs}
        if listed:
            pipe = self.redis.pipeline(transaction=True)
            pipe.hset(self.keys.web_preview(preview), mapping=listed)  # type: ignore[arg-type]
            pipe.expire(self.keys.web_preview(preview), PREVIEW_SECONDS)
            pipe.execute()
        return preview

    def listed(self, preview: str) -> dict[str, tuple[str, int]]:
        """The runs `preview` listed, token -> (state, attempt); empty once confirmed or gone."""
        raw = cast(dict[bytes, bytes], self.redis.hgetall(self.keys.web_preview(preview)))
        listed = {}
        for token, seen in raw.items():
            state, _, attempt = seen.decode().rpartition(":")
            listed[token.decode()] = (state, int(attempt))
        return listed

    def claim(self, preview: str) -> bool:
        """Take `preview` for one confirm: True for exactly one caller, ever."""
        return bool(self.redis.delete(self.keys.web_preview(preview)))

    def keep(self, preview: str, results: list[Rerun]) -> None:
        body = json.dumps([asdict(r) for r in results])
        self.redis.set(self.keys.web_bulk_done(preview), body, ex=PREVIEW_SECONDS)

    def outcome(self, preview: str) -> list[Rerun] | None:
        raw = self.redis.get(self.keys.web_bulk_done(preview))
        if raw is None:
            return None
        return [
            Rerun(r["token"], r["task"], r["state"], RerunAction(r["action"]), r["reason"])
            for r in json.loads(raw)
        ]
