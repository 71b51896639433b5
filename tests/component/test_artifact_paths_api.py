"""Artifact paths through the real API process with two tenants (issue 13, point 1): every
field that names a file answers 422 on its field path, before anything runs, for a path
outside the artifact store, a '..', another tenant's job (exactly as for `job:<id>` of it or
a job that does not exist), or another tenant's uploads; the tenant's own paths are taken."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.servers import ApiServer, bearer_clients, own_database

PROBLEM = "application/problem+json"
MISSING = "0000000000000000"
TOKENS = {"a": ("team-a", "user"), "b": ("team-b", "user"), "root": ("ops", "admin")}

# Every kind's fields that name a file (tests/unit/test_artifact_paths.py keeps the list whole)
FIELDS: list[tuple[str, str]] = [
    ("train", "dataset"),
    ("hpo", "train.dataset"),
    ("nas", "train.dataset"),
    ("mat-import", "files"),
    ("features", "dataset"),
    *[
        (kind, field)
        for kind in ("evaluate", "export", "test", "explain", "explain-batch")
        for field in ("model", "dataset")
    ],
]


def token(name: str) -> str:
    return f"{name}-token-{'p' * 24}"


@pytest.fixture(scope="module")
def server(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    root = tmp_path_factory.mktemp("paths")
    tokens = root / "tokens.json"
    tokens.write_text(
        json.dumps([{"token": token(n), "tenant": t, "role": r} for n, (t, r) in TOKENS.items()])
    )
    api = ApiServer(redis_url=own_database(redis_url), data_dir=root / "api", tokens_file=tokens)
    api.start()
    yield api
    api.close()


@pytest.fixture(scope="module")
def as_(server: ApiServer) -> Iterator[dict[str, httpx.Client]]:
    with bearer_clients(server.base_url, {name: token(name) for name in TOKENS}) as clients:
        yield clients


@pytest.fixture(scope="module")
def jobs(as_: dict[str, httpx.Client]) -> dict[str, str]:
    """A finished noop job of each tenant (their folders exist in the artifact store)."""
    made = {}
    for name in ("a", "b"):
        response = as_[name].post("/v1/jobs", json={"kind": "noop"})
        assert response.status_code == 201, response.text
        made[name] = response.json()["id"]
    return made


def params_at(kind: str, field: str, value: str, own_model: str) -> dict[str, Any]:
    params: dict[str, Any] = {"model": own_model} if field == "dataset" and kind in (
        "evaluate", "export", "test", "explain", "explain-batch"
    ) else {}  # fmt: skip
    head, _, tail = field.partition(".")
    params[head] = {tail: value} if tail else value
    return params


def refused(client: httpx.Client, body: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
    response = client.post("/v1/jobs", params={"dry_run": "true"} if dry_run else None, json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    problem: dict[str, Any] = response.json()
    return problem


def errors_of(problem: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {e["field"]: (e["type"], e["msg"]) for e in problem["errors"]}


@pytest.mark.parametrize(("kind", "field"), FIELDS)
def test_a_path_outside_the_store_is_422_on_its_field_whether_it_exists_or_not(
    as_: dict[str, httpx.Client], jobs: dict[str, str], kind: str, field: str
) -> None:
    own_model = f"{jobs['a']}/model.pt"
    answers = {}
    for path in ("/etc/passwd", "/nonexistent", "../../x.npz", f"{jobs['a']}/../../x.npz"):
        problem = refused(
            as_["a"], {"kind": kind, "params": params_at(kind, field, path, own_model)}
        )
        assert problem["status"] == 422
        errors = errors_of(problem)
        assert list(errors) == [f"params.{field}"]
        answers[path] = errors[f"params.{field}"]
    assert len(set(answers.values())) == 1, answers  # one answer: nothing about the paths
    assert "relative to the artifact store" in answers["/etc/passwd"][1]


@pytest.mark.parametrize(("kind", "field"), FIELDS)
def test_another_tenants_job_in_a_plain_path_is_refused_as_a_missing_job_is(
    as_: dict[str, httpx.Client], jobs: dict[str, str], kind: str, field: str
) -> None:
    own_model = f"{jobs['a']}/model.pt"
    theirs, name = jobs["b"], "dataset.npz" if field != "files" else "x.mat"
    plain = errors_of(
        refused(
            as_["a"],
            {"kind": kind, "params": params_at(kind, field, f"{theirs}/{name}", own_model)},
        )
    )
    missing = errors_of(
        refused(
            as_["a"],
            {"kind": kind, "params": params_at(kind, field, f"{MISSING}/{name}", own_model)},
        )
    )
    where = f"params.{field}"
    assert plain[where] == ("job_ref_not_found", f"no job {theirs!r} (it may have expired)")
    assert plain[where] == (missing[where][0], missing[where][1].replace(MISSING, theirs))
    if field in ("model", "dataset", "train.dataset"):  # fields that also take job:<id>
        ref = errors_of(
            refused(
                as_["a"],
                {"kind": kind, "params": params_at(kind, field, f"job:{theirs}", own_model)},
            )
        )
        assert ref[where] == plain[where]


def test_the_tenants_own_jobs_and_uploads_are_taken_and_dry_runs_check_too(
    as_: dict[str, httpx.Client], jobs: dict[str, str]
) -> None:
    ours, theirs = jobs["a"], jobs["b"]
    bodies: list[dict[str, Any]] = [
        {"kind": "evaluate", "params": {"model": f"{ours}/model.pt"}},
        {"kind": "features", "params": {"dataset": "uploads/team-a/cwru/d.npz"}},
        {"kind": "mat-import", "params": {"files": "uploads/team-a/cwru/**/*.mat"}},
        {"kind": "hpo", "params": {"train": {"dataset": f"{ours}/dataset.npz"}}},
    ]
    for body in bodies:
        dry = as_["a"].post("/v1/jobs", params={"dry_run": "true"}, json=body)
        assert dry.status_code == 200, dry.text
        stored, given = dry.json()["request"]["params"], body["params"]
        if "train" in given:
            stored, given = stored["train"], given["train"]
        assert {key: stored[key] for key in given} == given  # taken as given
    for value, says in (
        ("uploads/team-b/cwru/d.npz", "outside your tenant's uploads area 'uploads/team-a/'"),
        ("uploads/d.npz", "outside your tenant's uploads area"),
        ("gan/press-7/seed.csv", "must start with the id of one of your tenant's jobs"),
    ):
        body = {"kind": "features", "params": {"dataset": value}}
        for dry_run in (False, True):
            kind, message = errors_of(refused(as_["a"], body, dry_run=dry_run))["params.dataset"]
            assert kind == "artifact_path"
            assert says in message
    glob = {"kind": "mat-import", "params": {"files": "*/examples/*.mat"}}
    assert "without wildcards" in errors_of(refused(as_["a"], glob))["params.files"][1]
    # team-b reads its own job's folder; an admin of another tenant is held to its own too
    own = as_["b"].post("/v1/jobs", params={"dry_run": "true"}, json={
        "kind": "evaluate", "params": {"model": f"{theirs}/model.pt"}
    })  # fmt: skip
    assert own.status_code == 200, own.text
    admin = refused(as_["root"], {"kind": "evaluate", "params": {"model": f"{ours}/model.pt"}})
    assert errors_of(admin)["params.model"][0] == "job_ref_not_found"


def test_a_path_in_an_own_jobs_folder_is_accepted_and_stored_as_given(
    as_: dict[str, httpx.Client], jobs: dict[str, str]
) -> None:
    ours = jobs["a"]
    response = as_["a"].post(
        "/v1/jobs", json={"kind": "features", "params": {"dataset": f"{ours}/nowhere.npz"}}
    )
    assert response.status_code == 201, response.text
    assert response.json()["request"]["params"]["dataset"] == f"{ours}/nowhere.npz"
