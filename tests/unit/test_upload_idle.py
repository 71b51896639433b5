"""An upload whose body stops coming is cut off (408) rather than hold its thread for good."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from starlette.exceptions import HTTPException

from kubetask.api.routers import artifacts
from kubetask.storage import FileStore


async def stalls() -> AsyncIterator[bytes]:
    yield b"first bytes"
    await asyncio.sleep(3600)
    yield b"never"


def test_a_body_that_stops_coming_is_cut_off_and_nothing_is_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(artifacts, "UPLOAD_IDLE_S", 0.2)
    store = FileStore(tmp_path)
    with pytest.raises(HTTPException) as cut:
        asyncio.run(artifacts.write(store, "uploads/t/slow.bin", stalls(), limit=1 << 20))
    assert cut.value.status_code == 408
    assert list(store.list()) == []
