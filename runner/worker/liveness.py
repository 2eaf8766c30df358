"""Liveness that does not lie: a worker is alive only while its heartbeat is fresh.

RQ keeps a busy worker's registration for its job's timeout (6 h for an import), so a horse
killed mid-job stays "busy" in `rq info` for hours. Here a worker counts as alive only while
its `last_heartbeat` is fresher than 2 × lease. The supervisor beats for its horse every
reaper interval (`beat`), so a horse busy for an hour in a task that never checkpoints stays
alive; and any live worker's reaper removes a dead worker's registration, and its attempt's
entry in RQ's started job registry, through RQ's own API (`bury_dead`), so RQ's tools and
dashboards stop showing ghosts.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import structlog
from redis import Redis
from rq import Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.utils import now as rq_now
from rq.utils import utcformat, utcparse

from runner.config import Settings
from runner.connections.lua import registered
from runner.record import texts

log = structlog.get_logger("runner.worker.liveness")
HORSE_NAME = re.compile(r"\.horse\d+$")  # runner.worker.horse.horse_name
CODE_VERSION_FIELD = "runner_code_version"  # in RQ's worker hash, beside RQ's own `version`

# The supervisor's beat for its horse: refresh the heartbeat of a registration that exists
# (never recreate one the reaper removed).
_BEAT = """
local worker = KEYS[1]        -- the horse's RQ worker hash
local executions = KEYS[2]    -- the horse's set of active executions
local stamp = ARGV[1]         -- the heartbeat, as RQ formats it
local ttl = ARGV[2]           -- seconds the registration lives without a further beat
if redis.call('EXISTS', worker) == 0 then return 0 end
redis.call('HSET', worker, 'last_heartbeat', stamp)
redis.call('EXPIRE', worker, ttl)
redis.call('EXPIRE', executions, ttl)
return 1
"""


@dataclass(frozen=True, slots=True)
class WorkerBeat:
    """One registered RQ worker (a horse) and its last heartbeat (epoch seconds)."""

    name: str
    queues: tuple[str, ...]
    state: str
    last_heartbeat: float | None
    version: str | None = None  # the runner's code version, recorded at the horse's birth

    @property
    def supervisor(self) -> str:
        """The `runner worker` this horse belongs to (its name without `.horse<pid>`)."""
        return HORSE_NAME.sub("", self.name)

    def age(self, now: float) -> float | None:
        """Seconds since the last heartbeat; None if it never beat."""
        return None if self.last_heartbeat is None else max(0.0, now - self.last_heartbeat)


class Liveness:
    """Who is alive by heartbeat, beats for a horse, and buries the dead."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.stale_after = 2 * settings.lease_seconds
        self._beat = registered(redis, _BEAT)

    def registered(self) -> list[WorkerBeat]:
        """Every runner horse in RQ's worker registry (alive or not), by name; workers that
        are not the runner's (a plain `rq worker` sharing this Redis) are left to RQ."""
        prefix = Worker.redis_worker_namespace_prefix
        members = texts(self.redis.smembers(Worker.redis_workers_keys))
        keys = sorted(k for k in members if HORSE_NAME.search(k.removeprefix(prefix)))
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(key, "last_heartbeat", "queues", "state", CODE_VERSION_FIELD)
        found = []
        for key, (beat, queues, state, version) in zip(keys, pipe.execute(), strict=True):
            name = key.removeprefix(Worker.redis_worker_namespace_prefix)
            found.append(
                WorkerBeat(
                    name=name,
                    queues=tuple(q for q in texts([queues or b""])[0].split(",") if q),
                    state=texts([state or b"?"])[0],
                    last_heartbeat=utcparse(beat.decode()).timestamp() if beat else None,
                    version=version.decode() if version else None,
                )
            )
        return found

    def is_alive(self, worker: WorkerBeat, now: float) -> bool:
        age = worker.age(now)
        return age is not None and age < self.stale_after

    def alive(self, now: float | None = None) -> list[WorkerBeat]:
        """The registered workers whose heartbeat is fresher than 2 × lease."""
        now = time.time() if now is None else now
        return [w for w in self.registered() if self.is_alive(w, now)]

    def beat(self, name: str) -> bool:
        """Beat for worker `name` (a horse, by its supervisor); False if it is not registered."""
        worker = Worker.redis_worker_namespace_prefix + name
        executions = f"{worker}:executions"  # rq.executions.WORKER_EXECUTIONS_KEY_TEMPLATE
        ttl = int(max(60, 4 * self.stale_after))
        stamp = utcformat(rq_now())
        return bool(self._beat(keys=[worker, executions], args=[stamp, ttl]))

    def bury_dead(self, now: float | None = None) -> list[str]:
        """Remove every dead worker's registration, and its executions from RQ's started job
        registries; returns their names."""
        now = time.time() if now is None else now
        dead = [w for w in self.registered() if not self.is_alive(w, now)]
        for beat in dead:
            self._bury(beat)
        return [w.name for w in dead]

    def _bury(self, beat: WorkerBeat) -> None:
        key = Worker.redis_worker_namespace_prefix + beat.name
        worker = Worker.find_by_key(key, connection=self.redis, serializer=JSONSerializer)
        if worker is None:  # its registration expired: RQ dropped it from the set just now
            return
        jobs = []
        with self.redis.pipeline() as pipe:
            for execution in worker.get_current_executions():
                try:
                    job = Job.fetch(execution.job_id, self.redis, serializer=JSONSerializer)
                except NoSuchJobError:
                    continue
                execution.delete(job, pipeline=pipe)
                jobs.append(job.id)
            pipe.execute()
        worker.register_death()  # type: ignore[no-untyped-call]  # out of RQ's worker sets, its executions index gone
        self.redis.delete(key)
        log.warning("worker.buried", worker=beat.name, last_heartbeat=beat.last_heartbeat,
                    jobs=jobs, reason=f"no heartbeat for {self.stale_after:g} s")  # fmt: skip
