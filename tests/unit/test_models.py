"""JobRequest: the contract a client submits, checked by Kubernetes' own rules."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from kubetask import Client
from kubetask.controller.records import JobRecord, stored_request
from kubetask.models import RECEIVED, BackendRef, JobRequest, JobState, Resources


def request(**fields: Any) -> JobRequest:
    return JobRequest.model_validate({"kind": "noop", **fields})


def rejected(**fields: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        request(**fields)
    return info.value


def test_minimal_request_has_the_documented_defaults() -> None:
    req = request()
    assert req.params == {}
    assert (req.retries, req.timeout_s, req.start_timeout_s) == (0, None, None)
    assert (req.parallelism, req.completions) == (1, 1)
    assert req.resources == Resources()
    assert req.labels == {}


def test_a_full_request_is_accepted() -> None:
    req = request(
        params={"steps": 2},
        name="hpo-run-1",
        resources={"cpu": "500m", "memory": "2Gi", "gpu": 1, "gpu_type": "a100"},
        retries=3,
        timeout_s=3600,
        start_timeout_s=300,
        parallelism=4,
        completions=16,
        priority="high",
        queue="team-ml",
        labels={"team": "ml", "example.com/owner": "alice", "empty": ""},
        notify={"webhook": "https://hooks.example.com/kubetask"},
    )
    assert req.resources.gpu == 1
    assert req.notify is not None
    assert str(req.notify.webhook) == "https://hooks.example.com/kubetask"


@pytest.mark.parametrize(
    "fields",
    [
        {"epochs": 3},
        {"resources": {"cpu": "1", "disk": "10Gi"}},
        {"notify": {"email": "a@example.com"}},
    ],
)
def test_unknown_fields_are_rejected(fields: dict[str, Any]) -> None:
    error = rejected(**fields)
    assert error.errors()[0]["type"] == "extra_forbidden"


@pytest.mark.parametrize("value", ["1", True, 1.0])
@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        (lambda v: {"retries": v}, ("retries",)),
        (lambda v: {"timeout_s": v}, ("timeout_s",)),
        (lambda v: {"start_timeout_s": v}, ("start_timeout_s",)),
        (lambda v: {"parallelism": v}, ("parallelism",)),
        (lambda v: {"completions": v}, ("completions",)),
        (lambda v: {"resources": {"gpu": v}}, ("resources", "gpu")),
    ],
)
def test_a_count_is_a_json_integer_not_a_string_a_boolean_or_a_float(
    fields: Any, loc: tuple[str, ...], value: object
) -> None:
    """As the kinds' params refuse `true` for a number: `"retries": true` is a mistake."""
    error = rejected(**fields(value))
    assert [e["loc"] for e in error.errors()] == [loc]


# --- labels ---------------------------------------------------------------------------------

GOOD_KEYS = [
    "team",
    "a",
    "A.b-c_d",
    "x" * 63,
    "example.com/owner",
    "sub.example.com/owner",
    "my-kubetask.io.example.com/owner",
]


@pytest.mark.parametrize("key", GOOD_KEYS)
def test_good_label_keys_are_accepted(key: str) -> None:
    assert request(labels={key: "v"}).labels == {key: "v"}


@pytest.mark.parametrize(
    "key",
    [
        "",
        "-team",
        "team-",
        "te am",
        "x" * 64,
        "example.com/",
        "Example.com/owner",
        "exa_mple.com/owner",
        "a/b/c",
        ("a" * 63 + ".") * 4 + "com/owner",  # prefix longer than 253
    ],
)
def test_bad_label_keys_are_rejected(key: str) -> None:
    error = rejected(labels={key: "v"})
    assert error.errors()[0]["loc"] == ("labels", key, "[key]")  # named by its place


@pytest.mark.parametrize(
    "key",
    [
        "kubetask.io/job-id",
        "kubetask.io/kind",
        "app.kubernetes.io/name",
        "x.kubetask.io/y",
        "batch.kubernetes.io/job-name",  # the Job controller's, on every pod
        "batch.kubernetes.io/controller-uid",
        "job-name",
        "controller-uid",
    ],
)
def test_reserved_label_prefixes_are_rejected(key: str) -> None:
    assert "reserved" in str(rejected(labels={key: "v"}))


def test_a_domain_merely_ending_in_a_reserved_name_is_not_reserved() -> None:
    assert request(labels={"mykubetask.io/team": "ml"}).labels == {"mykubetask.io/team": "ml"}


def test_a_label_key_with_an_empty_prefix_is_rejected() -> None:
    rejected(labels={"/team": "ml"})


@pytest.mark.parametrize("value", ["", "ml", "v1.2_3-x", "A", "x" * 63])
def test_good_label_values_are_accepted(value: str) -> None:
    assert request(labels={"k": value}).labels == {"k": value}


@pytest.mark.parametrize("value", ["-ml", "ml-", "m l", "a/b", "x" * 64, "é"])
def test_bad_label_values_are_rejected(value: str) -> None:
    error = rejected(labels={"k": value})
    assert error.errors()[0]["loc"] == ("labels", "k")  # named by its key


def test_at_most_32_labels() -> None:
    request(labels={f"k{i}": "v" for i in range(32)})
    rejected(labels={f"k{i}": "v" for i in range(33)})


# --- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "my-run", "run-1", "1st", "x" * 53])
def test_good_names_are_accepted(name: str) -> None:
    assert request(name=name).name == name


