"""The pace of a long step's progress lines: one `step.progress` event every so many seconds
or checkpoints, whichever comes first, with the position, counters and rate."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

EVERY_SECONDS = 10.0
EVERY_CHECKPOINTS = 100


class ProgressPace:
    """Counts an attempt's checkpoints and says when the next progress line is due."""

    def __init__(
        self, counters: Mapping[str, int], *, seconds: float = EVERY_SECONDS,
        checkpoints: int = EVERY_CHECKPOINTS,
    ) -> None:  # fmt: skip
        self.seconds = seconds
        self.checkpoints = checkpoints
        self._since = time.monotonic()
        self._done = sum(counters.values())
        self._count = 0

    def due(self, counters: Mapping[str, int]) -> dict[str, Any] | None:
        """After a checkpoint: the rate fields of a progress line when one is due, else None.
        The rate is the counters' growth per second since the last line (or the start)."""
        self._count += 1
        now = time.monotonic()
        elapsed = now - self._since
        if self._count < self.checkpoints and elapsed < self.seconds:
            return None
        done = sum(counters.values())
        rate = (done - self._done) / elapsed if elapsed > 0 else 0.0
        fields = {"checkpoints": self._count, "per_second": round(rate, 1)}
        self._since, self._done, self._count = now, done, 0
        return fields
