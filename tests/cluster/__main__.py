"""`python -m tests.cluster up|env|down FOLDER`: the Python half of scripts/cluster.sh."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from tests.cluster.bootstrap import chart_priority_classes, create_objects, install
from tests.cluster.control_plane import ControlPlane, stop_recorded

NAMESPACE = "kubetask"


def main(action: str, folder: Path) -> None:
    data = Path(os.environ.get("KUBETASK_DATA_DIR", ".kubetask")).resolve()  # as `make run`
    if action == "up":
        stop_recorded(folder)
        plane = ControlPlane(folder, pod_failure_backoff=None).start()
        install(
            plane,
            namespace=NAMESPACE,
            folder=folder / "kubetask",
            artifacts=data / "artifacts",
        )
        create_objects(plane, chart_priority_classes())  # as the chart has them
        plane.processes.clear()  # they outlive this process; `down` stops them
        print(f"cluster up at {plane.server}; kubeconfig {plane.kubeconfig}", file=sys.stderr)
    elif action == "env":
        settings = {
            "KUBECONFIG": folder / "kubeconfig",
            "KUBETASK_BACKEND": "kubernetes",
            "KUBETASK_KUBECONFIG": folder / "kubetask" / "controller.kubeconfig",
            "KUBETASK_NAMESPACE": NAMESPACE,
        }
        for name, value in settings.items():
            print(f"export {name}={shlex.quote(str(value))}")
    elif action == "down":
        stop_recorded(folder)
    else:
        raise SystemExit(f"unknown action {action!r}: up, env or down")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]).resolve())
