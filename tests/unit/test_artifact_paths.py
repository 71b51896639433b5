"""Artifact paths in params stay inside the artifact store and inside what the tenant may
read: the pure rule (relative, no '..', the area its first segments name), every kind's
file-naming fields refusing paths outside the store, and the task runtime's own check, which
resolves symlinks (issue 13, point 1)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from kubetask import env
from kubetask.jobs.context import inside_the_store
from kubetask.jobs.errors import InvalidParams
from kubetask.jobs.runtime import TaskEnv, run_task
from kubetask.kinds import load_kinds
from kubetask.models import Outcome
from kubetask.params.paths import OUTSIDE_THE_STORE, UNSAFE, OutsideTheStore, area, store_parts
from kubetask.params.refs import Loc, path_fields

KINDS = load_kinds()  # the installed kinds (entry points)

JOB = "0abcdefgh1234567"
OTHER_JOB = "0abcdefgh7654321"
A_MODEL = f"{JOB}/model.pt"


# -- the pure rule -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    ["/etc/passwd", "/nonexistent", "../x.npz", "../../x.npz", "a/../../x.npz", "a/..", "",
     ".", "./"],
)  # fmt: skip
def test_a_path_outside_the_store_is_refused_with_one_message(path: str) -> None:
    with pytest.raises(OutsideTheStore) as info:
        store_parts(path)
    assert str(info.value) == OUTSIDE_THE_STORE  # nothing in it depends on the path


@pytest.mark.parametrize("path", ["a\x00b", "a\tb", "a\nb", "a\x7fb", "a\x9bb", "a\\b"])
def test_a_path_no_store_can_hold_is_refused_saying_why(path: str) -> None:
    """A control character or a backslash: fine on Linux, refused by S3."""
    with pytest.raises(OutsideTheStore) as info:
        store_parts(path)
    assert str(info.value) == UNSAFE
    assert store_parts("ünïcode ok/€ 1.mat") == ("ünïcode ok", "€ 1.mat")


def test_the_first_segments_say_whose_a_path_is() -> None:
    assert area(store_parts(f"{JOB}/model.pt")) == (JOB,)
    assert area(store_parts(f"./{JOB}//sub/d.npz")) == (JOB,)
    assert area(store_parts("uploads/team-a/cwru/x.mat")) == ("uploads", "team-a")
    assert area(store_parts("uploads/team-a")) == ("uploads", "team-a")
    assert area(store_parts("uploads")) == ("uploads",)


# -- every kind's fields -------------------------------------------------------------------
PATH_FIELDS: dict[str, list[Loc]] = {
    "train": [("dataset",)],
    "hpo": [("train", "dataset")],
    "nas": [("train", "dataset")],
    "mat-import": [("files",)],
    "features": [("dataset",)],
    "gan-train": [("dataset",)],
    **{
        kind: [("model",), ("dataset",)]
        for kind in ("evaluate", "export", "test", "explain", "explain-batch", "gan-generate")
    },
}


def test_every_field_that_names_a_file_is_declared_as_one() -> None:
    found = {kind: path_fields(spec.params) for kind, spec in KINDS.items()}
    assert {kind: locs for kind, locs in found.items() if locs} == PATH_FIELDS


def params_with(kind: str, loc: Loc, value: str) -> dict[str, Any]:
    """Valid params of `kind` but for `value` at `loc`."""
    params: dict[str, Any] = {"model": A_MODEL} if ("model",) in PATH_FIELDS[kind] else {}
    inner = params
    for part in loc[:-1]:
        inner = inner.setdefault(str(part), {})
    inner[str(loc[-1])] = value
    return params


CASES = [(kind, loc) for kind, locs in PATH_FIELDS.items() for loc in locs]


@pytest.mark.parametrize(("kind", "loc"), CASES)
@pytest.mark.parametrize("path", ["/etc/passwd", "/nonexistent", "../../x.npz", "a/../../x"])
def test_every_path_field_of_every_kind_refuses_a_path_outside_the_store(
    kind: str, loc: Loc, path: str
) -> None:
    with pytest.raises(ValidationError) as info:
        KINDS[kind].params.model_validate(params_with(kind, loc, path))
    errors = {".".join(map(str, e["loc"])): e["msg"] for e in info.value.errors()}
    assert errors == {".".join(map(str, loc)): f"Value error, {OUTSIDE_THE_STORE}"}


@pytest.mark.parametrize(("kind", "loc"), CASES)
def test_a_path_inside_the_store_is_a_valid_value_of_every_path_field(kind: str, loc: Loc) -> None:
    KINDS[kind].params.model_validate(params_with(kind, loc, f"{OTHER_JOB}/x/y.npz"))


# -- the runtime's own check ---------------------------------------------------------------
@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "artifacts"
    (root / JOB).mkdir(parents=True)
    (root / OTHER_JOB).mkdir()
    (root / JOB / "model.pt").write_bytes(b"m")
    (root / OTHER_JOB / "secret.npz").write_bytes(b"s")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "data.npz").write_bytes(b"o")
    return root


def refusal(root: Path, path: str) -> str:
    with pytest.raises(InvalidParams) as info:
        inside_the_store(root, path)
    return str(info.value)


def test_the_runtime_resolves_a_path_inside_the_folder_it_names(store: Path) -> None:
    (store / JOB / "latest.pt").symlink_to(store / JOB / "model.pt")  # inside its folder
    assert inside_the_store(store, f"{JOB}/model.pt") == (store / JOB / "model.pt").resolve()
    assert inside_the_store(store, f"{JOB}/latest.pt") == (store / JOB / "model.pt").resolve()
    assert inside_the_store(store, f"{JOB}/not-yet.npz") == (store / JOB / "not-yet.npz").resolve()


def test_the_runtime_refuses_a_symlink_leading_out_of_the_store(store: Path) -> None:
    outside = store.parent / "outside"
    (store / JOB / "file.npz").symlink_to(outside / "data.npz")
    (store / JOB / "gone.npz").symlink_to(outside / "nonexistent.npz")
    (store / JOB / "passwd").symlink_to("/etc/passwd")
    (store / JOB / "dir").symlink_to(outside, target_is_directory=True)
    (store / JOB / "up").symlink_to("../..")
    messages = {
        path: refusal(store, path)
        for path in (f"{JOB}/file.npz", f"{JOB}/gone.npz", f"{JOB}/passwd", f"{JOB}/dir/data.npz",
                     f"{JOB}/up/outside/data.npz", "/etc/passwd", f"{JOB}/../../outside/data.npz")
    }  # fmt: skip
    for path, message in messages.items():  # one wording, whether or not the target exists
        assert message == messages[f"{JOB}/file.npz"].replace(f"{JOB}/file.npz", path)
        assert str(outside) not in message  # where a symlink leads is not told
        assert "/etc" not in message.replace(path, "")


def test_the_runtime_refuses_a_symlink_into_another_jobs_folder(store: Path) -> None:
    (store / JOB / "theirs.npz").symlink_to(store / OTHER_JOB / "secret.npz")
    (store / "uploads" / "team-a").mkdir(parents=True)
    (store / "uploads" / "team-a" / "x.npz").symlink_to(store / OTHER_JOB / "secret.npz")
    (store / "uploads" / "team-b").symlink_to(store / OTHER_JOB, target_is_directory=True)
    for path in (f"{JOB}/theirs.npz", "uploads/team-a/x.npz", "uploads/team-b/secret.npz"):
        assert "leads outside" in refusal(store, path)


def test_the_runtime_refuses_a_symlink_loop(store: Path) -> None:
    (store / JOB / "loop").symlink_to(store / JOB / "loop")
    assert "leads outside" in refusal(store, f"{JOB}/loop")


def write_dataset(path: Path) -> None:
    rng = np.random.default_rng(0)
    with path.open("wb") as file:
        np.savez(
            file,
            X=rng.normal(size=(4, 256)).astype(np.float32),
            y=np.array([0, 1, 0, 1]),
            classes=np.array(["normal", "imbalance"]),
            sample_rate=np.array(2000.0),
        )


def run(kind: str, params: dict[str, Any], root: Path) -> tuple[int, Outcome]:
    environ = {
        env.JOB_ID: "0abcdefghrunning",
        env.ARTIFACTS: str(root),
        env.PARAMS: json.dumps(params),
    }
    return run_task(kind, TaskEnv.from_environ(environ, kind), None)


def test_a_task_given_a_symlink_out_of_the_store_exits_2_before_reading_it(store: Path) -> None:
    write_dataset(store.parent / "outside" / "data.npz")
    (store / JOB / "dataset.npz").symlink_to(store.parent / "outside" / "data.npz")
    code, outcome = run("features", {"dataset": f"{JOB}/dataset.npz", "bands": 2}, store)
    assert code == env.EXIT_INVALID_PARAMS
    assert outcome.error is not None
    assert outcome.error.type == "InvalidParams"
    assert outcome.error.message.startswith("dataset: artifact path ")
    assert outcome.result is None
    assert not (store / "0abcdefghrunning" / "features.csv").exists()

    os.remove(store / JOB / "dataset.npz")  # the same file, really in the store: it works
    write_dataset(store / JOB / "dataset.npz")
    code, outcome = run("features", {"dataset": f"{JOB}/dataset.npz", "bands": 2}, store)
    assert code == env.EXIT_OK, outcome


@pytest.mark.parametrize("kind", ["train", "evaluate", "features", "mat-import"])
def test_a_task_refuses_an_absolute_path_the_same_whether_it_exists_or_not(
    store: Path, kind: str
) -> None:
    field = PATH_FIELDS[kind][0]
    answers = []
    for path in ("/etc/passwd", "/nonexistent/x.npz"):
        code, outcome = run(kind, params_with(kind, field, path), store)
        assert code == env.EXIT_INVALID_PARAMS
        assert outcome.error is not None
        answers.append((outcome.error.type, outcome.error.message.replace(path, "<path>")))
    assert answers[0] == answers[1]
    assert answers[0][0] == "InvalidParams"
    assert OUTSIDE_THE_STORE in answers[0][1]


def test_features_refuses_more_bands_than_the_spectrum_has_bins(store: Path) -> None:
    """Bands past the spectrum's bins would be columns of zeros, written as a success."""
    write_dataset(store / JOB / "dataset.npz")
    length = int(np.load(store / JOB / "dataset.npz")["X"].shape[1])
    bins = length // 2 + 1
    code, outcome = run("features", {"dataset": f"{JOB}/dataset.npz", "bands": bins + 1}, store)
    assert code == env.EXIT_INVALID_PARAMS
    assert outcome.error is not None
    assert outcome.error.message.startswith(f"bands: {bins + 1} bands of a spectrum of {bins} ")
    code, outcome = run("features", {"dataset": f"{JOB}/dataset.npz", "bands": bins}, store)
    assert code == env.EXIT_OK, outcome
