"""Make the README's pictures of the console: a throwaway deployment (embedded Redis, SQLite)
with a few imports, one of them failed, then headless Chromium shoots the overview and a run.

    ./scripts/screenshots            # writes docs/console-overview.png, docs/console-run.png

Opt-in (a normal test run changes no tracked file); needs /usr/bin/chromium and playwright.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright
from rq.serializers import JSONSerializer

from runner import logs
from runner.config import Settings
from runner.enqueue import Enqueuer, Request
from runner.execute import Executor
from runner.redis import EmbeddedRedis, connect
from runner.tasks import load_registry
from runner.web import create_app
from runner.worker import Horse
from scripts.gen_posts import generate_posts, write_feed

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]  # fmt: skip


def populate(settings: Settings, home: Path) -> str:
    """Imports under two code versions (a deploy between them), one of them of a file that
    vanished; returns the token of the biggest import."""
    redis = connect(settings)
    registry = load_registry("jobs")
    enqueuer = Enqueuer(redis, settings)
    task = registry.get("import_posts")
    feeds = home / "feeds"
    feeds.mkdir(parents=True)
    tokens = []
    for version, sizes in (("4f2a9c1", (400, 1500, 120)), ("8d03e77", (2500, 60))):
        for n, size in enumerate(sizes):
            path = feeds / f"{version}-{n}.jsonl"
            with path.open("w") as out:
                write_feed(generate_posts(size, seed=n, start=n * 10_000), out)
                out.write(json.dumps({"source_id": "", "title": "no id"}) + "\n")
            tokens.append(enqueuer.enqueue(Request(task, {"source": str(path)})).token)
        gone = feeds / f"{version}-vanished.jsonl"
        gone.write_text(json.dumps({"source_id": f"x-{version}", "title": "t", "body": "b"}))
        enqueuer.enqueue(Request(task, {"source": str(gone)}))
        gone.unlink()
        horse = Horse(list(settings.queues), connection=redis, serializer=JSONSerializer)
        deployed = replace(settings, code_version=version)
        Executor(redis, deployed, registry, worker=f"web-1.{version}").install()
        horse.work(burst=True, logging_level="WARNING")
    return tokens[3]


def main() -> int:
    home = Path(tempfile.mkdtemp(prefix="runner-shots-"))
    server = EmbeddedRedis(home / "redis")
    server.ensure_started()
    settings = replace(
        Settings.from_env({}), home=home, redis_url=server.url, tasks_module="jobs",
        database_url=f"sqlite:///{home / 'content.db'}",
    )  # fmt: skip
    logs.configure(stream=open(os.devnull, "w"))  # noqa: SIM115 (for the whole run)
    try:
        token = populate(settings, home)
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
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
