"""Authentication, tenants and limits against the real API process with a tokens file: 401
with the challenge, tenant isolation (another tenant's job is a 404), admins, per-tenant
429s with Retry-After, per-job caps, Kubernetes name rules, and the SDK and CLI sending
the token. Each test uses a tenant of its own where a cap could leak between tests."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from typer.testing import CliRunner
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from kubetask import Client, NotFound
from kubetask.cli import ExitCode, app
from kubetask.errors import Unauthorized
from tests.servers import ApiServer, bearer_clients, own_database

PROBLEM = "application/problem+json"
MISSING = "0000000000000000"
TOKENS = {
    "a": ("team-a", "user"),
    "a2": ("team-a", "user"),
    "b": ("team-b", "user"),
    "root": ("ops", "admin"),
    "rate": ("burst", "user"),
    "active": ("busy", "user"),
    "streams": ("watchers", "user"),
}
SUBMITS_PER_MINUTE = 40  # team-a submits about 20 in this module
ACTIVE_CAP = 3
STREAMS_CAP = 2


def token(name: str) -> str:
    return f"{name}-token-{'x' * 24}"


@pytest.fixture(scope="module")
def server(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    root = tmp_path_factory.mktemp("auth")
    tokens = root / "tokens.json"
    entries = [{"token": token(n), "tenant": t, "role": r} for n, (t, r) in TOKENS.items()]
    tokens.write_text(json.dumps(entries))
    api = ApiServer(
        redis_url=own_database(redis_url),
        data_dir=root / "api",
        tokens_file=tokens,
        max_submits_per_minute=SUBMITS_PER_MINUTE,
        max_active_jobs_per_tenant=ACTIVE_CAP,
        max_streams_per_tenant=STREAMS_CAP,
        max_timeout_s=600,
        max_cpu="2",
        max_memory="1Gi",
        max_gpu=0,
        max_page_size=20,
    )
    with redis.Redis.from_url(api.redis_url) as client:
        client.flushdb()
    api.start()
    yield api
    api.close()


@pytest.fixture(scope="module")
def as_(server: ApiServer) -> Iterator[dict[str, httpx.Client]]:
    """An HTTP client per token name ('' for none)."""
    names = ["", *TOKENS]
    with bearer_clients(server.base_url, {n: token(n) if n else "" for n in names}) as clients:
        yield clients


def submit(client: httpx.Client, params: dict[str, Any] | None = None, **fields: Any) -> str:
    response = client.post("/v1/jobs", json={"kind": "noop", "params": params or {}, **fields})
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    return job_id


def wait(client: httpx.Client, job_id: str, states: set[str], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while (state := client.get(f"/v1/jobs/{job_id}").json()["state"]) not in states:
        assert time.monotonic() < deadline, f"{job_id} still {state}"
        time.sleep(0.05)


def listed(client: httpx.Client, **params: str) -> set[str]:
    response = client.get("/v1/jobs", params=params)
    assert response.status_code == 200, response.text
    return {job["id"] for job in response.json()["items"]}


def long_job(client: httpx.Client, **fields: Any) -> str:
    return submit(client, {"steps": 600, "step_s": 0.1}, **fields)


# -- who is asking -------------------------------------------------------------------------
CALLS = [
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs"),
    ("GET", f"/v1/jobs/{MISSING}"),
    ("DELETE", f"/v1/jobs/{MISSING}"),
    ("GET", f"/v1/jobs/{MISSING}/logs"),
    ("GET", f"/v1/jobs/{MISSING}/events"),
    ("GET", "/v1/events"),
]


@pytest.mark.parametrize(("method", "path"), CALLS)
def test_without_a_valid_token_every_job_call_is_401_with_the_challenge(
    server: ApiServer, method: str, path: str
) -> None:
    body = {"kind": "noop"} if method == "POST" else None
    for headers, challenge in [
        ({}, 'Bearer realm="kubetask"'),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 'Bearer realm="kubetask"'),
        (
            {"Authorization": f"Bearer {token('a')[:-1]}"},
            'Bearer realm="kubetask", error="invalid_token"',
        ),
    ]:
        response = server.client.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["www-authenticate"] == challenge
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["status"] == 401


def test_the_websocket_needs_a_token_too(server: ApiServer) -> None:
    url = server.base_url.replace("http", "ws") + f"/v1/jobs/{MISSING}/ws"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, open_timeout=10).close()
    assert refused.value.response.status_code == 401
    assert refused.value.response.headers["WWW-Authenticate"] == 'Bearer realm="kubetask"'


def test_health_metrics_docs_and_the_dashboard_page_need_no_token(server: ApiServer) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/"):
        assert server.client.get(path).status_code != 401, path
    assert server.client.get("/readyz").status_code == 200
    assert "kubetask_store_up" in server.client.get("/metrics").text


# -- tenants -------------------------------------------------------------------------------
def test_a_user_sees_its_tenants_jobs_and_another_tenants_are_404(
    as_: dict[str, httpx.Client],
) -> None:
    label = {"test": uuid.uuid4().hex[:12]}
    ours, theirs = submit(as_["a"], labels=label), submit(as_["b"], labels=label)
    selector = {"label": f"test={label['test']}"}
    assert as_["a"].get(f"/v1/jobs/{ours}").json()["tenant"] == "team-a"
    assert as_["a2"].get(f"/v1/jobs/{ours}").status_code == 200  # the same tenant
    assert listed(as_["a"], **selector) == listed(as_["a2"], **selector) == {ours}
    assert listed(as_["b"], **selector) == {theirs}
    assert listed(as_["b"], tenant="team-a", **selector) == set()
    missing = as_["b"].get(f"/v1/jobs/{MISSING}")
    for path in (f"/v1/jobs/{ours}", f"/v1/jobs/{ours}/logs", f"/v1/jobs/{ours}/events"):
        hidden = as_["b"].get(path)
        assert hidden.status_code == 404, path
        assert hidden.headers["content-type"] == PROBLEM
        assert hidden.json()["title"] == missing.json()["title"]
        assert hidden.json()["detail"] == missing.json()["detail"].replace(MISSING, ours)
    assert as_["b"].delete(f"/v1/jobs/{ours}").status_code == 404


def test_admins_see_every_tenant_and_may_filter_by_one(as_: dict[str, httpx.Client]) -> None:
    label = {"test": uuid.uuid4().hex[:12]}
    ours, theirs = submit(as_["a"], labels=label), submit(as_["b"], labels=label)
    selector = {"label": f"test={label['test']}"}
    assert listed(as_["root"], **selector) == {ours, theirs}
    assert listed(as_["root"], tenant="team-b", **selector) == {theirs}
    assert as_["root"].get(f"/v1/jobs/{theirs}").json()["tenant"] == "team-b"
    assert as_["root"].get(f"/v1/jobs/{theirs}/logs").status_code == 200
    admin_job = submit(as_["root"])
    assert as_["root"].get(f"/v1/jobs/{admin_job}").json()["tenant"] == "ops"
    assert as_["a"].get(f"/v1/jobs/{admin_job}").status_code == 404


def test_another_tenant_can_neither_cancel_nor_follow_a_running_job(
    server: ApiServer, as_: dict[str, httpx.Client]
) -> None:
    job_id = long_job(as_["a"])
    wait(as_["a"], job_id, {"running"})
    assert as_["b"].delete(f"/v1/jobs/{job_id}").status_code == 404
    url = server.base_url.replace("http", "ws") + f"/v1/jobs/{job_id}/ws"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, additional_headers=_bearer("b"), open_timeout=10).close()
    assert refused.value.response.status_code == 404
    with connect(url, additional_headers=_bearer("a"), open_timeout=10) as socket:
        assert json.loads(socket.recv(timeout=10))["seq"] == 1
    assert as_["a"].get(f"/v1/jobs/{job_id}").json()["state"] == "running"
    assert as_["a"].delete(f"/v1/jobs/{job_id}").status_code == 202
    wait(as_["a"], job_id, {"cancelled"})


def test_idempotency_keys_are_per_tenant(as_: dict[str, httpx.Client]) -> None:
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = as_["a"].post("/v1/jobs", json={"kind": "noop"}, headers=key)
    other = as_["b"].post("/v1/jobs", json={"kind": "noop", "params": {"steps": 1}}, headers=key)
    again = as_["a"].post("/v1/jobs", json={"kind": "noop"}, headers=key)
    assert (first.status_code, other.status_code, again.status_code) == (201, 201, 200)
    assert first.json()["id"] == again.json()["id"] != other.json()["id"]


# -- limits --------------------------------------------------------------------------------
def test_submissions_past_the_rate_are_429_with_retry_after(as_: dict[str, httpx.Client]) -> None:
    if time.time() % 60 > 50:  # keep the burst inside one window
        time.sleep(61 - time.time() % 60)
    dry = {"params": {"dry_run": "true"}, "json": {"kind": "noop"}}
    for _ in range(SUBMITS_PER_MINUTE):
        assert as_["rate"].post("/v1/jobs", **dry).status_code == 200  # type: ignore[arg-type]
    refused = as_["rate"].post("/v1/jobs", **dry)  # type: ignore[arg-type]
    assert refused.status_code == 429
    assert refused.headers["content-type"] == PROBLEM
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "burst" in refused.json()["detail"]
    assert as_["b"].post("/v1/jobs", **dry).status_code == 200  # type: ignore[arg-type]


def test_unfinished_jobs_past_the_cap_are_429_even_when_submitted_at_once(
    as_: dict[str, httpx.Client],
) -> None:
    client = as_["active"]
    key = {"Idempotency-Key": uuid.uuid4().hex}
    body = {"kind": "noop", "params": {"steps": 600, "step_s": 0.1}}
    first = client.post("/v1/jobs", json=body, headers=key)
    assert first.status_code == 201
    running = [first.json()["id"]]
    try:
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda _: client.post("/v1/jobs", json=body), range(6)))
        running += [r.json()["id"] for r in answers if r.status_code == 201]
        assert sorted(r.status_code for r in answers) == [201] * (ACTIVE_CAP - 1) + [429] * (
            7 - ACTIVE_CAP
        )
        refused = next(r for r in answers if r.status_code == 429)
        assert refused.headers["content-type"] == PROBLEM
        assert int(refused.headers["retry-after"]) >= 1
        replay = client.post("/v1/jobs", json=body, headers=key)  # at the cap, still answers
        assert (replay.status_code, replay.json()["id"]) == (200, running[0])
        assert as_["a"].post("/v1/jobs", json={"kind": "noop"}).status_code == 201  # not ours
        assert client.delete(f"/v1/jobs/{running[0]}").status_code == 202
        wait(client, running[0], {"cancelled"})
        running.append(submit(client))  # a slot came free
    finally:
        for job_id in running:
            client.delete(f"/v1/jobs/{job_id}")


def test_past_the_cap_on_stored_jobs_a_submission_is_429_until_one_is_purged(
    redis_url: str, tmp_path: Path
) -> None:
    """Finished jobs count too: a tenant cannot fill Redis with records within its rate."""
    api = ApiServer(
        redis_url=own_database(redis_url),
        data_dir=tmp_path / "api",
        max_stored_jobs_per_tenant=2,
    )
    with redis.Redis.from_url(api.redis_url) as store:
        store.flushdb()
    api.start()
    client = api.client
    try:
        done = [submit(client), submit(client)]
        for job_id in done:
            wait(client, job_id, {"succeeded"})
        refused = client.post("/v1/jobs", json={"kind": "noop"})
        assert refused.status_code == 429
        assert refused.headers["content-type"] == PROBLEM
        assert refused.headers["retry-after"] == "60"
        assert "already keeps 2 jobs" in refused.json()["detail"]
        assert "purge" in refused.json()["detail"]
        assert client.delete(f"/v1/jobs/{done[0]}", params={"purge": "true"}).status_code == 204
        submit(client)  # a place came free
    finally:
        api.close()


def test_open_streams_past_the_cap_are_429(server: ApiServer, as_: dict[str, httpx.Client]) -> None:
    client = as_["streams"]
    job_id = long_job(client)
    path = f"/v1/jobs/{job_id}/events"
    try:
        with contextlib.ExitStack() as streams:
            for _ in range(STREAMS_CAP):
                response = streams.enter_context(client.stream("GET", path))
                assert response.status_code == 200
            with client.stream("GET", path) as refused:
                assert refused.status_code == 429
                assert int(refused.headers["retry-after"]) >= 1
            url = server.base_url.replace("http", "ws") + f"/v1/jobs/{job_id}/ws"
            with pytest.raises(InvalidStatus) as ws_refused:
                connect(url, additional_headers=_bearer("streams"), open_timeout=10).close()
            assert ws_refused.value.response.status_code == 429
            assert as_["a"].get(f"/v1/jobs/{MISSING}/events").status_code == 404  # not capped
        with client.stream("GET", path) as again:  # the closed streams gave their slots back
            assert again.status_code == 200
    finally:
        client.delete(f"/v1/jobs/{job_id}")


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"timeout_s": 601}, "timeout_s"),
        ({"resources": {"cpu": "2500m"}}, "resources.cpu"),
        ({"resources": {"memory": "2Gi"}}, "resources.memory"),
        ({"resources": {"gpu": 1}}, "resources.gpu"),
        ({"labels": {"team": "a b"}}, "labels.team"),
        ({"labels": {"kubetask.io/tenant": "team-b"}}, "labels.kubetask.io/tenant"),
        ({"labels": {"-team": "a"}}, "labels.-team"),
        ({"name": "Nightly_Run"}, "name"),
        ({"name": "nightly\n"}, "name"),
        ({"queue": "gpu.queue"}, "queue"),
        ({"resources": {"gpu_type": "H100 80GB"}}, "resources.gpu_type"),
    ],
)
def test_per_job_caps_and_kubernetes_names_are_422_naming_the_field(
    as_: dict[str, httpx.Client], fields: dict[str, Any], named: str
) -> None:
    response = as_["a"].post("/v1/jobs", json={"kind": "noop", **fields})
    assert response.status_code == 422, response.text
    assert named in [e["field"] for e in response.json()["errors"]]


def test_a_job_without_a_deadline_gets_the_largest_and_pages_are_capped(
    as_: dict[str, httpx.Client],
) -> None:
    rendered = as_["a"].post("/v1/jobs", params={"dry_run": "true"}, json={"kind": "noop"})
    assert rendered.json()["request"]["timeout_s"] == 600
    capped = as_["a"].get("/v1/jobs", params={"limit": "21"})  # served as the most, 20
    assert capped.status_code == 200, capped.text
    assert len(capped.json()["items"]) <= 20


# -- the SDK and the CLI carry the token -----------------------------------------------------
def test_the_sdk_sends_its_token_or_kubetask_token(
    server: ApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBETASK_TOKEN", raising=False)
    with Client(server.base_url, token=token("a")) as client:
        job = client.submit("noop", {"steps": 1})
        assert job.wait(timeout=30).tenant == "team-a"
    monkeypatch.setenv("KUBETASK_TOKEN", token("b"))
    with Client(server.base_url) as client, pytest.raises(NotFound):
        client.get(job.id)
    monkeypatch.delenv("KUBETASK_TOKEN")
    with Client(server.base_url) as client, pytest.raises(Unauthorized) as caught:
        client.get(job.id)
    assert caught.value.status == 401


def test_the_cli_sends_its_token_and_a_401_is_one_line(
    server: ApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBETASK_TOKEN", raising=False)
    runner = CliRunner()
    done = runner.invoke(
        app, ["--server", server.base_url, "--token", token("a"), "submit", "noop"]
    )
    assert done.exit_code == 0, done.output
    job_id = done.stdout.strip()
    monkeypatch.setenv("KUBETASK_TOKEN", token("a2"))
    assert runner.invoke(app, ["--server", server.base_url, "get", job_id]).exit_code == 0
    monkeypatch.delenv("KUBETASK_TOKEN")
    refused = runner.invoke(app, ["--server", server.base_url, "get", job_id])
    assert refused.exit_code == ExitCode.ERROR
    assert refused.stderr.strip().splitlines() == [
        "error: 401 a bearer token is required (set KUBETASK_TOKEN or --token)"
    ]


# -- no tokens, no network ---------------------------------------------------------------------
def test_without_tokens_the_server_refuses_any_address_but_loopback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBETASK_")}
    env["KUBETASK_DATA_DIR"] = str(tmp_path)
    refused = subprocess.run(
        [sys.executable, "-m", "kubetask.api", "--host", "0.0.0.0", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    assert "KUBETASK_TOKENS_FILE" in refused.stderr
    assert "Traceback" not in refused.stderr  # (a bad tokens file: tests/unit/test_limits.py)


def _bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(name)}"}


def _live_job_ids(client: httpx.Client, until_seen: set[str], into: set[str]) -> None:
    """Read `/v1/events` until every id in `until_seen` ended, collecting every job id."""
    with client.stream("GET", "/v1/events") as response:
        assert response.status_code == 200
        ended: set[str] = set()
        for line in response.iter_lines():  # keepalives come every second
            event = json.loads(line.removeprefix("data: ")) if line.startswith("data:") else {}
            if "job_id" in event:
                into.add(event["job_id"])
                if event["type"] == "state" and event["state"] == "succeeded":
                    ended.add(event["job_id"])
            if until_seen and until_seen <= ended:
                return


def test_the_all_jobs_stream_carries_only_the_callers_tenants_jobs(
    as_: dict[str, httpx.Client],
) -> None:
    seen: dict[str, set[str]] = {"a": set(), "root": set()}
    mine: set[str] = set()
    everyone: set[str] = set()
    readers = [
        threading.Thread(target=_live_job_ids, args=(as_["a"], mine, seen["a"]), daemon=True),
        threading.Thread(
            target=_live_job_ids, args=(as_["root"], everyone, seen["root"]), daemon=True
        ),
    ]
    for reader in readers:
        reader.start()
    time.sleep(1.0)  # both streams subscribed ("ready" is sent before any event)
    theirs = submit(as_["b"], {"steps": 2})
    ours = submit(as_["a"], {"steps": 2})
    everyone.update({theirs, ours})
    mine.add(ours)
    for reader in readers:
        reader.join(30)
        assert not reader.is_alive(), (seen, ours, theirs)
    assert ours in seen["a"]
    assert theirs not in seen["a"]  # team-b's job never reaches team-a
    assert {ours, theirs} <= seen["root"]  # an admin sees every tenant's
