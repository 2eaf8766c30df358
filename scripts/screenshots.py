"""Make the README's pictures of the console: a throwaway deployment (embedded Redis, SQLite)
with a simulated day of imports (some failed, a deploy that made them slower), then headless
Chromium shoots the overview and a run.

    ./scripts/screenshots            # writes docs/console-overview.png, docs/console-run.png

Opt-in (a normal test run changes no tracked file); needs /usr/bin/chromium and playwright.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from unittest.mock import patch

import uvicorn
from playwright.sync_api import sync_playwright
from rq.serializers import JSONSerializer

from runner import logs
from runner.attempt.execute import Executor
from runner.config import Settings
from runner.connections.redis import EmbeddedRedis, connect
from runner.cron.ticks import Cron
from runner.record import RunState
from runner.runs.deploys import DeployMarks
from runner.runs.enqueue import Enqueuer, Request
from runner.runs.rerun import rerun
from runner.runs.transitions import Runs
from runner.tasks import load_registry
from runner.web import create_app
from runner.worker.horse import Horse
from runner.worker.liveness import Liveness
from scripts.gen_posts import generate_posts, write_feed

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]  # fmt: skip


class SimulatedClock:
    """`time` for the engine's modules while the history is made: `time()` is a simulated
    moment that moves on by `pace` seconds at every reading (so each attempt takes a few
    simulated seconds), everything else is the real module."""

    def __init__(self, start: float) -> None:
        self.now = start
        self.pace = 0.4

    def time(self) -> float:
        self.now += self.pace
        return self.now

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)


def populate(settings: Settings, home: Path) -> None:
    """A simulated day of imports: every 20 minutes a few feeds, one in nine of them a file
    that vanished (a failed run); at two thirds of the day a deploy of code that imports
    slower."""
    redis = connect(settings)
    registry = load_registry("jobs")
    task = registry.get("import_posts")
    feeds = home / "feeds"
    feeds.mkdir(parents=True)
    clock = SimulatedClock(time.time() - 24 * 3600)
    marks = DeployMarks(redis, settings)
    with (patch("runner.runs.transitions.time", clock), patch("runner.runs.enqueue.time", clock),
          patch("runner.attempt.execute.time", clock)):  # fmt: skip
        for slot in range(72):
            clock.now = time.time() - 24 * 3600 + slot * 1200
            version = "4f2a9c1" if slot < 48 else "8d03e77"
            if slot in (0, 48):
                marks.mark(version, by="deploy", at=clock.now)
            clock.pace = 0.4 if slot < 48 else 0.9
            requests = []
            for n in range(3):
                path = feeds / f"{slot:02d}-{n}.jsonl"
                if (slot * 3 + n) % 9 == 4:
                    path.write_text(json.dumps({"source_id": "x", "title": "t", "body": "b"}))
                    requests.append(Request(task, {"source": str(path)}))
                    continue
                with path.open("w") as out:
                    size = 40 + 37 * ((slot * 7 + n * 13) % 23)
                    write_feed(generate_posts(size, seed=7, start=(slot * 3 + n) * 2_000), out)
                    out.write(json.dumps({"source_id": "", "title": "no id"}) + "\n")
                requests.append(Request(task, {"source": str(path)}))
            Enqueuer(redis, settings).enqueue_many(requests)
            for request in requests:
                if not Path(request.args["source"]).read_text().count("\n"):
                    Path(request.args["source"]).unlink()  # it vanished before a worker came
            horse = Horse(list(settings.queues), connection=redis, serializer=JSONSerializer)
            deployed = replace(settings, code_version=version)
            Executor(redis, deployed, registry, worker=f"web-1.{version}").install()
            horse.work(burst=True, logging_level="WARNING")


def showcase(settings: Settings, home: Path) -> str:
    """A run to show, in real time: an import whose file vanished fails on the live worker;
    the file is back and the run is rerun from its checkpoint, and succeeds."""
    redis = connect(settings)
    feed = home / "feeds" / "spring-posts.jsonl"
    with feed.open("w") as out:
        write_feed(generate_posts(1_200, seed=11, start=500_000), out)
        out.write('{"source_id": "spring-x", "title": ""}\n')
    content = feed.read_bytes()
    task = load_registry("jobs").get("import_posts")
    token = Enqueuer(redis, settings).enqueue(Request(task, {"source": str(feed)})).token
    feed.unlink()
    runs = Runs(redis, settings)
    until = time.monotonic() + 30
    while (runs.get(token) or SimpleNamespace(state="")).state != RunState.FAILED:
        if time.monotonic() > until:
            raise SystemExit("the showcase import did not fail in 30 s")
        time.sleep(0.1)
    feed.write_bytes(content)
    rerun(redis, settings, token)
    while (runs.get(token) or SimpleNamespace(state="")).state != RunState.SUCCEEDED:
        if time.monotonic() > until:
            raise SystemExit("the showcase import did not succeed in 30 s")
        time.sleep(0.1)
    return token


def main() -> int:
    home = Path(tempfile.mkdtemp(prefix="runner-shots-"))
    server = EmbeddedRedis(home / "redis")
    server.ensure_started()
    settings = replace(
        Settings.from_env({}), home=home, redis_url=server.url, tasks_module="jobs",
        database_url=f"sqlite:///{home / 'content.db'}",
    )  # fmt: skip
    logs.configure(stream=open(os.devnull, "w"))  # noqa: SIM115 (for the whole run)
    worker = None
    try:
        populate(settings, home)
        worker = start_worker(settings)  # alive for the picture, and the clock has ticked
        token = showcase(settings, home)
        Cron(connect(settings), settings, registry=load_registry("jobs")).tick(datetime.now(UTC))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        app = create_app(settings)
        web = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning", lifespan="off"))
        threading.Thread(target=web.run, daemon=True).start()
        while not web.started:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        out = ROOT / "docs"
        out.mkdir(exist_ok=True)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            page.goto(base + "/")
            page.screenshot(path=str(out / "console-overview.png"), full_page=True)
            page.goto(f"{base}/runs/{token}")
            page.screenshot(path=str(out / "console-run.png"), full_page=False)
            browser.close()
        web.should_exit = True
        print(f"wrote {out / 'console-overview.png'} and {out / 'console-run.png'}")
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        server.stop()
    return 0


def start_worker(settings: Settings) -> subprocess.Popen[bytes]:
    """`runner worker` on the imports queue only, once its heartbeat is fresh."""
    env = {
        **os.environ, "RUNNER_HOME": str(settings.home),
        "RUNNER_REDIS_URL": str(settings.redis_url),
        "RUNNER_DATABASE_URL": settings.store_url, "RUNNER_TASKS": "jobs",
        "RUNNER_QUEUES": "imports", "RUNNER_CODE_VERSION": "8d03e77",
    }  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-m", "runner", "worker", "--name", "web-1"], env=env, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    liveness = Liveness(connect(settings), settings)
    deadline = time.monotonic() + 30
    while not liveness.alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    return worker


if __name__ == "__main__":
    sys.exit(main())
