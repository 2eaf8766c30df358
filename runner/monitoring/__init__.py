"""Monitoring: reads, never writes, what the lower layers recorded, to answer four questions
(is it up, is it slow, are jobs failing, did the last deploy change anything): health, the
Prometheus metrics, trends, the before/after comparison of a deploy, and why a run is where
it is.

Owns: runner.monitoring.health, metrics, trends, compare, durations, answers, why.
May import: the shared modules, connections, runs, delivery, worker (for liveness).
"""
