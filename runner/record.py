"""The run record: one token's durable state, and its encoding as a Redis hash."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, cast

ACTIVE = frozenset({"queued", "running", "retrying"})
TERMINAL = frozenset({"succeeded", "failed"})
JSON_FIELDS = ("args", "result", "error", "cursor", "counters")


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One token's durable run: what, how far, and how it went."""

    token: str
    task: str
    args: dict[str, Any]
    queue: str
    state: str
    attempt: int
    timeout: int = 3600
    attempt_base: int = 0
    max_attempts: int = 5
    generation: int = 0
    job_id: str = ""
    worker: str = ""
    code_version: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    retry_at: float | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    cursor: Any = None
    counters: dict[str, int] | None = None
    total: int | None = None

    @classmethod
    def from_hash(cls, raw: Mapping[bytes, bytes]) -> RunRecord:
        """Decode the hash Redis holds (bytes to typed fields)."""
        f = {k.decode(): v.decode() for k, v in raw.items()}

        def num(name: str) -> float | None:
            return float(f[name]) if f.get(name) else None

        def loads(name: str) -> Any:
            return json.loads(f[name]) if f.get(name) else None

        return cls(
            token=f["token"],
            task=f["task"],
            args=loads("args") or {},
            queue=f.get("queue", "default"),
            state=f["state"],
            attempt=int(f.get("attempt", 1)),
            timeout=int(f.get("timeout") or 3600),
            attempt_base=int(f.get("attempt_base", 0)),
            max_attempts=int(f.get("max_attempts", 5)),
            generation=int(f.get("generation", 0)),
            job_id=f.get("job_id", ""),
            worker=f.get("worker", ""),
            code_version=f.get("code_version", ""),
            created_at=num("created_at") or 0.0,
            updated_at=num("updated_at") or 0.0,
            started_at=num("started_at"),
            finished_at=num("finished_at"),
            retry_at=num("retry_at"),
            result=loads("result"),
            error=loads("error"),
            cursor=loads("cursor"),
            counters=loads("counters"),
            total=int(f["total"]) if f.get("total") else None,
        )

    @property
    def attempts_left(self) -> int:
        """Attempts this run may still make after the current one."""
        return self.max_attempts - (self.attempt - self.attempt_base)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def texts(values: Any) -> list[str]:
    """Decode a list of Redis replies (bytes) to strings."""
    return [v.decode() if isinstance(v, bytes) else str(v) for v in cast(list[Any], values)]


def encode(fields: Mapping[str, Any]) -> list[str]:
    """Flatten fields into HSET arguments; JSON fields are JSON-encoded, None becomes ''."""
    flat: list[str] = []
    for name, value in fields.items():
        if name in JSON_FIELDS:
            flat += [name, json.dumps(value, separators=(",", ":"))]
        else:
            flat += [name, "" if value is None else str(value)]
    return flat
