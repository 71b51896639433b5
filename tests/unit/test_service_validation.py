"""validate_request, fingerprint and kind_infos: the pure part of the job service."""

from __future__ import annotations

import pytest

from kubetask.controller.errors import InvalidRequest
from kubetask.controller.service import fingerprint, kind_infos, validate_request
from kubetask.jobs.params import DatagenParams, NoopParams
from kubetask.kinds import load_kinds
from kubetask.models import JobRequest

KINDS = load_kinds()  # the installed kinds (entry points)


def request(**fields: object) -> JobRequest:
    return JobRequest.model_validate({"kind": "noop", **fields})


def invalid(req: JobRequest) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        validate_request(req, kinds=KINDS)
    return info.value


# --- validate_request -----------------------------------------------------------------------


def test_unknown_kind_is_rejected_at_kind_naming_the_known_kinds() -> None:
    error = invalid(request(kind="train-llm"))
    assert [e.loc for e in error.errors] == [("kind",)]
    assert "train-llm" in error.errors[0].msg
    for known in KINDS:
        assert known in error.errors[0].msg


def test_bad_param_value_is_rejected_at_params_field() -> None:
    error = invalid(request(params={"steps": -1}))
    assert [e.loc for e in error.errors] == [("params", "steps")]


def test_unknown_param_is_rejected_at_params_field() -> None:
    error = invalid(request(params={"epochs": 3}))
    assert [e.loc for e in error.errors] == [("params", "epochs")]
    assert error.errors[0].type == "extra_forbidden"


def test_every_bad_param_is_reported() -> None:
    error = invalid(request(kind="datagen", params={"n_per_class": 0, "noise": -1}))
    assert {e.loc for e in error.errors} == {("params", "n_per_class"), ("params", "noise")}
    assert "params.n_per_class" in str(error)


def test_a_model_level_param_error_is_reported_at_params() -> None:
    error = invalid(request(kind="datagen", params={"rotation_hz": 900, "sample_rate": 1000}))
    assert [e.loc for e in error.errors] == [("params",)]
    assert "rotation_hz" in error.errors[0].msg


@pytest.mark.parametrize(
    "kind", sorted(k for k, s in KINDS.items() if "device" in s.params.model_fields)
)
def test_cuda_without_a_gpu_is_refused_at_submit_not_at_run_time(kind: str) -> None:
    params = {"device": "cuda"} | (
        {"model": "m/model.pt"} if kind not in ("train", "hpo", "nas") else {}
    )
    error = invalid(request(kind=kind, params=params))
    assert [e.loc for e in error.errors] == [("params", "device")], error.errors
    assert "resources.gpu" in error.errors[0].msg
    asked = request(kind=kind, params=params, resources={"gpu": 1})
    assert validate_request(asked, kinds=KINDS).params["device"] == "cuda"


def test_defaults_are_filled_in() -> None:
    validated = validate_request(request(params={"steps": 2}), kinds=KINDS)
    assert validated.params == NoopParams(steps=2).model_dump(mode="json")
    assert validated.params["step_s"] == 0.0
    assert validated.params["fail"] is None


def test_datagen_defaults_are_json() -> None:
    validated = validate_request(request(kind="datagen"), kinds=KINDS)
    assert validated.params == DatagenParams().model_dump(mode="json")
    assert validated.params["classes"] == [
        "normal",
        "imbalance",
        "misalignment",
        "looseness",
        "bearing_outer",
        "bearing_inner",
    ]


def test_validation_keeps_the_rest_of_the_request() -> None:
    req = request(name="run-1", retries=2, labels={"team": "ml"}, completions=3, parallelism=3)
    validated = validate_request(req, kinds=KINDS)
    assert validated.model_dump(exclude={"params"}) == req.model_dump(exclude={"params"})


def test_parallelism_above_completions_is_rejected() -> None:
    error = invalid(request(parallelism=4, completions=2))
    assert [e.loc for e in error.errors] == [("parallelism",)]


def test_parallelism_equal_to_completions_is_accepted() -> None:
    assert validate_request(request(parallelism=4, completions=4), kinds=KINDS).parallelism == 4


# --- fingerprint ----------------------------------------------------------------------------


def test_fingerprint_is_stable_for_the_same_request() -> None:
    assert fingerprint(request(params={"steps": 2})) == fingerprint(request(params={"steps": 2}))


def test_fingerprint_of_validated_requests_ignores_spelled_out_defaults() -> None:
    short = validate_request(request(), kinds=KINDS)
    spelled = validate_request(request(params={"steps": 0, "fail": None}, retries=0), kinds=KINDS)
    assert fingerprint(short) == fingerprint(spelled)


@pytest.mark.parametrize(
    "change",
    [
        {"params": {"steps": 3}},
        {"retries": 1},
        {"name": "other"},
        {"labels": {"team": "ml"}},
        {"timeout_s": 60},
        {"resources": {"cpu": "1"}},
        {"kind": "datagen"},
    ],
)
def test_fingerprint_changes_with_the_request(change: dict[str, object]) -> None:
    assert fingerprint(request()) != fingerprint(request(**change))


def test_fingerprint_ignores_the_order_of_label_keys() -> None:
    a = request(labels={"team": "ml", "env": "dev"})
    b = request(labels={"env": "dev", "team": "ml"})
    assert a == b
    assert fingerprint(a) == fingerprint(b)


# --- kind_infos -----------------------------------------------------------------------------


def test_kind_infos_lists_every_registered_kind_with_its_schema() -> None:
    infos = kind_infos(KINDS)
    assert [i.kind for i in infos] == sorted(KINDS)
    for info in infos:
        spec = KINDS[info.kind]
        assert info.description == spec.description
        assert info.image == spec.image
        assert info.params_schema["type"] == "object"
        properties = info.params_schema["properties"]
        assert isinstance(properties, dict)
        assert set(properties) == set(spec.params.model_fields)


# --- workers for kinds that cannot share their work -------------------------------------------


@pytest.mark.parametrize("kind", sorted(k for k, spec in KINDS.items() if not spec.splits))
def test_a_kind_that_cannot_split_refuses_completions_above_one(kind: str) -> None:
    error = invalid(request(kind=kind, completions=2))
    assert error.errors[0].loc == ("completions",)  # (its required params named after it)
    assert f"{kind} cannot share its work" in error.errors[0].msg


def test_every_field_found_wrong_is_named_in_one_answer() -> None:
    """A user fixing one error per answer needed three rounds."""
    wrong = request(
        kind="noop", params={"steps": -1}, priority="nope", parallelism=3, completions=2
    )
    with pytest.raises(InvalidRequest) as info:
        validate_request(wrong, kinds=KINDS, priorities={"low", "high"})
    error = info.value
    assert [e.loc for e in error.errors] == [("params", "steps"), ("priority",), ("parallelism",)]


def test_the_kinds_that_split_their_work_are_these() -> None:
    assert sorted(k for k, spec in KINDS.items() if spec.splits) == [
        "explain-batch",
        "hpo",
        "nas",
        "noop",
    ]


@pytest.mark.parametrize("kind", ["hpo", "nas", "noop"])
def test_kinds_that_split_their_work_take_workers(kind: str) -> None:
    validated = validate_request(request(kind=kind, parallelism=2, completions=2), kinds=KINDS)
    assert validated.completions == 2


def test_a_kind_that_cannot_split_runs_one_worker() -> None:
    assert validate_request(request(kind="datagen"), kinds=KINDS).completions == 1
