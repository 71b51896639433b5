"""`upload:<path>` params: resolved at submit to the tenant's own `uploads/<tenant>/<path>`,
checked to exist in the artifact store (a file, a folder with files, a glob's folder), and
refused on the field otherwise; the syntax rule applies to the path after `upload:`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import JsonValue

from kubetask.controller.chaining import resolve_references
from kubetask.controller.errors import InvalidRequest
from kubetask.controller.records import JobRecord
from kubetask.controller.uploads import has_files, literal_folder, upload_check
from kubetask.jobs.params import Params, TrainParams
from kubetask.jobs.params.catalog import EvaluateParams, MatImportParams
from kubetask.storage import FileStore

TENANT = "team-a"
TRAIN_ID = "0abcdefgh1234567"


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    store = FileStore(tmp_path / "artifacts")
    store.write(f"uploads/{TENANT}/data/dataset.npz", [b"npz"])
    store.write(f"uploads/{TENANT}/cwru/normal/a.mat", [b"mat"])
    store.write("uploads/team-b/theirs.npz", [b"npz"])
    return store


async def _no_jobs(job_id: str) -> JobRecord | None:
    return None


def resolve(
    store: FileStore | None, model: type[Params], params: dict[str, JsonValue]
) -> dict[str, JsonValue]:
    check = upload_check(store) if store is not None else None
    return asyncio.run(
        resolve_references(model, params, tenant=TENANT, lookup=_no_jobs, uploads=check)
    )


def refused(store: FileStore, model: type[Params], params: dict[str, JsonValue]) -> dict[str, str]:
    with pytest.raises(InvalidRequest) as caught:
        resolve(store, model, params)
    return {".".join(map(str, e.loc)): e.type for e in caught.value.errors}


def test_an_upload_ref_becomes_the_tenants_upload_path(store: FileStore) -> None:
    resolved = resolve(store, TrainParams, {"dataset": "upload:data/dataset.npz"})
    assert resolved["dataset"] == f"uploads/{TENANT}/data/dataset.npz"


def test_an_upload_ref_takes_a_folder_or_a_glob_with_files_below(store: FileStore) -> None:
    for files in ("upload:cwru", "upload:cwru/**/*.mat", "upload:cwru/normal/a.mat"):
        resolved = resolve(store, MatImportParams, {"files": files})
        assert resolved["files"] == f"uploads/{TENANT}/{files.removeprefix('upload:')}"


def test_a_missing_upload_is_refused_on_its_field(store: FileStore) -> None:
    assert refused(store, TrainParams, {"dataset": "upload:data/missing.npz"}) == {
        "params.dataset": "upload_not_found"
    }
    assert refused(store, MatImportParams, {"files": "upload:nothing/**/*.mat"}) == {
        "params.files": "upload_not_found"
    }


def test_another_tenants_upload_is_not_reachable_by_an_upload_ref(store: FileStore) -> None:
    # upload:<path> is always the caller's own area: team-b's file is not found for team-a
    assert refused(store, TrainParams, {"dataset": "upload:theirs.npz"}) == {
        "params.dataset": "upload_not_found"
    }


@pytest.mark.parametrize("value", ["upload:../team-b/theirs.npz", "upload:/etc/passwd", "upload:"])
def test_an_upload_ref_outside_the_uploads_is_refused(store: FileStore, value: str) -> None:
    assert refused(store, EvaluateParams, {"model": value}) == {"params.model": "artifact_path"}


def test_without_a_store_the_upload_ref_is_resolved_unchecked() -> None:
    resolved = resolve(None, TrainParams, {"dataset": "upload:data/later.npz"})
    assert resolved["dataset"] == f"uploads/{TENANT}/data/later.npz"


def test_has_files_and_the_literal_folder_of_a_glob(store: FileStore) -> None:
    assert literal_folder("uploads/t/cwru/**/*.mat") == "uploads/t/cwru"
    assert has_files(store, f"uploads/{TENANT}/data/dataset.npz")
    assert has_files(store, f"uploads/{TENANT}/cwru")
    assert has_files(store, f"uploads/{TENANT}/cwru/*/a.mat", glob=True)
    assert not has_files(store, f"uploads/{TENANT}/data/dataset.np")
    assert not has_files(store, f"uploads/{TENANT}/data*", glob=False)
