"""The folder store's sweep of partial uploads at start: what a killed server left half
written goes, with the folders it leaves empty (else in the way of a file of their name);
a write under way, and every finished file, stays."""

from __future__ import annotations

import os
import time
from pathlib import Path

from kubetask.storage import FileStore
from kubetask.storage.base import PARTIAL_SUFFIX


def test_stale_partial_uploads_go_with_their_empty_folders_and_nothing_else(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.write("uploads/t/kept/done.mat", [b"whole"])
    left = tmp_path / "uploads/t/slow" / f".0a1b{PARTIAL_SUFFIX}"
    beside = tmp_path / "uploads/t/kept" / f".0a1c{PARTIAL_SUFFIX}"
    writing = tmp_path / "uploads/t/now" / f".0a1d{PARTIAL_SUFFIX}"
    for path in (left, beside, writing):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    hour_ago = time.time() - 3700
    for path in (left, beside):
        os.utime(path, (hour_ago, hour_ago))

    assert store.remove_stale_partials("uploads", older_than_s=3600) == 2
    assert not (tmp_path / "uploads/t/slow").exists()  # a PUT of uploads/t/slow may go there
    assert [e.path for e in store.list("uploads")] == ["uploads/t/kept/done.mat"]
    assert writing.exists()
