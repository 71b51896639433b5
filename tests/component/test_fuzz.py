"""The API fuzzed over its own OpenAPI spec (schemathesis): no 5xx, every status code and
content type documented, every response body valid against its declared schema.

It runs against the real API process (`python -m kubetask.api`, local backend) on a free port and a
real Redis-protocol server, with a bounded, deterministic number of examples per operation,
so that it belongs in `make test`.

What the fuzzer may submit: the server has one slot, and a generated request that would
create a job of any kind but `noop` is sent as a dry run (`?dry_run=true`: validated and
rendered, nothing runs), so the fuzzer never starts training, HPO or GAN work; `noop` jobs
are created for real (they report a few steps and exit), so the 201, replay and cancel
paths and the job view are checked too.

What cannot be fuzzed here: `WS /v1/jobs/{id}/ws` is a WebSocket route, which OpenAPI does
not describe. The event streams (`GET /v1/jobs/{id}/events`, `GET /v1/events`) are fuzzed
like the rest (ids, `since`, `Last-Event-ID`), but read only up to their first event: the
firehose never ends, nor does a running job's stream (their status, media type and first
event are what is checked).

The spec is built from the app itself (nothing starts before the lifespan) and the calls go
to the live server: schemathesis' fixture-based loader does not run under pytest 9.2.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis import Case
from schemathesis.core.transport import Response
from schemathesis.generation.stateful.state_machine import APIStateMachine

from kubetask.api.app import create_app
from kubetask.api.settings import Settings
from kubetask.controller.redis_server import RedisServer
from kubetask.kinds import load_kinds
from tests.servers import ApiServer, own_database

KINDS = load_kinds()  # the installed kinds (entry points)

PROBLEM = "application/problem+json"
MAX_EXAMPLES = 25  # per operation and phase
SEED = 20_24
REQUEST_TIMEOUT_S = 10
MAX_STREAM_EVENTS = 1

# The checks every response must pass.
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "ensure_resource_availability",
)
# Left out, and why:
# - positive_data_acceptance: a schema-valid request may still be refused with 422 for
#   reasons a JSON schema cannot state (an unknown kind, params checked by the kind's own
#   model, a priority outside the allow-list, parallelism > completions, a foreign cursor);
# - use_after_free: DELETE cancels a job, and the cancelled job stays readable (GET gives
#   its final state) by design;
# - ignored_auth / object_level_authorization: checked by the auth tests, with tokens.


def _config() -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "request-timeout": REQUEST_TIMEOUT_S,
            # Event streams may never end (the firehose, a running job's): the checks read
            # the first events, their media type and status.
            "max-stream-events": MAX_STREAM_EVENTS,
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
            "phases": {"stateful": {"max-steps": 6}},
            "checks": {
                "enabled": False,
                **{name: {"enabled": True} for name in CHECKS},
            },
        }
    )


@pytest.fixture(scope="module")
def fuzzed_api(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    """An API server of its own (one slot, its own Redis database)."""
    url = own_database(redis_server.url)
    server = ApiServer(redis_url=url, data_dir=tmp_path_factory.mktemp("fuzz"), slots=1)
    server.start()
    yield server
    server.close()
    _assert_no_tracebacks(server.data_dir / "api.log")


def _assert_no_tracebacks(log: Path) -> None:
    """A 5xx the checks saw, or an error the server swallowed, leaves a traceback here."""
    text = log.read_text() if log.exists() else ""
    assert "Traceback" not in text, text[-4000:]


# The spec the server serves, as the app builds it; the calls go to the live server.
schema = schemathesis.openapi.from_dict(
    create_app(Settings(backend="local")).openapi(), config=_config()
)


def only_noop_runs(case: Case[Any]) -> None:
    """Turn a submit of any kind but noop into a dry run (see the module docstring)."""
    if case.operation.method.upper() != "POST" or case.operation.path != "/v1/jobs":
        return
    body = case.body
    kind = body.get("kind") if isinstance(body, dict) else None
    if isinstance(kind, str) and kind in KINDS and kind != "noop":
        case.query = {**(case.query or {}), "dry_run": "true"}


@schema.parametrize()
def test_every_operation_answers_as_its_spec_says(case: Case[Any], fuzzed_api: ApiServer) -> None:
    only_noop_runs(case)
    case.call_and_validate(base_url=fuzzed_api.base_url)


def test_sequences_of_calls_answer_as_the_spec_says(fuzzed_api: ApiServer) -> None:
    """Stateful: submit, then read, list, cancel, stream and log the jobs just made
    (the links between operations are inferred from the spec)."""
    base: type[APIStateMachine] = schema.as_state_machine()

    class Machine(base):  # type: ignore[valid-type, misc]
        def get_call_kwargs(self, case: Case[Any]) -> dict[str, Any]:
            return {"base_url": fuzzed_api.base_url}

        def before_call(self, case: Case[Any]) -> None:
            only_noop_runs(case)

        def validate_response(self, response: Response, case: Case[Any], **kwargs: Any) -> None:
            case.validate_response(response)

    Machine.run(
        settings=hypothesis.settings(
            max_examples=10,
            stateful_step_count=6,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
    )


# -- what the fuzzer found, pinned --------------------------------------------------------------


def test_a_body_that_is_not_utf8_is_invalid_json_not_a_bad_request(fuzzed_api: ApiServer) -> None:
    response = fuzzed_api.client.post(
        "/v1/jobs", content=b"\xff\xfe{", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert [e["loc"] for e in response.json()["errors"]] == [["body"]]


def test_query_errors_name_the_query_parameter(fuzzed_api: ApiServer) -> None:
    for params, field in (({"cursor": ""}, "cursor"), ({"label": "no-value"}, "label")):
        response = fuzzed_api.client.get("/v1/jobs", params=params)
        assert response.status_code == 422
        [error] = response.json()["errors"]
        assert (error["field"], error["loc"]) == (field, ["query", field])


def test_405_names_every_method_of_the_path(fuzzed_api: ApiServer) -> None:
    for method, path, allowed in (
        ("PATCH", "/v1/jobs", "GET, HEAD, POST"),
        ("PUT", "/v1/jobs/0000000000000000", "DELETE, GET, HEAD"),
    ):
        response = fuzzed_api.client.request(method, path)
        assert response.status_code == 405
        assert response.headers["allow"] == allowed
        assert response.headers["content-type"] == PROBLEM


def test_the_spec_documents_every_error_as_problem_details(fuzzed_api: ApiServer) -> None:
    spec = fuzzed_api.client.get("/openapi.json").json()
    errors = {
        (path, method, status): response.get("content", {})
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        for status, response in operation["responses"].items()
        if status[0] in "45" and (path, method, status) != ("/readyz", "get", "503")
    }
    assert errors, spec["paths"]
    for where, content in errors.items():
        assert list(content) == [PROBLEM], where
        assert content[PROBLEM]["schema"] == {"$ref": "#/components/schemas/Problem"}, where
    for path in ("/v1/jobs/{job_id}", "/v1/jobs/{job_id}/logs", "/v1/jobs/{job_id}/events"):
        assert "404" in spec["paths"][path]["get"]["responses"], path
    assert "HTTPValidationError" not in spec["components"]["schemas"]
