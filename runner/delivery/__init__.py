"""Delivery: how a queued job reaches an attempt (dequeue, take-ahead) and how one lost on the
way is found; RQ's bookkeeping around each job.

Owns: runner.delivery.dequeue, bookkeeping.
May import: the shared modules, runner.connections, runner.runs.
"""
