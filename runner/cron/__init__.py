"""Cron: schedule entries, the minutes (slots) they are due at, and the tick that fires them
as runs, and what an operator is shown of each entry.

Owns: runner.cron.schedule, ticks, status.
May import: the shared modules, runner.connections, runner.runs.
"""
