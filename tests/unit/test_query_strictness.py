"""What a route takes from its query (api/url.py) and the bearer token in the OpenAPI spec
(api/auth.py, api/app.py), without a server."""

from __future__ import annotations

from typing import Any

import pytest

from kubetask.api.app import create_app
from kubetask.api.settings import Settings
from kubetask.api.url import QueryParameters, check_query
from kubetask.controller.errors import InvalidRequest

LIST = QueryParameters(
    names=frozenset({"state", "kind", "tenant", "label", "limit", "cursor"}),
    one_value=frozenset({"state", "kind", "tenant", "limit", "cursor"}),
    others_refused=True,
)
SUBMIT = QueryParameters(
    names=frozenset({"dry_run"}), one_value=frozenset({"dry_run"}), others_refused=True
)
CANCEL = QueryParameters(
    names=frozenset({"purge"}), one_value=frozenset({"purge"}), others_refused=True
)
PAGE = QueryParameters(names=frozenset(), one_value=frozenset(), others_refused=False)


def refused(query: list[tuple[str, str]], taken: QueryParameters) -> list[tuple[Any, str]]:
    with pytest.raises(InvalidRequest) as caught:
        check_query(query, taken)
    return [(error.loc, error.msg) for error in caught.value.errors]


@pytest.mark.parametrize(
    ("taken", "name", "meant"),
    [
        (SUBMIT, "dryrun", "dry_run"),
        (SUBMIT, "dry-run", "dry_run"),
        (LIST, "limt", "limit"),
        (LIST, "status", "state"),
        (CANCEL, "prune", "purge"),
    ],
)
def test_a_parameter_the_route_does_not_take_is_refused_with_the_one_meant(
    taken: QueryParameters, name: str, meant: str
) -> None:
    [(loc, msg)] = refused([(name, "true")], taken)
    assert loc == ("query", name)
    assert msg.endswith(f"did you mean {meant}?")


def test_with_nothing_close_the_refusal_says_what_the_route_takes() -> None:
    [(_, msg)] = refused([("zzz", "1"), ("zzz", "2")], LIST)  # named once
    assert msg.endswith("which takes: cursor, kind, label, limit, state, tenant")
    [(_, msg)] = refused([("x", "1")], QueryParameters(frozenset(), frozenset(), True))
    assert msg.endswith("which takes none")


def test_every_parameter_misread_is_named_repeated_ones_too() -> None:
    query = [("state", "failed"), ("state", "running"), ("limt", "5"), ("label", "a=b")]
    assert [loc for loc, _ in refused([*query, ("label", "c=d")], LIST)] == [
        ("query", "state"),
        ("query", "limt"),
    ]


def test_what_a_route_takes_passes() -> None:
    check_query([("label", "a=b"), ("label", "c=d"), ("limit", "5")], LIST)
    check_query([], SUBMIT)


def test_a_page_for_browsers_ignores_any_query() -> None:
    check_query([("utm_source", "mail"), ("v", "2")], PAGE)


def _operations(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (path, method): operation
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
    }


def test_the_spec_names_the_bearer_token_on_each_operation_that_reads_one() -> None:
    """Optional there (`{}`): a server without a tokens file reads none. The operations
    that read one are those that can answer 401."""
    spec = create_app(Settings(backend="local")).openapi()
    bearer = spec["components"]["securitySchemes"]["bearer"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    secured = {where: operation.get("security") for where, operation in _operations(spec).items()}
    answers_401 = {where for where, op in _operations(spec).items() if "401" in op["responses"]}
    assert ("/v1/jobs", "post") in answers_401
    assert ("/v1/jobs/{job_id}/artifacts/{path}", "head") in answers_401
    optional_bearer: list[dict[str, list[str]]] = [{"bearer": []}, {}]
    for where, security in secured.items():
        assert security == (optional_bearer if where in answers_401 else None), where
