"""What the API makes of a request's query, against the real API process: a parameter a
route does not take is refused (422 naming it and the one meant) before anything happens,
on every route in the spec and the WebSocket; pages for browsers ignore any; a page size
over the server's most is served as that most; and a submission refused as invalid is not
counted against the tenant's rate."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from kubetask import Client
from tests.servers import ApiServer, own_database

PROBLEM = "application/problem+json"
MAX_PAGE_SIZE = 2


@pytest.fixture(scope="module")
def small_pages(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """A server whose pages hold at most MAX_PAGE_SIZE jobs."""
    server = ApiServer(
        redis_url=own_database(redis_url),
        data_dir=tmp_path_factory.mktemp("query"),
        max_page_size=MAX_PAGE_SIZE,
    )
    server.start()
    yield server
    server.close()


def _label() -> dict[str, str]:
    return {"test": uuid.uuid4().hex[:12]}


def _listed(api: ApiServer, labels: dict[str, str]) -> list[str]:
    selector = ",".join(f"{k}={v}" for k, v in labels.items())
    page = api.client.get("/v1/jobs", params={"label": selector}).json()
    return [job["id"] for job in page["items"]]


def _refusal(response: httpx.Response) -> list[tuple[list[str], str]]:
    """(loc, msg) of each field a 422 problem names."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    return [(error["loc"], error["msg"]) for error in response.json()["errors"]]


def test_a_misspelt_dry_run_is_refused_and_creates_nothing(small_pages: ApiServer) -> None:
    labels = _label()
    for name in ("dryrun", "dry-run"):
        response = small_pages.client.post(
            f"/v1/jobs?{name}=true", json={"kind": "noop", "labels": labels}
        )
        [(loc, msg)] = _refusal(response)
        assert loc == ["query", name]
        assert msg.endswith("did you mean dry_run?")
    assert _listed(small_pages, labels) == []


def test_a_parameter_with_no_name_is_named_as_a_query_parameter(small_pages: ApiServer) -> None:
    response = small_pages.client.post("/v1/jobs?=x", json={"kind": "noop"})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("query parameter '': not a parameter")


def test_a_misspelt_filter_is_refused_not_ignored(small_pages: ApiServer) -> None:
    response = small_pages.client.get("/v1/jobs?status=running&limt=5")
    assert _refusal(response) == [
        (["query", "status"], "not a parameter of this route; did you mean state?"),
        (["query", "limt"], "not a parameter of this route; did you mean limit?"),
    ]


def test_a_misspelt_purge_does_not_cancel(small_pages: ApiServer) -> None:
    job_id = small_pages.submit("noop", {"steps": 600, "step_s": 0.1})
    try:
        [(loc, msg)] = _refusal(small_pages.client.delete(f"/v1/jobs/{job_id}?prune=true"))
        assert (loc, msg.endswith("did you mean purge?")) == (["query", "prune"], True)
        assert small_pages.job(job_id)["cancel_requested"] is False
    finally:
        small_pages.client.delete(f"/v1/jobs/{job_id}")


def test_every_route_in_the_spec_refuses_a_parameter_it_does_not_take(
    small_pages: ApiServer,
) -> None:
    job_id = small_pages.submit("noop")
    small_pages.wait(job_id)
    paths = [
        f"/v1/jobs/{job_id}",
        f"/v1/jobs/{job_id}/logs",
        f"/v1/jobs/{job_id}/events",
        f"/v1/jobs/{job_id}/artifacts",
        f"/v1/jobs/{job_id}/artifacts/logs/output.log",
        "/v1/uploads",
        "/v1/events",
        "/v1/kinds",
        "/healthz",
        "/readyz",
        "/metrics",
    ]
    for path in paths:
        for method in ("GET", "HEAD"):
            response = small_pages.client.request(method, path, params={"bogus": "1"})
            assert response.status_code == 422, (method, path, response.status_code)
        [(loc, _)] = _refusal(small_pages.client.get(path, params={"bogus": "1"}))
        assert loc == ["query", "bogus"], path
    upload = small_pages.client.put("/v1/uploads/q/file.txt?overwrite=1", content=b"x")
    assert [loc for loc, _ in _refusal(upload)] == [["query", "overwrite"]]
    assert small_pages.client.get("/v1/uploads", params={"prefix": "q"}).json()["items"] == []


def test_pages_for_browsers_ignore_any_query(small_pages: ApiServer) -> None:
    """A link's tracking or cache-busting parameters: the page still loads."""
    for path in ("/", "/ui/app.js", "/docs", "/redoc", "/openapi.json"):
        response = small_pages.client.get(path, params={"utm_source": "mail", "v": "2"})
        assert response.status_code == 200, path


