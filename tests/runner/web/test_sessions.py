"""Console sessions and sign-in: a new random session at each sign-in, ended at sign-out,
idle and absolute timeouts (an injected clock), checked without Redis; throttled, logged."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from fastapi.testclient import TestClient
from redis import Redis
from structlog.testing import capture_logs

from runner.config import Settings
from runner.keys import Keys
from runner.logs import read_events
from runner.web import create_app
from runner.web.sessions import Session, Sessions
from tests.conftest import state_of
from tests.runner.web.conftest import BASE

TOKEN = "s3cret-console-token-for-tests-0123456789ABCDEF"
SAME_SITE = {"origin": BASE, "sec-fetch-site": "same-origin"}


def sign_in(client: TestClient) -> str:
    answer = client.post("/login", data={"token": TOKEN}, headers=SAME_SITE)
    assert answer.status_code == 303
    return str(answer.cookies["runner_console"])


def test_every_sign_in_is_a_new_session_and_sign_out_ends_it_for_copies_too(
    client_for: Callable[..., TestClient],
) -> None:
    client = client_for(web_token=TOKEN)
    other = client_for(web_token=TOKEN)
    first, second = sign_in(client), sign_in(other)
    assert first != second and TOKEN not in first
    copy = client_for(web_token=TOKEN)
    copy.cookies.set("runner_console", first)
    assert copy.get("/runs").status_code == 200
    # signing in again from the same browser rotates: the cookie it had is worth nothing
    third = sign_in(client)
    assert third != first
    assert copy.get("/runs").status_code == 401
    copy.cookies.set("runner_console", third)
    assert copy.get("/runs").status_code == 200
    client.post("/logout", headers=SAME_SITE)
    assert copy.get("/runs").status_code == 401  # a copy of a signed-out cookie is refused
    assert other.get("/runs").status_code == 200  # another browser's session is its own


def test_a_forged_or_tampered_cookie_is_no_session(client_for: Callable[..., TestClient]) -> None:
    client = client_for(web_token=TOKEN)
    value = sign_in(client)
    sid, started, ends, signature = value.split(".")
    for forged in (f"{sid}.{started}.{int(ends) + 10**6}.{signature}", "a.b.c.d", "x", "1.2.3.4.5"):
        stranger = client_for(web_token=TOKEN)
        stranger.cookies.set("runner_console", forged)
        assert stranger.get("/runs").status_code == 401, forged
    # a Cookie header the parser refuses is no session either, not a failed request
    malformed = {"cookie": f"runner_console={value}; $x=1"}
    assert client_for(web_token=TOKEN).get("/runs", headers=malformed).status_code == 401


def test_a_session_used_near_its_idle_deadline_gets_a_later_one_in_a_new_cookie(
    client_for: Callable[..., TestClient], redis: Redis, settings: Settings
) -> None:
    client = client_for(web_token=TOKEN)
    sessions = Sessions(redis, replace(settings, web_token=TOKEN))
    fresh = sessions.start()
    answer = client.get("/runs", headers={"cookie": f"runner_console={sessions.value(fresh)}"})
    assert answer.status_code == 200 and "set-cookie" not in answer.headers  # nothing to renew
    now = time.time()
    due = Session(fresh.id, now - 600, now + 30)
    answer = client.get("/runs", headers={"cookie": f"runner_console={sessions.value(due)}"})
    assert answer.status_code == 200
    renewed = sessions.check(answer.cookies["runner_console"])
    assert renewed is not None and renewed.id == due.id and renewed.ends > due.ends + 60


def test_idle_and_absolute_timeouts_end_a_session(redis: Redis, settings: Settings) -> None:
    sessions = Sessions(
        redis, replace(settings, web_token=TOKEN, web_session_idle_seconds=600,
                       web_session_max_seconds=3600),
    )  # fmt: skip
    session = sessions.start(now=1000.0)
    value = sessions.value(session)
    assert sessions.check(value, now=1599.0) is not None
    assert sessions.check(value, now=1600.0) is None  # idle for 10 minutes
    # used every 5 minutes it lives on, up to the absolute limit
    now, current = 1000.0, session
    while True:
        now += 300
        checked = sessions.check(sessions.value(current), now=now)
        if checked is None:
            break
        current = sessions.renewed(checked, now=now) or checked
    assert 3600 <= now - 1000 <= 3900


def test_a_session_is_checked_without_redis(redis: Redis, settings: Settings) -> None:
    working = Sessions(redis, replace(settings, web_token=TOKEN))
    value = working.value(working.start())
    down = Sessions(Redis(port=1, socket_connect_timeout=1), replace(settings, web_token=TOKEN))
    assert down.check(value) is not None
    other_token = Sessions(redis, replace(settings, web_token=TOKEN[::-1]))
    assert other_token.check(value) is None


def test_a_signed_in_browser_reads_the_console_while_redis_is_down(
    redis: Redis, settings: Settings
) -> None:
    signed = replace(settings, web_token=TOKEN)
    value = Sessions(redis, signed).value(Sessions(redis, signed).start())
    dead = Redis(port=1, socket_connect_timeout=1)
    client = TestClient(create_app(signed, redis=dead), base_url=BASE)
    client.cookies.set("runner_console", value)
    answer = client.get("/health")
    assert answer.status_code == 503  # Redis is down, and this browser sees why:
    assert isinstance(answer.json()["up"], dict) and "redis" in answer.json()["up"]["text"].lower()
    stranger = TestClient(create_app(signed, redis=dead), base_url=BASE)
    assert stranger.get("/health").json()["up"] == "FAIL"  # words only without a session


def test_the_cookie_is_lax_and_on_https_host_prefixed_and_secure(
    client_for: Callable[..., TestClient],
) -> None:
    plain = client_for(web_token=TOKEN).post("/login", data={"token": TOKEN}, headers=SAME_SITE)
    header = plain.headers["set-cookie"].lower()
    assert header.startswith("runner_console=") and "samesite=lax" in header
    assert "secure" not in header and "httponly" in header
    https = client_for(web_token=TOKEN, web_origin="https://jobs.example.com")
    origin = {"origin": "https://jobs.example.com", "host": "jobs.example.com"}
    answer = https.post("/login", data={"token": TOKEN}, headers=origin)
    header = answer.headers["set-cookie"]
    assert header.startswith("__Host-runner_console=") and "; Secure" in header
    assert "Path=/" in header and "Domain" not in header


def test_sign_ins_are_throttled_per_client_and_overall_and_logged_without_the_token(
    client_for: Callable[..., TestClient],
) -> None:
    client = client_for(web_token=TOKEN)
    with capture_logs() as logs:
        for _ in range(10):
            assert client.post("/login", data={"token": "guess"}).status_code == 401
        refused = client.post("/login", data={"token": TOKEN})
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        bearer = client.get("/runs", headers={"authorization": "Bearer guess"})
        assert bearer.status_code == 429
        assert client.get("/login").status_code == 200  # the form itself is not an attempt
    events = [e["event"] for e in logs]
    assert events.count("web.sign_in_failed") == 11 and "web.sign_in_throttled" in events
    assert TOKEN not in repr(logs) and "guess" not in repr(logs)


def test_the_overall_limit_holds_across_client_addresses(
    client_for: Callable[..., TestClient],
) -> None:
    client = client_for(web_token=TOKEN, web_trusted_proxy="x-real-ip")
    answers = [
        client.post("/login", data={"token": "x"}, headers={"x-real-ip": f"10.0.0.{i}"})
        for i in range(101)
    ]
    assert [a.status_code for a in answers[:100]] == [401] * 100
    assert answers[100].status_code == 429


def test_actions_are_logged_with_the_sessions_handle_not_its_id(
    client_for: Callable[..., TestClient], redis: Redis, settings: Settings,
    enqueue: Callable[..., Any], drain: Callable[..., None],
) -> None:  # fmt: skip
    token = enqueue("broken").token
    drain()
    client = client_for(web_token=TOKEN)
    value = sign_in(client)
    assert (
        client.post("/actions/rerun", data={"token": token}, headers=SAME_SITE).status_code == 303
    )
    rerun = [
        e for _, e in read_events(redis, Keys(settings.prefix), token) if e["event"] == "run.rerun"
    ]
    handle = rerun[-1]["session"]
    assert len(handle) == 12 and handle not in value and value.split(".")[0] not in repr(rerun)


def test_without_a_token_sign_in_is_not_needed(client: TestClient, runs: Any) -> None:
    assert client.get("/runs").status_code == 200
    assert client.post("/login", data={"token": "x"}, headers=SAME_SITE).status_code == 303
    assert state_of(runs, "nothing") is None
