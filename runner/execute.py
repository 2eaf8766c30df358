"""The alias jobs queued before the engine moved into subsystems still name
(`runner.execute.perform_attempt`, runner.runs.rqjobs.LEGACY_PERFORM): a deploy must run them."""

from __future__ import annotations

from runner.attempt.execute import perform_attempt

__all__ = ["perform_attempt"]
