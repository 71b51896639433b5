"""How a failed download reads in staging (jobs/staging.py): once, naming the file and the
store, whether or not the store's own reason names them too."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetask.jobs.staging import Staging, StagingFailed
from kubetask.storage import ByteRange, FileStore, Reader, StoreError

KEY = "0000000000abcdef/in.bin"


class BrokenStore(FileStore):
    """A store whose reads fail with `error` (as each store's own reason would read)."""

    def __init__(self, root: Path, error: Exception) -> None:
        super().__init__(root)
        self.error = error

    def open(self, path: str, *, byte_range: ByteRange | None = None) -> Reader:
        raise self.error


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ("disk gone", ": disk gone"),  # a reason that names nothing: as it is
        (  # one that names the file and the store: not twice
            f"reading {KEY!r} in {{store!r}} failed after 5 of 9 bytes: the store sent nothing",
            " after 5 of 9 bytes: the store sent nothing",
        ),
    ],
    ids=["as-it-is", "named-once"],
)
def test_a_failed_download_names_the_file_and_the_store_once(
    tmp_path: Path, said: str, expected: str
) -> None:
    store = BrokenStore(tmp_path / "store", StoreError())
    store.error = StoreError(said.format(store=store))
    with pytest.raises(StagingFailed) as caught:
        Staging(store, tmp_path / "scratch", "0000000000abcdef").download(KEY)
    assert str(caught.value) == f"downloading {KEY!r} from {store!r} failed{expected}"
    assert caught.value.path == KEY
