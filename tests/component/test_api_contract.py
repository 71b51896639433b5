"""The REST contract: status codes, problem details with field paths, idempotency, listing.

These run against the real API process (and a real Redis-protocol server)."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from tests.servers import ApiServer

PROBLEM = "application/problem+json"


def _label() -> dict[str, str]:
    return {"test": uuid.uuid4().hex[:12]}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "datagen", "colour": "red"}, "colour"),
        ({"kind": "no-such-kind"}, "kind"),
        ({"kind": "datagen", "params": {"n_per_class": 0}}, "params.n_per_class"),
        ({"kind": "datagen", "params": {"bogus": 1}}, "params.bogus"),
        ({"kind": "datagen", "params": {"n_per_class": True}}, "params.n_per_class"),
        ({"kind": "datagen", "retries": -1}, "retries"),
        ({"kind": "datagen", "labels": {"Bad Key": "x"}}, "labels.Bad Key"),
        ({"kind": "datagen", "labels": {"team": "Bad Value"}}, "labels.team"),
        ({"kind": "datagen", "resources": {"memory": "lots"}}, "resources.memory"),
        ({"params": {}}, "kind"),
    ],
)
def test_invalid_requests_are_422_problems_naming_the_field(
    api: ApiServer, body: dict[str, object], field: str
) -> None:
    response = api.client.post("/v1/jobs", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == 422
    assert field in [e["field"] for e in problem["errors"]], problem
    assert field in problem["detail"]


def test_malformed_json_is_422(api: ApiServer) -> None:
    response = api.client.post(
        "/v1/jobs", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


def test_oversized_body_is_413(api: ApiServer) -> None:
    huge = {"kind": "noop", "params": {"fail_message": "x" * (2 * 1024 * 1024)}}
    response = api.client.post("/v1/jobs", json=huge)
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM


def test_submit_returns_201_location_and_the_job_view(api: ApiServer) -> None:
    response = api.client.post("/v1/jobs", json={"kind": "noop", "labels": _label()})
    assert response.status_code == 201
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["state"] == "queued"
    assert job["request"]["params"]["steps"] == 0  # defaults filled in
    assert job["backend"]["backend"] == "local"
    assert api.wait(job["id"])["state"] == "succeeded"


def test_a_new_split_jobs_view_shows_each_worker_not_yet_heard_from(api: ApiServer) -> None:
    body = {"kind": "noop", "completions": 3, "parallelism": 3, "labels": _label()}
    job = api.client.post("/v1/jobs", json=body).json()
    assert job["progress"] is None
    assert job["workers"] == [{"index": i, "fraction": 0.0, "stage": None} for i in range(3)]
    assert api.wait(job["id"])["state"] == "succeeded"


def test_unknown_job_is_404(api: ApiServer) -> None:
    for path in ("/v1/jobs/0000000000000000", "/v1/jobs/not-an-id", "/v1/jobs/x/logs"):
        response = api.client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == PROBLEM
    assert api.client.delete("/v1/jobs/0000000000000000").status_code == 404
    assert api.client.get("/v1/jobs/0000000000000000/events").status_code == 404


def test_dry_run_creates_nothing(api: ApiServer) -> None:
    labels = _label()
    response = api.client.post(
        "/v1/jobs", params={"dry_run": "true"}, json={"kind": "datagen", "labels": labels}
    )
    assert response.status_code == 200
    rendered = response.json()
    assert rendered["request"]["params"]["n_per_class"] == 40
    assert rendered["object"]["spec"]["command"] == ["python", "-m", "kubetask.jobs", "datagen"]
    selector = f"test={labels['test']}"
    assert api.client.get("/v1/jobs", params={"label": selector}).json()["items"] == []


def test_dry_run_validates_too(api: ApiServer) -> None:
    response = api.client.post(
        "/v1/jobs", params={"dry_run": "true"}, json={"kind": "datagen", "params": {"length": 1}}
    )
    assert response.status_code == 422


def test_idempotency_key_replay_returns_the_same_job(api: ApiServer) -> None:
    key = uuid.uuid4().hex
    body = {"kind": "noop", "labels": _label()}
    first = api.client.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
    second = api.client.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    selector = f"test={body['labels']['test']}"  # type: ignore[index]
    assert len(api.client.get("/v1/jobs", params={"label": selector}).json()["items"]) == 1


def test_idempotency_key_under_concurrent_requests_makes_one_job(api: ApiServer) -> None:
    key = uuid.uuid4().hex
    labels = _label()

    def post(_: int) -> httpx.Response:
        with httpx.Client(base_url=api.base_url, timeout=30) as client:
            return client.post(
                "/v1/jobs",
                json={"kind": "noop", "labels": labels},
                headers={"Idempotency-Key": key},
            )

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(post, range(16)))
    assert sorted(r.status_code for r in responses) == [200] * 15 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    listed = api.client.get("/v1/jobs", params={"label": f"test={labels['test']}"}).json()
    assert len(listed["items"]) == 1


def test_idempotency_key_reused_for_another_request_is_409(api: ApiServer) -> None:
    key = uuid.uuid4().hex
    assert (
        api.client.post("/v1/jobs", json={"kind": "noop"}, headers={"Idempotency-Key": key})
    ).status_code == 201
    response = api.client.post(
        "/v1/jobs", json={"kind": "noop", "params": {"steps": 1}}, headers={"Idempotency-Key": key}
    )
    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM


def test_idempotency_key_of_a_purged_job_makes_a_new_job(api: ApiServer) -> None:
    key = uuid.uuid4().hex
    first = api.client.post("/v1/jobs", json={"kind": "noop"}, headers={"Idempotency-Key": key})
    purged = first.json()["id"]
    api.wait(purged)
    assert api.client.delete(f"/v1/jobs/{purged}", params={"purge": "true"}).status_code == 204
    body = {"kind": "noop", "params": {"steps": 1}}  # the key is free for any request now
    again = api.client.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
    assert again.status_code == 201
    assert again.json()["id"] != purged
    replayed = api.client.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
    assert replayed.status_code == 200  # the key names the new job
    assert replayed.json()["id"] == again.json()["id"]


def test_a_list_filter_given_twice_is_refused_naming_it(api: ApiServer) -> None:
    response = api.client.get("/v1/jobs", params=[("state", "failed"), ("state", "cancelled")])
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["state"]
    assert api.client.get("/v1/jobs", params={"tenant": ""}).status_code == 422


def test_any_one_value_parameter_given_twice_is_refused_before_anything_happens(
    api: ApiServer,
) -> None:
    """Read as its last value, `dry_run=true&dry_run=false` would create a job and
    `purge=false&purge=true` delete one: every route refuses, naming it."""
    labels = _label()
    twice = api.client.post(
        "/v1/jobs",
        params=[("dry_run", "true"), ("dry_run", "false")],
        json={"kind": "noop", "labels": labels},
    )
    assert twice.status_code == 422, twice.text
    assert [e["field"] for e in twice.json()["errors"]] == ["dry_run"]
    selector = ",".join(f"{k}={v}" for k, v in labels.items())
    assert api.client.get("/v1/jobs", params={"label": selector}).json()["items"] == []
    job_id = api.submit("noop", labels=labels)
    api.wait(job_id)
    purge = api.client.delete(f"/v1/jobs/{job_id}", params=[("purge", "false"), ("purge", "true")])
    assert purge.status_code == 422, purge.text
    assert api.client.get(f"/v1/jobs/{job_id}").status_code == 200
    for path, name in ((f"/v1/jobs/{job_id}/logs", "tail"), (f"/v1/jobs/{job_id}/events", "since")):
        response = api.client.get(path, params=[(name, "1"), (name, "2")])
        assert response.status_code == 422, (path, response.text)
        assert [e["field"] for e in response.json()["errors"]] == [name]


def test_labels_given_twice_must_all_hold(api: ApiServer) -> None:
    labels = _label()
    (key, value), other = next(iter(labels.items())), uuid.uuid4().hex[:8]
    job_id = api.submit("noop", labels={**labels, "team": "ml"})
    both = {"label": [f"{key}={value}", "team=ml"]}
    assert [j["id"] for j in api.client.get("/v1/jobs", params=both).json()["items"]] == [job_id]
    clash = {"label": [f"{key}={value}", f"{key}={other}"]}
    assert api.client.get("/v1/jobs", params=clash).json()["items"] == []


def test_list_filters_newest_first_and_pages_with_a_cursor(api: ApiServer) -> None:
    labels = _label()
    ids = [api.submit("noop", labels=labels) for _ in range(5)]
    other = api.submit("datagen", {"n_per_class": 1, "length": 64}, labels=labels)
    for job_id in [*ids, other]:
        api.wait(job_id)
    selector = f"test={labels['test']}"
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"label": selector, "kind": "noop", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = api.client.get("/v1/jobs", params=params).json()
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))
    by_state = api.client.get(
        "/v1/jobs", params={"label": selector, "state": "succeeded", "kind": "datagen"}
    ).json()
    assert [item["id"] for item in by_state["items"]] == [other]


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": "many"}, {"label": "nokey"}, {"state": "asleep"}, {"cursor": "zz"}],
)
def test_list_rejects_bad_queries(api: ApiServer, params: dict[str, object]) -> None:
    response = api.client.get("/v1/jobs", params=params)  # type: ignore[arg-type]
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


def test_kinds_list_each_kind_with_its_params_schema(api: ApiServer) -> None:
    kinds = {k["kind"]: k for k in api.client.get("/v1/kinds").json()}
    assert {"datagen", "noop"} <= set(kinds)
    assert "n_per_class" in kinds["datagen"]["params_schema"]["properties"]


def test_health_readiness_and_openapi(api: ApiServer) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    assert api.client.get("/readyz").status_code == 200
    spec = api.client.get("/openapi.json").json()
    operations = {op["operationId"] for path in spec["paths"].values() for op in path.values()}
    assert {
        "submit_job",
        "list_jobs",
        "get_job",
        "cancel_job",
        "job_events",
        "job_logs",
    } <= operations
    assert api.client.get("/docs").status_code == 200


def test_the_openapi_spec_documents_the_400s_and_the_headers_clients_act_on(
    api: ApiServer,
) -> None:
    """Any operation may answer 400 (a URL that is not UTF-8, a foreign Host), as a problem;
    each 429 carries Retry-After, each 401 WWW-Authenticate, a store's 503 Retry-After."""
    spec = api.client.get("/openapi.json").json()
    operations = {op["operationId"]: op for path in spec["paths"].values() for op in path.values()}
    for name, operation in operations.items():
        responses = operation["responses"]
        assert "application/problem+json" in responses["400"]["content"], name
        for status, header in (("429", "Retry-After"), ("401", "WWW-Authenticate")):
            if status in responses:
                assert header in responses[status]["headers"], (name, status)
    assert "429" in operations["submit_job"]["responses"]
    for name in ("submit_job", "job_events", "list_artifacts", "healthz"):
        assert "Retry-After" in operations[name]["responses"]["503"]["headers"], name


