"""Runs: the run record in Redis and every change of its state (one transition per row of
`RunState`'s table), the scripts that make them, the figures each transition writes, and the
ways a run comes to exist or change on request: enqueue, rerun, cancel, the indexes, retention.

Owns: runner.runs.transitions (Runs), scripts (the Lua), figures (the per-minute hashes and
their key layout), enqueue, rerun, cancel, index, retention, history (reads and writes the
history tables), history_tables (the tables, their database and migrations), search (runs by
their arguments or error), pages (runs paged over Redis and history, one order), move
(finished runs from Redis to history), attempts, deploys,
rqjobs (the RQ job hash of an attempt: enqueue writes it, so it lives here, below delivery),
summary (a run in a few words for people), backlog (queues' depths, sampled each minute),
limits (limits per key: holders, starts, the wait set and its wake), tracing (the spans of
attempts and steps, and the trace context a run carries, when OpenTelemetry is set up).
May import: the shared modules and runner.connections.
"""
