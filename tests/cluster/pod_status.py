"""What the kubelet knows of a pod it runs (one record per container) and the pod status it
reports from that: phase, conditions (PodReadyToStartContainers, Initialized, Ready,
ContainersReady; PodScheduled and DisruptionTarget kept as set by others), IPs, start time and
container statuses with their state (waiting/running/terminated) and lastState."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Obj = dict[str, Any]


@dataclass
class ContainerRun:
    spec: Obj
    init: bool
    restarts: int = 0
    proc: subprocess.Popen[bytes] | None = None
    state: Obj = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Obj = field(default_factory=dict)
    logs: list[Path] = field(default_factory=list)
    termination_file: Path | None = None
    container_id: str = ""
    retry_at: float = 0.0
    pulls_failed: int = 0

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def exit_code(self) -> int | None:
        terminated = self.state.get("terminated")
        return None if terminated is None else int(terminated["exitCode"])


@dataclass
class PodRun:
    namespace: str
    name: str
    folder: Path
    ip: str
    host_ip: str
    start_time: str
    containers: list[ContainerRun]
    volumes: dict[str, Path] | None = None
    kill_at: float | None = None
    mount_error: str = ""

    def running(self) -> list[ContainerRun]:
        return [c for c in self.containers if c.proc is not None]


def pod_phase(pod: Obj, run: PodRun, *, final: bool) -> str:
    """Pending until a container starts; Succeeded/Failed once every container is done for
    good (restartPolicy Never, OnFailure with all 0, or `final` on deletion); else Running."""
    restart = pod["spec"].get("restartPolicy", "Always")
    inits = [c for c in run.containers if c.init]
    mains = [c for c in run.containers if not c.init]
    codes = [c.exit_code() for c in mains]
    if restart == "Never" and any(c.exit_code() not in (None, 0) for c in inits):
        return "Failed"
    if all(code is not None for code in codes) and (restart == "Never" or final):
        return "Succeeded" if all(code == 0 for code in codes) else "Failed"
    if restart == "OnFailure" and codes and all(code == 0 for code in codes):
        return "Succeeded"
    started = any(c.proc is not None or c.container_id for c in mains)
    return "Running" if started else "Pending"


def container_status(c: ContainerRun) -> Obj:
    """A `containerStatuses` entry (ready means running: probes are not simulated)."""
    running = "running" in c.state
    entry: Obj = {
        "name": c.name,
        "image": c.spec.get("image", ""),
        "imageID": f"sim://{c.spec.get('image', '')}" if c.container_id else "",
        "ready": running,
        "started": running,
        "restartCount": c.restarts,
        "state": c.state,
        "lastState": c.last_state,
    }
    if c.container_id:
        entry["containerID"] = c.container_id
    return entry


def pod_status(pod: Obj, run: PodRun, now: str, *, final: bool = False) -> Obj:
    """The status the kubelet reports; conditions that did not change keep their times."""
    old = pod.get("status") or {}
    phase = pod_phase(pod, run, final=final)
    mains = [c for c in run.containers if not c.init]
    unready = [c.name for c in mains if "running" not in c.state]
    uninitialized = [c.name for c in run.containers if c.init and c.exit_code() != 0]
    done = phase in ("Succeeded", "Failed")
    ready = (
        ("False", "PodCompleted" if phase == "Succeeded" else "PodFailed", "")
        if done
        else (
            ("True", "", "")
            if not unready
            else (
                "False",
                "ContainersNotReady",
                f"containers with unready status: [{' '.join(unready)}]",
            )
        )
    )
    wanted = [
        ("PodReadyToStartContainers", "True" if run.volumes is not None else "False", "", ""),
        (
            "Initialized",
            "False" if uninitialized else "True",
            "ContainersNotInitialized" if uninitialized else "",
            f"containers with incomplete status: [{' '.join(uninitialized)}]"
            if uninitialized
            else "",
        ),
        ("Ready", *ready),
        ("ContainersReady", *ready),
    ]
    previous = {c["type"]: c for c in old.get("conditions") or []}
    conditions = []
    for kind, value, reason, message in wanted:
        before = previous.pop(kind, None)
        if before and before.get("status") == value and before.get("reason", "") == reason:
            conditions.append(before)
            continue
        entry = {"type": kind, "status": value, "lastTransitionTime": now}
        if reason:
            entry["reason"] = reason
        if message:
            entry["message"] = message
        conditions.append(entry)
    conditions += previous.values()  # PodScheduled, DisruptionTarget: kept as they are
    status: Obj = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": run.host_ip,
        "hostIPs": [{"ip": run.host_ip}],
        "podIP": run.ip,
        "podIPs": [{"ip": run.ip}],
        "startTime": run.start_time,
        "containerStatuses": [container_status(c) for c in mains],
    }
    if old.get("qosClass"):
        status["qosClass"] = old["qosClass"]
    inits = [container_status(c) for c in run.containers if c.init]
    if inits:
        status["initContainerStatuses"] = inits
    return status
