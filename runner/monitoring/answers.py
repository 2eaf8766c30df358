"""The answer to one of health's four questions: a verdict and one line of figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Verdict(StrEnum):
    """How one question is answered."""

    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class Answer:
    """One question's answer: its verdict, one line of figures, and the figures as data."""

    question: str
    verdict: Verdict
    text: str
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.verdict == Verdict.OK

    def line(self) -> str:
        return f"{self.question:<8} {self.verdict:<5} {self.text}"
