"""Staging through an object store (jobs/staging.py, and the runtime around it), with a
`FileStore` standing in for the bucket: inputs in at the same relative paths, the job's own
prefix first, outputs out when new or changed, failures naming the file, the scratch folder
gone afterwards. (The same on the real MinIO: tests/integration/test_staging_s3.py.)"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path

import pytest
from pydantic import JsonValue

from kubetask import env
from kubetask.jobs.context import TaskContext
from kubetask.jobs.runtime import TaskEnv, run_task
from kubetask.jobs.staging import Staging, StagingFailed, glob_matches, remote_store
from kubetask.kinds import KindSpec, load_kinds
from kubetask.models import Outcome
from kubetask.params import Params
from kubetask.params.refs import PathValue, artifact_path
from kubetask.storage import Entry, FileStore, InvalidStoreUrl, UploadFailed
from kubetask.storage.base import Source

JOB = "0000000000abcdef"


class ConcatParams(Params):
    source: str = artifact_path(description="a file or a folder")
    pattern: str | None = artifact_path(description="a glob", default=None, glob=True)


def concat(params: ConcatParams, context: TaskContext) -> dict[str, JsonValue]:
    """A kind that reads its inputs as files and writes one output (and a half-written one)."""
    source = context.resolve(params.source)
    files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
    if params.pattern:
        files += sorted(context.artifacts_root.glob(params.pattern))
    out = context.artifact("out.txt")
    out.write_text("".join(p.read_text() for p in files))
    (context.output_dir / "half.txt.partial").write_text("never uploaded")
    return {"output": context.relative(out)}


CONCAT = KindSpec(
    name="concat",
    description="",
    params=ConcatParams,
    runner="tests.unit.test_staging:concat",
    image="trainer",
    outputs=("output",),
)
KINDS = {**load_kinds(), "concat": CONCAT}


class FailingStore(FileStore):
    """A store that refuses every write, as a bucket removed mid-way would."""

    def write(self, path: str, source: Source) -> Entry:
        raise UploadFailed(path, "NoSuchBucket: The specified bucket does not exist")


@pytest.fixture
def remote(tmp_path: Path) -> FileStore:
    store = FileStore(tmp_path / "bucket")
    store.write("uploads/acme/a.txt", [b"A"])
    store.write("uploads/acme/folder/b.txt", [b"B"])
    store.write("uploads/acme/folder/deep/c.txt", [b"C"])
    store.write("other/x1.csv", [b"1"])
    store.write("other/sub/x2.csv", [b"2"])
    store.write("other/y.txt", [b"y"])
    return store


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the runtime makes its scratch folders (checked empty afterwards)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def files_under(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in root.rglob("*") if p.is_file()}


def value(path: str, *, glob: bool = False) -> PathValue:
    return PathValue(("f",), path, None, glob)


# --- matching globs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern", ["other/*.csv", "other/**/*.csv", "**/*.txt", "other/s?b/*", "*/[xy]*"]
)
def test_a_glob_matches_what_path_glob_matches(tmp_path: Path, pattern: str) -> None:
    root = tmp_path / "tree"
    for name in ("other/x1.csv", "other/sub/x2.csv", "other/y.txt", "uploads/a.txt"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    expected = {p.relative_to(root).as_posix() for p in root.glob(pattern) if p.is_file()}
    found = {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and glob_matches(tuple(pattern.split("/")), p.relative_to(root).parts)
    }
    assert found == expected


# --- staging in and out ---------------------------------------------------------------------


def test_inputs_come_in_at_their_paths_the_jobs_own_prefix_first(
    remote: FileStore, tmp_path: Path
) -> None:
    remote.write(f"{JOB}/checkpoint.pt", [b"epoch 3"])
    staging = Staging(remote, tmp_path / "scratch", JOB)
    inputs = [
        value("uploads/acme/a.txt"),
        value("uploads/acme/folder"),  # a folder: all below it
        value("other/**/*.csv", glob=True),
        value("uploads/acme/absent.txt"),  # nothing there: the kind will say so
        value("../escape"),  # refused by the runtime's own check, naming the field
    ]
    keys = staging.stage_in(inputs)
    assert keys[0] == f"{JOB}/checkpoint.pt"
    assert files_under(tmp_path / "scratch") == {
        f"{JOB}/checkpoint.pt": "epoch 3",
        "uploads/acme/a.txt": "A",
        "uploads/acme/folder/b.txt": "B",
        "uploads/acme/folder/deep/c.txt": "C",
        "other/x1.csv": "1",
        "other/sub/x2.csv": "2",
    }


def test_only_new_or_changed_outputs_go_out_and_never_partial_ones(
    remote: FileStore, tmp_path: Path
) -> None:
    remote.write(f"{JOB}/kept.txt", [b"as it was"])
    remote.write(f"{JOB}/changed.txt", [b"old"])
    root = tmp_path / "scratch"
    staging = Staging(remote, root, JOB)
    staging.stage_in([value("uploads/acme/a.txt")])
    (root / JOB / "changed.txt").write_text("new!")
    (root / JOB / "plots").mkdir()
    (root / JOB / "plots" / "loss.png").write_text("png")
    (root / JOB / "model.pt.partial").write_text("half")
    (tmp_path / "secret").write_text("outside the job")
    (root / JOB / "link").symlink_to(tmp_path / "secret")  # never followed out
    (root / "uploads" / "acme" / "a.txt").write_text("not this job's: never uploaded")
    assert staging.stage_out() == [f"{JOB}/changed.txt", f"{JOB}/plots/loss.png"]
    assert files_under(remote.root / JOB) == {
        "kept.txt": "as it was",
        "changed.txt": "new!",
        "plots/loss.png": "png",
    }


def test_a_failed_upload_names_the_file_the_store_and_its_reason(tmp_path: Path) -> None:
    root = tmp_path / "scratch"
    (root / JOB).mkdir(parents=True)
    (root / JOB / "model.pt").write_text("weights")
    store = FailingStore(tmp_path / "bucket")
    with pytest.raises(StagingFailed) as failed:
        Staging(store, root, JOB).stage_out()
    assert str(failed.value) == (
        f"uploading '{JOB}/model.pt' to {store!r} failed: "
        "NoSuchBucket: The specified bucket does not exist"
    )


def test_the_store_is_staged_through_only_when_it_is_object_storage(tmp_path: Path) -> None:
    assert remote_store({}) is None
    assert remote_store({env.ARTIFACTS_URL: str(tmp_path)}) is None
    assert remote_store({env.ARTIFACTS_URL: f"file://{tmp_path}"}) is None
    keys = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    store = remote_store({env.ARTIFACTS_URL: "s3://bucket/prefix", **keys})
    assert repr(store) == "S3Store('s3://bucket/prefix')"
    with pytest.raises(InvalidStoreUrl, match="AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        remote_store({env.ARTIFACTS_URL: "s3://bucket/prefix"})


# --- the runtime around it ------------------------------------------------------------------


def run_outcome(
    tmp_path: Path, store: FileStore, kind: str, params: Mapping[str, object]
) -> tuple[int, Outcome]:
    environ = {
        env.JOB_ID: JOB,
        env.ARTIFACTS: str(tmp_path / "local-artifacts"),
        env.PARAMS: json.dumps(params),
    }
    return run_task(kind, TaskEnv.from_environ(environ, kind), None, KINDS, store=store)


def run(
    tmp_path: Path, store: FileStore, kind: str, params: Mapping[str, object]
) -> tuple[int, str | None, dict[str, JsonValue] | None]:
    code, outcome = run_outcome(tmp_path, store, kind, params)
    return code, outcome.error.message if outcome.error else None, outcome.result


def test_a_task_reads_and_writes_through_the_store_leaving_no_scratch(
    remote: FileStore, tmp_path: Path, scratch: Path
) -> None:
    params = {"source": "uploads/acme/folder", "pattern": "other/*.csv"}
    code, error, result = run(tmp_path, remote, "concat", params)
    assert (code, error, result) == (0, None, {"output": f"{JOB}/out.txt"})
    assert files_under(remote.root / JOB) == {"out.txt": "BC1"}
    assert list(scratch.iterdir()) == []
    assert not (tmp_path / "local-artifacts").exists()  # the folder is not used


def test_a_failed_task_keeps_its_outputs_and_a_retry_resumes_from_them(
    remote: FileStore, tmp_path: Path, scratch: Path
) -> None:
    params = {"fail": "exception", "fail_attempts": 1}
    first = run(tmp_path, remote, "noop", params)
    assert (first[0], first[1]) == (1, "failure requested by params")
    assert files_under(remote.root / JOB) == {"attempts-0": "1"}
    code, _, result = run(tmp_path, remote, "noop", params)
    assert (code, result and result["attempt"]) == (0, 2)  # counted from the first's marker
    assert files_under(remote.root / JOB) == {"attempts-0": "2"}
    assert list(scratch.iterdir()) == []


def test_a_failed_upload_fails_a_task_that_succeeded_naming_the_file(
    tmp_path: Path, scratch: Path
) -> None:
    store = FailingStore(tmp_path / "bucket")
    code, outcome = run_outcome(tmp_path, store, "noop", {})
    assert code == env.EXIT_FAILED
    assert outcome.error is not None
    assert (outcome.error.type, outcome.error.message) == (
        "StagingFailed",
        f"uploading '{JOB}/attempts-0' to {store!r} failed: "
        "NoSuchBucket: The specified bucket does not exist",
    )
    assert outcome.error.suggestion is not None
    assert env.ARTIFACTS_URL in outcome.error.suggestion
    assert list(scratch.iterdir()) == []


def test_a_task_that_failed_reports_its_own_failure_when_the_upload_fails_too(
    tmp_path: Path, scratch: Path
) -> None:
    store = FailingStore(tmp_path / "bucket")
    code, error, _ = run(tmp_path, store, "noop", {"fail": "exception"})
    assert (code, error) == (env.EXIT_FAILED, "failure requested by params")


def test_without_a_store_the_artifacts_folder_is_used_as_it_is(
    remote: FileStore, tmp_path: Path, scratch: Path
) -> None:
    folder = tmp_path / "local-artifacts"
    remote.write("uploads/acme/folder/b.txt", [b"B"])
    for name, content in files_under(remote.root).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(content)
    environ = {
        env.JOB_ID: JOB,
        env.ARTIFACTS: str(folder),
        env.PARAMS: json.dumps({"source": "uploads/acme/a.txt"}),
    }
    code, _ = run_task("concat", TaskEnv.from_environ(environ, "concat"), None, KINDS)
    assert code == 0
    assert (folder / JOB / "out.txt").read_text() == "A"
    assert list(scratch.iterdir()) == []  # no scratch folder was made
