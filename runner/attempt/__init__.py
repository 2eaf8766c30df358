"""One attempt: claim the lease, run the task in its `Run` context (checkpoints, steps, pace),
release with the outcome and what it cost.

Owns: runner.attempt.execute (claim and release), context (Run), lease, pace, effort.
May import: the shared modules, runner.connections, runner.runs, runner.delivery.
"""
