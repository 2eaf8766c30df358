"""Monitoring: reads, never writes, what the lower layers recorded, to answer four questions
(is it up, is it slow, are jobs failing, did the last deploy change anything): health, the
Prometheus metrics, trends, the before/after comparison of a deploy, why a run is where
it is, and when each queue's backlog clears.

Owns: runner.monitoring.health, metrics, trends, compare, durations, answers, why, forecast.
May import: the shared modules, connections, runs, delivery, client (the outbox's table, for
why), worker (for liveness and the relay's database engine).
"""
