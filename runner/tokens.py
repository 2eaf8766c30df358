"""Idempotency tokens: the identity of one unit of work, and the RQ job ids derived from it."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any

from runner.errors import InvalidArguments

MAX_TOKEN_CHARS = 200
_TOKEN_RE = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces; raises InvalidArguments if not JSON-able."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidArguments(f"arguments must be JSON values: {exc}") from None


def derive_token(task: str, args: dict[str, Any]) -> str:
    """`task:<sha256 of the canonical arguments>`: the same work always has the same token."""
    digest = hashlib.sha256(canonical_json(args).encode()).hexdigest()[:32]
    return f"{task}:{digest}"


def content_token(task: str, content_sha256: str) -> str:
    """`task:<content hash>`: a file's content, not its path, identifies its import."""
    return f"{task}:{content_sha256[:32]}"


def slot_token(task: str, slot: datetime) -> str:
    """`task@2026-11-27T06:00Z`: one cron firing, whoever fires it."""
    return f"{task}@{slot.astimezone(UTC):%Y-%m-%dT%H:%MZ}"


def check_token(token: str) -> str:
    """Return the token unchanged; raises InvalidArguments if it is empty, long or has spaces."""
    if not token or len(token) > MAX_TOKEN_CHARS or not _TOKEN_RE.match(token):
        raise InvalidArguments(
            f"token {token[:60]!r} is invalid: use 1-{MAX_TOKEN_CHARS} printable characters"
            " without spaces"
        )
    return token


def job_id(token: str, attempt: int) -> str:
    """The RQ job id of one attempt (RQ allows only [A-Za-z0-9_-])."""
    digest = hashlib.sha256(token.encode()).hexdigest()[:24]
    return f"r{digest}-{attempt}"