def test_the_websocket_refuses_since_twice_or_a_parameter_it_does_not_take(
    small_pages: ApiServer,
) -> None:
    job_id = small_pages.submit("noop", {"steps": 600, "step_s": 0.1})
    url = small_pages.base_url.replace("http", "ws") + f"/v1/jobs/{job_id}/ws"
    try:
        for query, name in (("since=1&since=2", "since"), ("snice=1", "snice")):
            with pytest.raises(InvalidStatus) as refused:
                connect(f"{url}?{query}", open_timeout=10).close()
            response = refused.value.response
            assert response.status_code == 422, response.body
            assert f'"loc":["query","{name}"]' in response.body.decode()
        with connect(f"{url}?since=1", open_timeout=10) as ws:
            assert '"seq":2' in str(ws.recv(timeout=10))
    finally:
        small_pages.client.delete(f"/v1/jobs/{job_id}")


def test_a_page_size_over_the_most_is_served_as_the_most(small_pages: ApiServer) -> None:
    """The SDK asks for 50, the dashboard for 100: each gets every job, page by page."""
    labels = _label()
    ids = [small_pages.submit("noop", labels=labels) for _ in range(MAX_PAGE_SIZE + 1)]
    selector = f"test={labels['test']}"
    first = small_pages.client.get("/v1/jobs", params={"label": selector, "limit": 100})
    assert first.status_code == 200, first.text
    page = first.json()
    assert [job["id"] for job in page["items"]] == ids[::-1][:MAX_PAGE_SIZE]
    rest = small_pages.client.get(
        "/v1/jobs", params={"label": selector, "limit": 100, "cursor": page["next_cursor"]}
    ).json()
    assert [job["id"] for job in rest["items"]] == ids[:1]
    with Client(small_pages.base_url) as client:
        assert [job.id for job in client.list(labels=labels)] == ids[::-1]
    for limit in ("0", "-1", "many"):
        response = small_pages.client.get("/v1/jobs", params={"limit": limit})
        assert [loc for loc, _ in _refusal(response)] == [["query", "limit"]], limit


@contextlib.contextmanager
def rate_limited(redis_url: str, tmp_path: Path, *, per_minute: int) -> Iterator[ApiServer]:
    """An API taking `per_minute` submissions a minute, with the minute's window far enough
    from its end for a burst to stay inside it."""
    api = ApiServer(
        redis_url=own_database(redis_url),
        data_dir=tmp_path / "api",
        max_submits_per_minute=per_minute,
    )
    api.start()
    try:
        if time.time() % 60 > 50:
            time.sleep(61 - time.time() % 60)
        yield api
    finally:
        api.close()


def test_submissions_refused_as_invalid_are_not_counted(redis_url: str, tmp_path: Path) -> None:
    """Four refused (params the kind's model rejects, a job reference that names no job)
    leave the whole rate of four for valid ones."""
    with rate_limited(redis_url, tmp_path, per_minute=4) as api:
        invalid = [
            {"kind": "noop", "params": {"steps": -1}},
            {"kind": "noop", "params": {"steps": -1}},
            {"kind": "noop", "params": {"steps": -1}},
            {"kind": "export", "params": {"model": "job:0000000000000000", "dataset": "x"}},
        ]
        for body in invalid:
            assert api.client.post("/v1/jobs", json=body).status_code == 422
        dry = {"params": {"dry_run": "true"}, "json": {"kind": "noop"}}
        for _ in range(4):
            answer = api.client.post("/v1/jobs", **dry)  # type: ignore[arg-type]
            assert answer.status_code == 200, answer.text
        assert api.client.post("/v1/jobs", **dry).status_code == 429  # type: ignore[arg-type]


def test_an_invalid_submission_never_holds_a_valid_ones_place(
    redis_url: str, tmp_path: Path
) -> None:
    """At a rate of one a minute, one valid submission sent among thirty invalid ones at
    once is accepted: an invalid one is not counted even while it is being refused (it was
    counted first and given back after, so the valid one could see 429 meanwhile)."""
    with rate_limited(redis_url, tmp_path, per_minute=1) as api:

        async def burst() -> list[int]:
            async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as client:
                bodies = [{"kind": "noop", "params": {"steps": -1}}] * 30
                bodies.insert(15, {"kind": "noop", "params": {"steps": 0}})
                answers = await asyncio.gather(*(client.post("/v1/jobs", json=b) for b in bodies))
                return [answer.status_code for answer in answers]

        codes = asyncio.run(burst())
        assert codes[15] == 201
        assert codes[:15] + codes[16:] == [422] * 30
        assert api.client.post("/v1/jobs", json={"kind": "noop"}).status_code == 429
