"""What a newcomer sees on a first `make run`: the install step says what it installs before
the minutes it takes, and the server says where the API and the dashboard are once ready."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.servers import ApiServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_the_install_step_says_what_it_installs_before_pip_runs(tmp_path: Path) -> None:
    planned = subprocess.run(
        ["make", "-n", "install", f"VENV={tmp_path / 'venv'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    said = next(i for i, line in enumerate(planned) if line.startswith("echo "))
    pip = next(i for i, line in enumerate(planned) if "pip install" in line)
    assert said < pip
    assert "installing kubetask and its ML dependencies (PyTorch" in planned[said]
    assert "a few minutes the first time" in planned[said]


def test_the_server_says_where_the_api_and_dashboard_are_once_ready(api: ApiServer) -> None:
    base = f"http://127.0.0.1:{api.port}"
    wanted = f"kubetask is ready: API {base}/v1, dashboard {base}/"
    log = api.data_dir / "api.log"
    deadline = time.monotonic() + 5
    while wanted not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert wanted in log.read_text()
