"""Why the embedded Redis exited, for the line that says it is gone: its own last warning
once it was serving, else a full disk under its files."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetask.controller import redis_server
from kubetask.controller.redis_server import last_warning, why_gone

EARLIER = """\
6:M 07 Dec 2026 05:27:00.000 # WARNING Memory overcommit must be enabled!
6:M 07 Dec 2026 05:27:00.100 * Ready to accept connections tcp
6:M 07 Dec 2026 05:27:43.270 # Valkey is now ready to exit, bye bye...
7:M 07 Dec 2026 05:28:08.000 # WARNING Memory overcommit must be enabled!
7:M 07 Dec 2026 05:28:08.100 * Ready to accept connections tcp
"""
DIED = """\
7:M 07 Dec 2026 05:28:09.200 # Error writing to the AOF file: No space left on device
7:M 07 Dec 2026 05:28:09.201 # Can't recover from AOF write error when the AOF fsync policy is 'always'. Exiting...
"""  # noqa: E501


def test_the_last_warning_once_serving_says_why_it_exited(tmp_path: Path) -> None:
    log = tmp_path / "redis.log"
    log.write_text(EARLIER + DIED)
    assert last_warning(log) == (
        "Can't recover from AOF write error when the AOF fsync policy is 'always'. Exiting..."
    )


def test_start_up_warnings_a_farewell_or_no_log_say_nothing(tmp_path: Path) -> None:
    """A full disk may have kept its last words out of the log: a start-up warning of its
    own, or an earlier process's, is not why it went."""
    log = tmp_path / "redis.log"
    log.write_text(EARLIER)
    assert last_warning(log) is None
    assert last_warning(tmp_path / "none.log") is None


def test_a_full_disk_is_said_when_the_log_says_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "redis.log").write_text(EARLIER)
    assert why_gone(tmp_path) is None  # plenty of room here
    monkeypatch.setattr(redis_server, "FULL_DISK_BYTES", 1 << 62)  # as if it were full
    assert why_gone(tmp_path) == f"the disk under {tmp_path} is full"
    (tmp_path / "redis.log").write_text(EARLIER + DIED)
    assert (why_gone(tmp_path) or "").startswith("its log: Can't recover from AOF write error")
