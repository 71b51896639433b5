"""`kubetask-server render`: the exact Kubernetes objects for a request, offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml


def render(tmp_path: Path, request: dict[str, object]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    return subprocess.run(
        [sys.executable, "-m", "kubetask.api", "render", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "request_",
    [
        {"kind": "datagen"},
        {"kind": "noop", "params": {"payload": "x" * 50_000}, "completions": 3, "parallelism": 3},
        {"kind": "datagen", "resources": {"gpu": 1, "gpu_type": "H100"}, "queue": "team-a"},
    ],
)
def test_render_prints_objects_that_pass_strict_validation(
    tmp_path: Path, request_: dict[str, object]
) -> None:
    done = render(tmp_path, request_)
    assert done.returncode == 0, done.stderr
    objects = list(yaml.safe_load_all(done.stdout))
    assert objects[0]["kind"] == "Job"
    for obj in objects:
        for version in ("1.30.0", "1.37.0"):
            kubernetes_validate.validate(obj, version, strict=True)


def test_render_refuses_an_invalid_request_with_one_line(tmp_path: Path) -> None:
    done = render(tmp_path, {"kind": "datagen", "params": {"n_per_class": 0}})
    assert done.returncode != 0
    assert "params.n_per_class" in done.stderr
    assert "Traceback" not in done.stderr


def test_render_applies_the_servers_per_job_caps_as_a_submission_does(tmp_path: Path) -> None:
    """The exact Job a request becomes: with the deadline a job without `timeout_s` gets,
    and refused past the caps, as `POST /v1/jobs` would be."""
    done = render(tmp_path, {"kind": "datagen"})
    assert done.returncode == 0, done.stderr
    job = next(yaml.safe_load_all(done.stdout))
    assert job["spec"]["activeDeadlineSeconds"] == 7 * 24 * 3600
    over = render(
        tmp_path, {"kind": "datagen", "timeout_s": 9_000_000, "resources": {"cpu": "100"}}
    )
    assert over.returncode != 0
    assert "timeout_s" in over.stderr
    assert "resources.cpu" in over.stderr
