"""The worker: the supervisor process and its horses, the reaper that finds lost runs, the
liveness of workers, the handover at a stop, and the outbox relay process.

Owns: runner.worker.supervisor, horse, reaper, liveness, handover, relay, relay_process.
May import: everything below it: the shared modules, connections, runs, delivery, client,
attempt.
"""
