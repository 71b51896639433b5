"""The README's own examples, run as a user types them: the quickstart's shell block, the SDK
block and the Artifacts section's curl block, each against a server started with the
embedded default (its own Redis, its data in `.kubetask/` of the folder the commands run
in). The only change made to the text is the address: `localhost:8000` becomes the test
server's port (`$API` is set to it where the README leaves it to the reader)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from tests.servers import ApiServer

README = Path(__file__).parents[2] / "README.md"


def block(after: str, language: str) -> str:
    """The first fenced `language` block of the README after the text `after`."""
    section = README.read_text().split(after, 1)[1]
    return section.split(f"```{language}\n", 1)[1].split("```", 1)[0]


def run_bash(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`script` run by bash as one block, failing at its first failing command."""
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("user")


@pytest.fixture(scope="module")
def default_api(workdir: Path) -> Iterator[ApiServer]:
    """`make run`'s server: the embedded Redis, the data in `./.kubetask`."""
    server = ApiServer(redis_url=None, data_dir=workdir / ".kubetask")
    server.start(timeout_s=60)
    yield server
    server.close()


def test_the_quickstart_runs_as_written(default_api: ApiServer, workdir: Path) -> None:
    script = block("Submit a job and follow it live", "sh")
    script = script.replace("localhost:8000", f"localhost:{default_api.port}")
    script = script.replace("\ncurl -N ", "\necho '<stream>'; curl -N ")
    script = script.replace("\ncurl -s ", "\necho '<view>'; curl -s ")
    script = script.replace("\nls ", "\necho '<files>'; ls ")
    out = run_bash(script, workdir).stdout
    stream, rest = out.split("<stream>\n", 1)[1].split("<view>\n", 1)
    view, files = rest.split("<files>\n", 1)

    events = [json.loads(line[6:]) for line in stream.splitlines() if line.startswith("data: ")]
    states = [e["state"] for e in events if e["type"] == "state"]
    assert states[:3] == ["queued", "pending", "running"], states
    assert states[-1] == "succeeded", states
    assert any(e["type"] == "progress" for e in events)
    job = json.loads(view)
    assert (job["state"], job["attempts"]) == ("succeeded", 1)
    assert job["result"]["dataset"] == f"{job['id']}/dataset.npz"
    assert files.split() == ["dataset.npz", "logs"]  # what the comment says


def test_the_sdk_block_runs_as_written(
    default_api: ApiServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`Client()` reads `KUBETASK_URL`, the README's `Client("http://host:8000")` form."""
    monkeypatch.setenv("KUBETASK_URL", default_api.base_url)
    snippet = block("## CLI and SDK", "python")
    scope: dict[str, object] = {}
    exec(compile(snippet, "README.md", "exec"), scope)  # the README's own code
    scope["client"].close()  # type: ignore[attr-defined]
    printed = capsys.readouterr().out.splitlines()
    assert any(line.endswith(" state") for line in printed)
    assert any(line.startswith("succeeded ") for line in printed)  # job.state, progress, result
    failure = next(line for line in printed if line.startswith("job "))
    assert " failed: RuntimeError: " in failure, failure
    listed = [line.split() for line in printed if line.endswith(" noop")]
    assert listed, "client.list printed no succeeded noop job"


def test_the_artifacts_curl_block_runs_as_written(default_api: ApiServer, workdir: Path) -> None:
    """A v5 `.mat` with one recording and no sample rate in it, as the README's comment says."""
    folder = workdir / "mat"
    folder.mkdir()
    signal = np.sin(np.linspace(0, 200, 4096))[None, :]
    scipy.io.savemat(folder / "recording.mat", {"x": signal})
    script = block("### Artifacts", "bash")
    script = script.replace("\ncurl $API", "\necho '<listing>'; curl $API") + "\necho; echo $id\n"
    out = run_bash(script, folder, API=default_api.base_url).stdout
    uploaded, rest = out.split("<listing>\n", 1)
    assert json.loads(uploaded)["path"] == "uploads/default/lab/recording.mat"
    listing, job_id = rest.strip().rsplit("\n", 1)
    paths = [item["path"] for item in json.loads(listing)["items"]]
    assert "dataset.npz" in paths, paths
    with np.load(folder / "dataset.npz") as data:
        assert data["X"].shape[0] >= 1
    assert default_api.job(job_id)["state"] == "succeeded"
