"""Why the embedded Redis exited, from its own log, for the line that says it is gone."""

from __future__ import annotations

from pathlib import Path

from kubetask.controller.redis_server import last_warning

LOG = """\
7:M 07 Dec 2026 05:28:08.100 * Ready to accept connections tcp
7:M 07 Dec 2026 05:28:09.200 # Error writing to the AOF file: No space left on device
7:M 07 Dec 2026 05:28:09.201 # Can't recover from AOF write error when the AOF fsync policy is 'always'. Exiting...
"""  # noqa: E501


def test_the_last_warning_says_why_it_exited(tmp_path: Path) -> None:
    log = tmp_path / "redis.log"
    log.write_text(LOG)
    assert last_warning(log) == (
        "Can't recover from AOF write error when the AOF fsync policy is 'always'. Exiting..."
    )


def test_a_farewell_or_no_warning_or_no_log_is_nothing_to_say(tmp_path: Path) -> None:
    log = tmp_path / "redis.log"
    log.write_text(
        "7:M 07 Dec 2026 05:28:08.100 * Ready to accept connections tcp\n"
        "7:M 07 Dec 2026 05:29:12.575 # Valkey is now ready to exit, bye bye...\n"
    )
    assert last_warning(log) is None
    assert last_warning(tmp_path / "none.log") is None
