"""Monitoring: reads, never writes, what the lower layers recorded, to answer four questions
(is it up, is it slow, are jobs failing, did the last deploy change anything): health, the
Prometheus metrics, trends and the before/after comparison of a deploy.

Owns: runner.monitoring.health, metrics, trends, compare, durations, answers.
May import: the shared modules, connections, runs, delivery, worker (for liveness).
"""
