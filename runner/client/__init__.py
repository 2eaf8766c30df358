"""The client: how application code enqueues, waits for, cancels and reruns runs (`Client`,
`AsyncClient`), and the transactional outbox a site writes in its own database transaction.

Owns: runner.client.sync (Client), aio (AsyncClient), outbox.
May import: the shared modules, runner.connections, runner.runs.
"""