def test_a_url_that_is_not_utf8_once_decoded_is_400_and_stores_nothing(api: ApiServer) -> None:
    """`%ff` read as U+FFFD would make `enc/%ff` and `enc/%fe` one file."""
    folder = f"enc-{uuid.uuid4().hex[:8]}"
    for path in (f"/v1/uploads/{folder}/%ff", f"/v1/uploads/{folder}/%fe"):
        response = api.client.put(path, content=b"bytes")
        assert response.status_code == 400, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert "UTF-8" in response.json()["detail"]
    assert api.client.get("/v1/uploads", params={"prefix": folder}).json()["items"] == []
    assert api.client.get("/v1/jobs?kind=%ff").status_code == 400
    snowman = api.client.put(f"/v1/uploads/{folder}/%E2%98%83", content=b"bytes")
    assert snowman.status_code == 201, snowman.text  # percent-encoded UTF-8 is a name


def test_head_answers_wherever_get_does_with_no_body(api: ApiServer) -> None:
    """An uptime check's `HEAD /healthz`; a stream's HEAD ends with its headers."""
    for path in ("/healthz", "/readyz", "/v1/kinds", "/v1/jobs", "/openapi.json", "/metrics"):
        get, head = api.client.get(path), api.client.head(path)
        assert (head.status_code, head.content) == (get.status_code, b""), path
        assert head.headers["content-type"] == get.headers["content-type"], path
    job_id = api.submit("noop", {"steps": 600, "step_s": 0.1})
    began = time.monotonic()
    stream = api.client.head(f"/v1/jobs/{job_id}/events", timeout=10)
    assert (stream.status_code, stream.content) == (200, b"")
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert time.monotonic() - began < 5
    assert api.client.head("/v1/jobs/0000000000000000").status_code == 404
    assert api.client.head("/nowhere").status_code == 404
    api.client.delete(f"/v1/jobs/{job_id}")


