"""The console's state, handed to every route by FastAPI dependencies (never a global)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, cast

from fastapi import Depends, Request
from redis import Redis

from runner.config import Settings
from runner.keys import Keys
from runner.runs.history import HistoryStore
from runner.runs.transitions import Runs
from runner.tasks import TaskRegistry


@dataclass(frozen=True)
class Console:
    """What a request needs: the settings, the Redis client, the site's task registry, the
    history of runs that left Redis."""

    settings: Settings
    redis: Redis
    registry: TaskRegistry
    keys: Keys = field(init=False)
    runs: Runs = field(init=False)
    history: HistoryStore = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "history", HistoryStore(self.settings))
        keys = Keys(self.settings.prefix)
        object.__setattr__(self, "keys", keys)
        runs = Runs(self.redis, self.settings)
        object.__setattr__(self, "runs", runs)

    @property
    def readonly(self) -> bool:
        return self.settings.web_readonly


def console(request: Request) -> Console:
    """The app's Console (set by `create_app`)."""
    return cast(Console, request.app.state.console)


def settings(request: Request) -> Settings:
    return console(request).settings


def redis_client(request: Request) -> Redis:
    return console(request).redis


ConsoleDep = Annotated[Console, Depends(console)]
SettingsDep = Annotated[Settings, Depends(settings)]
RedisDep = Annotated[Redis, Depends(redis_client)]
