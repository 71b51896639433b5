"""A setting the server cannot use stops it at once: exit 2 and one line, no traceback. One
that does not parse is named by its environment variable, never with its value (which may
be a secret); a store URL it cannot use is shown (credentials never go in that URL)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def start(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBETASK_", "AWS_"))}
    env.update({"KUBETASK_DATA_DIR": str(tmp_path), **settings})
    return subprocess.run(
        [sys.executable, "-m", "kubetask.api"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"KUBETASK_SLOTS": "abc-secret"}, ["KUBETASK_SLOTS: Input should be a valid integer"]),
        (
            {"KUBETASK_SLOTS": "0", "KUBETASK_MAX_BODY_BYTES": "-5"},
            ["KUBETASK_SLOTS: Input should be greater", "KUBETASK_MAX_BODY_BYTES: Input should"],
        ),
        ({"KUBETASK_WEBHOOKS": "abc-secret"}, ["KUBETASK_WEBHOOKS: not valid JSON"]),
    ],
)
def test_a_bad_setting_stops_the_server_with_one_line_naming_it(
    tmp_path: Path, settings: dict[str, str], named: list[str]
) -> None:
    done = start(tmp_path, **settings)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("kubetask-server: ")
    for words in named:
        assert words in lines[0]
    assert "abc-secret" not in done.stderr


def test_a_bad_store_url_stops_the_server_naming_the_setting(tmp_path: Path) -> None:
    done = start(tmp_path, KUBETASK_ARTIFACTS_URL="ftp://host/x")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "KUBETASK_ARTIFACTS_URL='ftp://host/x'" in lines[0]
