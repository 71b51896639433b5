"""The README's "kubetask on real Kubernetes, on this machine", run as written: `make
cluster-up`, `eval "$(scripts/cluster.sh env)"; make run`, a job over REST, `kubectl get
jobs,pods -n kubetask`, `make cluster-down` — with the cluster's state and `make run`'s data
in the test's own folders (KUBETASK_CLUSTER_DIR, KUBETASK_DATA_DIR), so a developer's own
cluster is left alone."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx

from kubetask.controller.redis_server import free_port
from tests.cluster.control_plane import ControlPlane

ROOT = Path(__file__).resolve().parents[2]


def sh(script: str, env: dict[str, str], timeout_s: float = 120) -> str:
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_make_run_on_the_real_control_plane_as_the_readme_says(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KUBETASK_", "KUBECONFIG"))},
        "KUBETASK_CLUSTER_DIR": str(tmp_path / "cluster"),
        "KUBETASK_DATA_DIR": str(tmp_path / "data"),
    }
    port = free_port()
    sh("make cluster-up", env, timeout_s=300)
    with (tmp_path / "run.log").open("wb") as log:
        server = subprocess.Popen(
            ["bash", "-c", f'eval "$(scripts/cluster.sh env)"; exec make run PORT={port}'],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, (tmp_path / "run.log").read_text()[-3000:]
                time.sleep(0.2)
            answer = client.post("/v1/jobs", json={"kind": "noop", "params": {"steps": 2}})
            assert answer.status_code == 201, answer.text
            job_id = answer.json()["id"]
            deadline = time.monotonic() + 90
            while (job := client.get(f"/v1/jobs/{job_id}").json())["state"] != "succeeded":
                assert job["state"] not in ("failed", "cancelled"), job
                assert time.monotonic() < deadline, job
                time.sleep(0.2)
        assert job["backend"] == {
            "backend": "kubernetes",
            "name": f"kt-{job_id}",
            "namespace": "kubetask",
        }
        listed = sh(
            'eval "$(scripts/cluster.sh env)"; .venv/bin/kubectl get jobs,pods -n kubetask', env
        )
        assert f"job.batch/kt-{job_id}" in listed
        assert "Complete" in listed
    finally:
        os.killpg(server.pid, 15)
        server.wait(30)
        sh("make cluster-down", env)
    assert not (tmp_path / "cluster" / "pids.json").exists()
