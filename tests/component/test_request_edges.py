"""Request bodies at their edges, against the real API process: too large however it is sent
(413), not JSON or compressed (415), JSON with a syntax error (422 saying line and column, naming no
field), and numbers JSON does not have, NaN and Infinity (422 naming the field)."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.servers import ApiServer

PROBLEM = "application/problem+json"
MIB = 1024 * 1024
LIMIT = MIB  # KUBETASK_MAX_BODY_BYTES' default


def _in_chunks(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def _created(api: ApiServer, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = api.client.get("/v1/jobs", params={"label": selector}).json()[
        "items"
    ]
    return items


@pytest.mark.parametrize("sent", ["chunked", "with Content-Length"])
def test_a_20_mib_body_is_413_however_it_is_sent(api: ApiServer, sent: str) -> None:
    body = json.dumps({"kind": "noop", "params": {"payload": "x" * (20 * MIB)}}).encode()
    content = _in_chunks(body) if sent == "chunked" else body
    response = api.client.post(
        "/v1/jobs", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == PROBLEM
    assert str(LIMIT) in response.json()["detail"]
    chunked = response.request.headers.get("transfer-encoding") == "chunked"
    assert chunked is (sent == "chunked")
    assert api.client.get("/v1/kinds").status_code == 200  # and the server carries on


@pytest.mark.parametrize(
    ("request_args", "sent"),
    [
        ({"content": b'{"kind": "noop"}', "headers": {"content-type": "text/plain"}}, "text/plain"),
        ({"data": {"kind": "noop"}}, "application/x-www-form-urlencoded"),
        ({"files": {"kind": ("job.json", b'{"kind": "noop"}')}}, "multipart/form-data"),
        ({"content": b"<job/>", "headers": {"content-type": "application/xml"}}, "application/xml"),
        ({"content": b'{"kind": "noop"}'}, None),
    ],
    ids=["text", "form", "multipart", "xml", "no-content-type"],
)
def test_a_body_that_is_not_json_is_415(
    api: ApiServer, request_args: dict[str, Any], sent: str | None
) -> None:
    response = api.client.post("/v1/jobs", **request_args)
    assert response.status_code == 415, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["accept"] == "application/json"
    problem = response.json()
    assert problem["status"] == 415
    assert "application/json" in problem["detail"]
    assert (sent or "no Content-Type") in problem["detail"]


def test_a_compressed_body_is_415_for_a_job_and_for_an_upload(api: ApiServer) -> None:
    body = gzip.compress(b'{"kind": "noop"}')
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    job = api.client.post("/v1/jobs", params={"dry_run": "true"}, content=body, headers=headers)
    name = f"zipped-{uuid.uuid4().hex[:8]}.bin"
    upload = api.client.put(f"/v1/uploads/{name}", content=body, headers=headers)
    for response in (job, upload):
        assert response.status_code == 415, response.text
        assert response.headers["accept-encoding"] == "identity"
        assert "gzip" in response.json()["detail"]
    assert name not in [e["path"] for e in api.client.get("/v1/uploads").json()["items"]]
    plain = {"content-type": "application/json", "content-encoding": "identity"}
    sent = b'{"kind": "noop"}'
    dry = api.client.post("/v1/jobs", params={"dry_run": "true"}, content=sent, headers=plain)
    assert dry.status_code == 200


def test_a_coding_on_a_second_content_encoding_line_is_415_too(api: ApiServer) -> None:
    """Two Content-Encoding lines are one list (RFC 9110 5.3): `identity` first hides
    nothing."""
    body = gzip.compress(b'{"kind": "noop"}')
    headers = [
        ("content-type", "application/json"),
        ("content-encoding", "identity"),
        ("content-encoding", "gzip"),
    ]
    job = api.client.post("/v1/jobs", params={"dry_run": "true"}, content=body, headers=headers)
    name = f"zipped-{uuid.uuid4().hex[:8]}.bin"
    upload = api.client.put(f"/v1/uploads/{name}", content=body, headers=headers)
    for response in (job, upload):
        assert response.status_code == 415, response.text
        assert "identity, gzip" in response.json()["detail"]
    assert name not in [e["path"] for e in api.client.get("/v1/uploads").json()["items"]]


def test_a_json_media_type_with_parameters_or_a_json_suffix_is_json(api: ApiServer) -> None:
    for content_type in ("application/json; charset=utf-8", "application/vnd.kubetask.job+json"):
        response = api.client.post(
            "/v1/jobs",
            params={"dry_run": "true"},
            content=b'{"kind": "noop"}',
            headers={"content-type": content_type},
        )
        assert response.status_code == 200, (content_type, response.text)


@pytest.mark.parametrize(
    "body",
    [
        b'{\n  "kind": "noop",\n  "params": {"steps": 1,}\n}',
        b'{"kind": "noop"',
        b"{not json",
        b'{"kind": "noop"} trailing',
    ],
)
def test_a_json_syntax_error_says_line_and_column_and_names_no_field(
    api: ApiServer, body: bytes
) -> None:
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(body)
    response = api.client.post(
        "/v1/jobs", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    where = f"line {expected.value.lineno} column {expected.value.colno}"
    assert where in problem["detail"], problem
    assert [(e["field"], e["loc"], e["type"]) for e in problem["errors"]] == [
        ("", ["body"], "json_invalid")
    ]


def test_bytes_that_are_not_utf8_say_where(api: ApiServer) -> None:
    response = api.client.post(
        "/v1/jobs", content=b'{"kind":\n "\xff"}', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert "line 2 column 3" in response.json()["detail"]


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
@pytest.mark.parametrize("dry_run", [False, True], ids=["submit", "dry-run"])
@pytest.mark.parametrize(
    ("template", "field"),
    [
        ('{"kind": "features", "params": {"envelope_max_hz": %s}', "params.envelope_max_hz"),
        ('{"kind": "noop", "params": {"step_s": %s}', "params.step_s"),
        ('{"kind": "hpo", "params": {"search": {"lr": [0.001, %s]}}', "params.search.lr.1"),
        ('{"kind": "noop", "timeout_s": %s', "timeout_s"),
    ],
    ids=["unbounded-param", "bounded-param", "nested", "top-level"],
)
def test_nan_and_infinity_are_refused_naming_the_field(
    api: ApiServer, number: str, dry_run: bool, template: str, field: str
) -> None:
    label = uuid.uuid4().hex[:12]
    body = (template % number) + f', "labels": {{"test": "{label}"}}}}'
    response = api.client.post(
        "/v1/jobs",
        params={"dry_run": "true"} if dry_run else {},
        content=body.encode(),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert [(e["field"], e["type"]) for e in problem["errors"]] == [(field, "finite_number")]
    assert f"{field}: must be a finite number, not {number}" in problem["detail"]
    assert _created(api, f"test={label}") == []


def test_a_body_of_many_errors_gets_a_short_answer(api: ApiServer) -> None:
    params = {f"unknown_{i}": i for i in range(5000)}
    response = api.client.post(
        "/v1/jobs", params={"dry_run": "true"}, json={"kind": "noop", "params": params}
    )
    assert response.status_code == 422
    problem = response.json()
    assert len(problem["errors"]) == 100
    assert problem["errors_left_out"] == 4900
    assert problem["errors"][0]["field"] == "params.unknown_0"
    assert problem["detail"].endswith("; and 4990 more")
    assert len(response.content) < 30_000  # not ~100 bytes per error sent


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"kind": "noop", "\\ud800": NaN}', "\ud800"),  # a lone surrogate, quoted back
        ('{"kind": "noop", "params": {"\\udfff": 1e400}}', "params.\udfff"),
        ('{"kind": "noop", "retries": %s}' % ("9" * 4301), ""),  # past Python's int digits
        ('{"kind": "mat-import", "params": {"variable": "a{4294967296}"}}', "params.variable"),
        (
            '{"kind": "mat-import", "params": {"label_pattern": "%s"}}' % ("(" * 900 + ")" * 900),
            "params.label_pattern",
        ),
    ],
    ids=["surrogate-key", "surrogate-nested-key", "huge-integer", "regex-repeat", "regex-depth"],
)
def test_what_python_cannot_read_or_write_back_is_422_not_500(
    api: ApiServer, body: str, field: str
) -> None:
    response = api.client.post(
        "/v1/jobs",
        params={"dry_run": "true"},
        content=body.encode(),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert [e["field"] for e in response.json()["errors"]] == [field]