@pytest.mark.parametrize("name", ["", "My-Run", "-run", "run-", "my_run", "my.run", "x" * 54])
def test_bad_names_are_rejected(name: str) -> None:
    assert rejected(name=name).errors()[0]["loc"] == ("name",)


@pytest.mark.parametrize("queue", ["Team", "team_ml", "-q"])
def test_bad_queue_names_are_rejected(queue: str) -> None:
    assert rejected(queue=queue).errors()[0]["loc"] == ("queue",)


# --- resources ------------------------------------------------------------------------------


@pytest.mark.parametrize("cpu", ["1", "2", "500m", "0.5", "1.25", "100m", ".5", "5.", "1n", "250u"])
def test_good_cpu_quantities_are_accepted(cpu: str) -> None:
    assert Resources(cpu=cpu).cpu == cpu


@pytest.mark.parametrize(
    "memory", ["128974848", "129M", "123Mi", "512Mi", "2Gi", "1G", "1.5Gi", "64k", "1Ti"]
)
def test_good_memory_quantities_are_accepted(memory: str) -> None:
    assert Resources(memory=memory).memory == memory


@pytest.mark.parametrize(
    "quantity",
    ["", "-1", "500 m", "one", "2 cores", "1gi", "1GB", "Gi", "0x10", ".", "+1", "1.2.3"],
)
@pytest.mark.parametrize("field", ["cpu", "memory"])
def test_bad_quantities_are_rejected(field: str, quantity: str) -> None:
    error = rejected(resources={field: quantity})
    assert error.errors()[0]["loc"] == ("resources", field)


def test_exponent_quantities_from_the_kubernetes_docs_are_accepted() -> None:
    assert Resources(memory="129e6").memory == "129e6"


def test_a_gpu_type_without_a_gpu_is_refused_naming_it() -> None:
    """Its node selector picks GPU nodes, whose taint only a GPU task tolerates: the pod
    would stay unschedulable."""
    error = rejected(resources={"gpu_type": "nvidia-a100"})
    assert error.errors()[0]["loc"] == ("resources", "gpu_type")
    assert Resources(gpu=1, gpu_type="nvidia-a100").gpu_type == "nvidia-a100"


@pytest.mark.parametrize("gpu", [-1, 17])
def test_gpu_count_is_bounded(gpu: int) -> None:
    rejected(resources={"gpu": gpu})


# --- numbers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"retries": -1},
        {"retries": 21},
        {"timeout_s": 0},
        {"start_timeout_s": 0},
        {"parallelism": 0},
        {"parallelism": 65},
        {"completions": 0},
        {"completions": 1025},
    ],
)
def test_out_of_range_numbers_are_rejected(fields: dict[str, Any]) -> None:
    rejected(**fields)


def test_terminal_states() -> None:
    assert {s for s in JobState if s.terminal} == {
        JobState.SUCCEEDED,
        JobState.FAILED,
        JobState.CANCELLED,
    }


OLD_REQUEST = {  # what an older version accepted, refused by rules added since
    "kind": "noop",
    "labels": {"job-name": "etl"},
    "resources": {"gpu_type": "a100"},
    "secrets": [{"name": "s", "key": "k", "env": "PYTHONPATH"}],
}


def test_a_request_read_back_is_not_checked_again_by_rules_added_since() -> None:
    """From the store, or in a server's answer (the SDK and CLI read old jobs too): as it
    was accepted; a new submission still meets every rule."""
    old = JobRequest.model_validate(OLD_REQUEST, context=RECEIVED)
    assert old.labels == {"job-name": "etl"}
    assert old.resources.gpu_type == "a100"
    with pytest.raises(ValidationError) as refused:
        JobRequest.model_validate(OLD_REQUEST)
    assert [e["loc"] for e in refused.value.errors()] == [
        ("resources", "gpu_type"),
        ("labels", "job-name", "[key]"),
        ("secrets", 0, "env"),
    ]


def test_the_sdk_reads_a_page_holding_an_old_job() -> None:
    record = JobRecord(
        id="0000000000000001",
        request=JobRequest(kind="noop"),
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    view = record.view(backend=BackendRef(backend="local", name="/x"), progress=None)
    listed = {**view.model_dump(mode="json"), "request": OLD_REQUEST}
    page = httpx.Client(
        base_url="http://kt",
        transport=httpx.MockTransport(
            lambda _: httpx.Response(200, json={"items": [listed], "next_cursor": None})
        ),
    )
    with Client("http://kt", http=page) as client:
        (job,) = client.list()
    assert job.request.labels == {"job-name": "etl"}


def test_a_stored_request_todays_rules_refuse_is_read_with_why() -> None:
    """Readable (listed, cancelled, purged), and the reconciler never creates it."""
    request, refused = stored_request(json.dumps(OLD_REQUEST))
    assert request.labels == {"job-name": "etl"}
    assert refused is not None
    assert "labels.job-name.[key]" in refused
    assert "secrets.0.env" in refused
    assert stored_request(json.dumps({"kind": "noop"})) == (JobRequest(kind="noop"), None)


def test_a_stored_request_with_a_field_removed_since_is_read_without_it() -> None:
    """A field a later version dropped: not a reason to lose the record (it is refused, so
    it is never run, and names the field)."""
    request, refused = stored_request(json.dumps({"kind": "noop", "gone_since": 1}))
    assert request.kind == "noop"
    assert refused is not None
    assert "gone_since" in refused
