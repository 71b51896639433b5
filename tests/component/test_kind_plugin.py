"""A kind added from outside: one module and one entry point (a `<name>.dist-info` with its
`entry_points.txt`) on the server's PYTHONPATH, and a job of it runs to its result on the
real API server and the local backend, whose task processes inherit the PYTHONPATH."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import ApiServer, own_database

MODULE = '''
from __future__ import annotations

from pydantic import Field, JsonValue

from kubetask.jobs.context import TaskContext
from kubetask.kinds import KindSpec
from kubetask.params import Params
from kubetask.params.refs import output_ref


class EchoParams(Params):
    """Writes `text`, `times` over."""

    text: str = Field("hello", max_length=100)
    times: int = Field(1, ge=1, le=10)
    dataset: str | None = output_ref(
        output="dataset", kinds=("datagen",), default=None, description="Unused."
    )


def run(params: EchoParams, context: TaskContext) -> dict[str, JsonValue]:
    path = context.artifact("echo.txt")
    path.write_text(params.text * params.times)
    context.reporter.update(1, 1, stage="echo", message="written")
    return {"echo": context.relative(path), "chars": len(params.text) * params.times}


ECHO = KindSpec(
    name="echo",
    description="Writes its text to echo.txt.",
    params=EchoParams,
    runner="kubetask_echo_kind:run",
    image="{image}",
    outputs=("echo",),
)
'''


def install_plugin(root: Path, *, image: str = "trainer") -> Path:
    """The kind's module and its distribution's metadata, as pip would leave them."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "kubetask_echo_kind.py").write_text(MODULE.replace("{image}", image))
    dist = root / "kubetask_echo_kind-0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: kubetask-echo-kind\nVersion: 0\n")
    (dist / "entry_points.txt").write_text("[kubetask.kinds]\necho = kubetask_echo_kind:ECHO\n")
    return root


def with_pythonpath(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """The server (and so each task it starts) imports from `root` too."""
    paths = [str(root), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))


@pytest.fixture
def plugin_api(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ApiServer]:
    with_pythonpath(monkeypatch, install_plugin(tmp_path / "site"))
    server = ApiServer(redis_url=own_database(redis_url), data_dir=tmp_path / "api")
    server.start()
    yield server
    server.close()


def test_a_kind_added_by_one_module_and_one_entry_point_runs(plugin_api: ApiServer) -> None:
    kinds = {k["kind"]: k for k in plugin_api.client.get("/v1/kinds").json()}
    assert kinds["echo"]["description"] == "Writes its text to echo.txt."
    assert "datagen" in kinds  # the built-in kinds stay
    job_id = plugin_api.submit("echo", {"text": "ab", "times": 3})
    job = plugin_api.wait(job_id)
    assert job["state"] == "succeeded", job
    assert job["result"] == {"echo": f"{job_id}/echo.txt", "chars": 6}
    artifacts = plugin_api.data_dir / "artifacts"
    assert (artifacts / job_id / "echo.txt").read_text() == "ababab"


def test_a_kind_whose_image_role_has_no_image_stops_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_pythonpath(monkeypatch, install_plugin(tmp_path / "site", image="audio"))
    server = ApiServer(redis_url=None, data_dir=tmp_path / "api")
    done = subprocess.run(
        [sys.executable, "-m", "kubetask.api"],
        env=server.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "kind 'echo' runs on image role 'audio', which has no image" in done.stderr