def test_without_tokens_only_requests_addressed_to_this_machine_are_served(
    api: ApiServer,
) -> None:
    """A page whose own name resolves to 127.0.0.1 (DNS rebinding) reaches the server with
    that name as Host, and the browser lets it read the answer: refused."""
    rebound = {"host": f"rebind.attacker.example:{api.port}"}
    refused = api.client.get("/v1/jobs", headers=rebound)
    assert refused.status_code == 400
    assert "localhost" in refused.json()["detail"]
    submitted = api.client.post("/v1/jobs", json={"kind": "noop"}, headers=rebound)
    assert submitted.status_code == 400
    for host in (f"localhost:{api.port}", f"[::1]:{api.port}", "127.0.0.1", "LOCALHOST."):
        assert api.client.get("/healthz", headers={"host": host}).status_code == 200, host
    url = api.base_url.replace("http", "ws") + f"/v1/jobs/{api.submit('noop')}/ws"
    with connect(url, origin=Origin(f"http://localhost:{api.port}"), open_timeout=10):
        pass
    for origin in ("http://rebind.attacker.example", "null"):  # null: a sandboxed frame's
        with pytest.raises(InvalidStatus) as ws_refused:  # a page's WebSocket says its origin
            connect(url, origin=Origin(origin), open_timeout=10).close()
        assert ws_refused.value.response.status_code == 403
