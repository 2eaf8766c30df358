"""The Host allow-list (DNS rebinding), proxy headers, the bind rules and the token's strength,
over HTTP against real Redis and through `runner web`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from redis import Redis

from runner.cli import cli
from runner.config import Settings
from runner.errors import ConfigError
from runner.runs.transitions import Runs
from runner.web import create_app
from runner.web.hosts import HostList, split_host
from tests.conftest import ROOT, state_of, worker_env
from tests.runner.web.conftest import BASE

TOKEN = "s3cret-console-token-for-tests-0123456789ABCDEF"
BEARER = {"authorization": f"Bearer {TOKEN}"}
EVIL = {"host": "evil.example:8080", "origin": "http://evil.example:8080"}


def failed_run(enqueue: Callable[..., Any], drain: Callable[..., None]) -> str:
    token: str = enqueue("broken").token
    drain()
    return token


def test_a_rebound_name_reads_nothing_and_changes_nothing(
    client: TestClient, enqueue: Callable[..., Any], drain: Callable[..., None], runs: Runs
) -> None:
    token = failed_run(enqueue, drain)
    for path in ("/", "/runs", f"/runs/{token}", "/metrics", "/cron", "/live/x", "/nowhere"):
        answer = client.get(path, headers=EVIL)
        assert answer.status_code == 400, path
        assert "RUNNER_WEB_HOSTS" in answer.text
        assert answer.headers["x-frame-options"] == "DENY"
    same_site = {**EVIL, "sec-fetch-site": "same-origin"}
    for path in ("/actions/rerun", "/actions/cancel", "/rerun"):
        assert client.post(path, data={"token": token}, headers=same_site).status_code == 400
    assert state_of(runs, token) == "failed"


def test_the_origin_is_checked_against_the_allow_list_not_the_requests_host(
    client: TestClient, enqueue: Callable[..., Any], drain: Callable[..., None], runs: Runs
) -> None:
    token = failed_run(enqueue, drain)
    # an allowed Host with a foreign Origin (a page elsewhere posting here) is refused
    foreign = {"origin": "http://evil.example:8080", "sec-fetch-site": "same-origin"}
    assert client.post("/actions/rerun", data={"token": token}, headers=foreign).status_code == 403
    assert state_of(runs, token) == "failed"
    own = {"origin": BASE, "sec-fetch-site": "same-origin"}
    assert client.post("/actions/rerun", data={"token": token}, headers=own).status_code == 303


def test_health_answers_any_host_with_status_words_only(client: TestClient) -> None:
    for headers in ({"host": "10.1.2.3:8080"}, {"host": "pod-7.svc"}, {"x-real-ip": "1.2.3.4"}):
        answer = client.get("/health", headers=headers)
        assert answer.status_code in (200, 503)
        body = answer.json()
        assert set(body) == {"ok", "up", "slow", "failing", "deploy"}
        assert all(isinstance(v, (str, bool)) for v in body.values()), body
    assert isinstance(client.get("/health").json()["up"], dict)  # loopback, no token: details


def test_named_hosts_and_the_origins_host_are_allowed(
    client_for: Callable[..., TestClient],
) -> None:
    named = client_for(web_token=TOKEN, web_hosts=("jobs.example.com", "jobs.internal:8443"))
    for host in ("jobs.example.com", "JOBS.example.com:8080", "jobs.internal:8443", "[::1]:1"):
        assert named.get("/", headers={**BEARER, "host": host}).status_code == 200, host
    for host in ("jobs.internal:8444", "evil.example", "jobs.example.com.evil.example", ""):
        assert named.get("/", headers={**BEARER, "host": host}).status_code == 400, host
    by_origin = client_for(web_token=TOKEN, web_origin="https://jobs.example.com")
    assert by_origin.get("/", headers={**BEARER, "host": "jobs.example.com"}).status_code == 200


def test_the_app_knows_its_port_and_loopback_names_match_on_it(
    redis: Redis, settings: Settings
) -> None:
    app = create_app(settings, redis=redis, host="127.0.0.1", port=8080)
    client = TestClient(app, base_url=BASE)
    assert client.get("/runs").status_code == 200
    assert client.get("/runs", headers={"host": "localhost:8080"}).status_code == 200
    assert client.get("/runs", headers={"host": "127.0.0.1:9999"}).status_code == 400
    hosts = HostList.for_console(settings, port=8080)
    assert hosts.allows("[::1]:8080") and not hosts.allows("[::1]:80")
    assert split_host("a:b:c") is None and split_host("[::1") is None
    assert split_host("x.test:99999") is None and split_host("h\u00e9.test") is None


@pytest.mark.parametrize(
    "header",
    ["x-real-ip", "x-forwarded-host", "x-forwarded-proto", "via", "true-client-ip",
     "cf-connecting-ip", "x-forwarded-for", "forwarded", "x-forwarded-anything"],
)  # fmt: skip
def test_every_proxy_header_is_refused_without_a_token(
    client: TestClient, enqueue: Callable[..., Any], drain: Callable[..., None], runs: Runs,
    header: str,
) -> None:  # fmt: skip
    token = failed_run(enqueue, drain)
    value = {header: "203.0.113.9"}
    answer = client.get("/runs", headers=value)
    assert answer.status_code == 403
    assert "RUNNER_WEB_TOKEN" in answer.text and header in answer.text
    post = {**value, "origin": BASE, "sec-fetch-site": "same-origin"}
    assert client.post("/actions/rerun", data={"token": token}, headers=post).status_code == 403
    assert state_of(runs, token) == "failed"


def test_behind_a_trusted_proxy_the_client_address_comes_from_its_header(
    client_for: Callable[..., TestClient],
) -> None:
    client = client_for(web_token=TOKEN, web_trusted_proxy="x-forwarded-for:1")
    spoofed = {"x-forwarded-for": "6.6.6.6, 198.51.100.7"}  # the proxy appended the last one
    for _ in range(10):
        wrong = client.post("/login", data={"token": "x"}, headers={**spoofed, "origin": BASE})
        assert wrong.status_code == 401
    assert client.post("/login", data={"token": "x"}, headers=spoofed).status_code == 429
    other = {"x-forwarded-for": "6.6.6.6, 198.51.100.8"}
    assert client.post("/login", data={"token": "x"}, headers=other).status_code == 401
    with pytest.raises(ConfigError, match="RUNNER_WEB_TRUSTED_PROXY"):
        client_for(web_token=TOKEN, web_trusted_proxy="x-forwarded-for:zero")


@pytest.mark.parametrize("weak", ["a", " ", "x" * 40, "abcdefghij" * 4, "Tr0ub4dor&3"])
def test_a_weak_token_is_refused_with_how_to_make_one(
    redis: Redis, settings: Settings, weak: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        create_app(replace(settings, web_token=weak), redis=redis)
    message = str(refused.value)
    assert "RUNNER_WEB_TOKEN is too weak" in message and "secrets.token_urlsafe(32)" in message
    assert len(weak) < 10 or weak not in message  # the token itself is never printed
    result = CliRunner().invoke(
        cli, ["web", "--port", "1"], catch_exceptions=False,
        env={**_env(settings), "RUNNER_WEB_TOKEN": weak},
    )  # fmt: skip
    assert result.exit_code == 2
    assert "secrets.token_urlsafe(32)" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_the_readmes_way_to_make_a_token_makes_a_strong_one(
    redis: Redis, settings: Settings
) -> None:
    readme = (ROOT / "README.md").read_text()
    one_liner = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'
    assert one_liner in readme
    made = subprocess.run(
        [sys.executable, "-c", one_liner.split('"')[1]], capture_output=True, text=True, check=True
    ).stdout.strip()
    create_app(replace(settings, web_token=made), redis=redis)  # accepted


def test_a_public_bind_needs_the_names_it_answers_to(settings: Settings) -> None:
    env = {**_env(settings), "RUNNER_WEB_TOKEN": TOKEN}
    result = CliRunner().invoke(cli, ["web", "--host", "0.0.0.0", "--port", "1"], env=env)
    assert result.exit_code == 2
    assert "RUNNER_WEB_HOSTS" in result.output and "Traceback" not in result.output


def test_the_deprecated_metrics_setting_still_works_with_a_warning(settings: Settings) -> None:
    assert Settings.from_env({"RUNNER_WEB_PROTECT_METRICS": "0"}).web_metrics_public
    assert not Settings.from_env({"RUNNER_WEB_PROTECT_METRICS": "1"}).web_metrics_public
    assert Settings.from_env({"RUNNER_WEB_METRICS_PUBLIC": "1"}).web_metrics_public
    env = {**_env(settings), "RUNNER_WEB_PROTECT_METRICS": "1", "RUNNER_WEB_TOKEN": "weak"}
    result = CliRunner().invoke(cli, ["web", "--port", "1"], env=env)
    assert "RUNNER_WEB_PROTECT_METRICS is deprecated" in result.output


def _env(settings: Settings) -> dict[str, str]:
    return {k: v for k, v in worker_env(settings).items() if k.startswith("RUNNER_")}
