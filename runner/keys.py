"""Every Redis key the runner writes, built here and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass

from runner.record import RunState


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one prefix (default `runner:`); RQ keeps its own `rq:` keys."""

    prefix: str = "runner:"

    def run(self, token: str) -> str:
        """Hash: the run record."""
        return f"{self.prefix}run:{token}"

    def steps(self, token: str) -> str:
        """Hash: finished step name -> JSON of its result."""
        return f"{self.prefix}steps:{token}"

    def log(self, token: str) -> str:
        """Stream: the run's capped log events, all attempts."""
        return f"{self.prefix}log:{token}"

    def lease(self, token: str) -> str:
        """String with a TTL: the holder (job id and a nonce of its execution) of the token."""
        return f"{self.prefix}lease:{token}"

    def done(self, token: str) -> str:
        """String with a TTL (the dedup window): `state|job id` of a finished run that moved
        to history, so enqueueing its token again is deduplicated."""
        return f"{self.prefix}done:{token}"

    def job(self, job_id: str) -> str:
        """String: RQ job id -> token, so operators can name a run by its job id."""
        return f"{self.prefix}job:{job_id}"

    @property
    def runs(self) -> str:
        """Sorted set: every run's token scored by creation time."""
        return f"{self.prefix}runs"

    @property
    def running(self) -> str:
        """Sorted set: tokens whose run is running, by when its attempt began: the running
        state's index (`by_state`), which the reaper reads to check their leases."""
        return self.by_state(RunState.RUNNING)

    @property
    def delayed(self) -> str:
        """Sorted set: tokens waiting to retry, scored by when the retry is due."""
        return f"{self.prefix}delayed"

    def depth(self, minute: int) -> str:
        """Hash: each queue's depth, as the reaper sampled it in the minute starting at
        `minute` (epoch seconds): queue -> 'depth at' (runner.runs.backlog)."""
        return f"{self.prefix}depth:{minute}"

    @property
    def suspended_since(self) -> str:
        """String: when a horse first found RQ's workers suspended (`rq suspend`); removed
        when they are resumed (`runner why` says since when)."""
        return f"{self.prefix}suspended_since"

    @property
    def no_delivery(self) -> str:
        """Never written: the intermediate list of an attempt run without RQ (nothing to
        take out of a list when it begins)."""
        return f"{self.prefix}delivery:none"

    def limit(self, part: str, key: str) -> str:
        """A limit's state (runner.runs.limits), built the same way inside its scripts:
        `holders` (set of tokens), `starts` (sorted set of starts by time), `waiting` (sorted
        set of tokens by when they began waiting), `woken` (tokens woken, by the deadline of
        their slot's reservation) and `job` (a waiting run's RQ job hash, by job id)."""
        return f"{self.limit_prefix}{part}:{key}"

    @property
    def limit_prefix(self) -> str:
        """What every key of a limit starts with (the limits' scripts build them from it)."""
        return f"{self.prefix}limit:"

    @property
    def limit_keys(self) -> str:
        """Set: the limit keys that have runs waiting (the reaper wakes them)."""
        return f"{self.prefix}limit:keys"

    @property
    def limbo(self) -> str:
        """Hash: job id -> when the reaper first saw it taken off its queue but not begun."""
        return f"{self.prefix}limbo"

    @property
    def outbox_kept(self) -> str:
        """String with a TTL: JSON {kept, reason, at} of the outbox rows the relay keeps
        (their task is gone...), written by the relay; `runner health` reads it."""
        return f"{self.prefix}outbox:kept"

    @property
    def failed_copied(self) -> str:
        """String: the failed index's score (epoch seconds) up to which the mover copied
        failed runs to history (they stay in Redis for `RUNNER_FAILED_DAYS` meanwhile)."""
        return f"{self.prefix}history:failed-copied"

    @property
    def reaper_lock(self) -> str:
        """String with a TTL: held by the one reaper doing a pass."""
        return f"{self.prefix}lock:reaper"

    def by_state(self, state: str) -> str:
        """Sorted set: tokens of the runs in `state`, scored by when they entered it; kept by
        every script that changes a run's state (the console's listings, the reaper's
        queued runs)."""
        return f"{self.prefix}runs:state:{state}"

    def by_task(self, task: str) -> str:
        """Sorted set: tokens of a task's runs, scored by creation time."""
        return f"{self.prefix}runs:task:{task}"

    def by_queue(self, queue: str) -> str:
        """Sorted set: tokens of the runs enqueued on `queue`, scored by creation time."""
        return f"{self.prefix}runs:queue:{queue}"

    @property
    def tasks(self) -> str:
        """Set: every task name that has a `by_task` index."""
        return f"{self.prefix}runs:tasks"

    @property
    def figures_total(self) -> str:
        """Hash: monotonic figures since the beginning, `task|queue|figure` -> count."""
        return f"{self.prefix}fig:total"

    def figures_window(self, shape: str, start: int) -> str:
        """Hash with a TTL: figures of one minute ('m') or hour ('h') starting at `start`
        (epoch seconds), `task|queue|version|figure` -> count."""
        return f"{self.prefix}fig:{shape}:{start}"

    @property
    def figures_rolled(self) -> str:
        """String: the start (epoch seconds) of the last minute rolled up into the hour
        windows, the totals and the versions' hashes (runner.runs.figures)."""
        return f"{self.prefix}fig:rolled"

    def figures_version(self, version: str) -> str:
        """Hash with a TTL: figures of one code version, `task|queue|figure` -> count."""
        return f"{self.prefix}fig:v:{version}"

    @property
    def deploys(self) -> str:
        """Sorted set: deploy marks (JSON {version, label, at, by}) scored by time."""
        return f"{self.prefix}deploys"

    @property
    def replication_probe(self) -> str:
        """Counter: written before waiting for replicas, so the wait covers every earlier write."""
        return f"{self.prefix}replication-probe"

    def cron_last(self, entry: str) -> str:
        """String: the last slot (ISO minute) a cron entry handled: fired, or skipped."""
        return f"{self.prefix}cron:last:{entry}"

    def cron_fired(self, entry: str) -> str:
        """String: the last slot (ISO minute) a cron entry enqueued a run for; the overlap
        policy checks that run (`cron_last` also moves past skipped slots)."""
        return f"{self.prefix}cron:fired:{entry}"

    @property
    def last_tick(self) -> str:
        """String: when (epoch seconds) the last cron tick, of any clock or crontab, ended."""
        return f"{self.prefix}cron:last_tick"

    def clock(self, name: str) -> str:
        """String with a TTL: a live cron clock's heartbeat."""
        return f"{self.prefix}clock:{name}"

    def web_sign_ins(self, client: str) -> str:
        """Counter with a TTL: the console's sign-in attempts from one client address (or
        `*`, every client) in the current throttle window."""
        return f"{self.prefix}web:sign-ins:{client}"

    def web_revoked(self, session: str) -> str:
        """String with a TTL (the session's own end): a console session that signed out."""
        return f"{self.prefix}web:revoked:{session}"

    def web_preview(self, preview: str) -> str:
        """Hash with a TTL: a bulk rerun preview's exact runs, token -> `state:attempt`."""
        return f"{self.prefix}web:preview:{preview}"

    def web_bulk_done(self, preview: str) -> str:
        """String with a TTL: JSON of what confirming a bulk rerun preview did, for its page."""
        return f"{self.prefix}web:bulk-done:{preview}"
