"""The kubelet half of the process node agent (node_agent.py): it runs each container of a
bound Pod as a local process (see containers.py), keeps stdout+stderr as the container log,
and reports the Pod's status as a kubelet does: Pending (ContainerCreating,
ErrImagePull/ImagePullBackOff, CreateContainerConfigError), Running (ready),
Succeeded/Failed with `state.terminated` {exitCode, reason Completed/Error, message (its
last 4 KiB), startedAt, finishedAt}. Init containers run in order; `restartPolicy:
OnFailure` restarts a failed container after a back-off (CrashLoopBackOff). A Pod being
deleted gets SIGTERM, then SIGKILL after its grace period, then its final status, and is
removed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.cluster.containers import (
    ConfigError,
    ConfigMaps,
    MountError,
    Secrets,
    build_launch,
    prepare_volumes,
)
from tests.cluster.pod_status import ContainerRun, PodRun, pod_status

Obj = dict[str, Any]
Event = tuple[str, str, str]  # type, reason, message
MESSAGE_LIMIT = 4096


@dataclass
class KubeletResult:
    status: Obj | None = None
    events: list[Event] = field(default_factory=list)
    remove: bool = False  # the pod is terminated: delete it with grace period 0
    requeue_s: float | None = None


def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


class Kubelet:
    """Runs the Pods bound to the agent's nodes. Thread-safe: `sync` runs in the
    node agent's sync thread, log reads in its log server's."""

    def __init__(
        self,
        *,
        workdir: Path,
        configmaps: ConfigMaps,
        claim_dir: Callable[[str, str], Path],
        node_ips: Mapping[str, str],
        base_env: Mapping[str, str],
        now: Callable[[], str],
        restart_backoff_s: float,
        image_retry_s: float,
        secrets: Secrets | None = None,
        has_image: Callable[[str], bool],
    ) -> None:
        self.workdir = workdir
        self.configmaps = configmaps
        self.secrets = secrets
        self.claim_dir = claim_dir
        self.node_ips = node_ips
        self.base_env = base_env
        self.has_image = has_image
        self.now = now
        self.restart_backoff_s = restart_backoff_s
        self.image_retry_s = image_retry_s
        self.runs: dict[str, PodRun] = {}
        self.lock = threading.RLock()
        self._ips = 0

    # -- lifecycle ---------------------------------------------------------------------------
    def _new_run(self, pod: Obj) -> PodRun:
        meta, spec = pod["metadata"], pod["spec"]
        self._ips += 1
        containers = [ContainerRun(c, True) for c in spec.get("initContainers") or []]
        containers += [ContainerRun(c, False) for c in spec["containers"]]
        folder = self.workdir / "pods" / meta["namespace"] / f"{meta['name']}-{meta['uid'][:8]}"
        folder.mkdir(parents=True, exist_ok=True)
        return PodRun(
            meta["namespace"],
            meta["name"],
            folder,
            f"10.244.0.{self._ips % 250 + 2}",
            self.node_ips.get(spec["nodeName"], ""),
            self.now(),
            containers,
        )

    def exited(self) -> list[tuple[str, str]]:
        """Pods with a container process that has ended since the last sync."""
        with self.lock:
            return [
                (run.namespace, run.name)
                for run in self.runs.values()
                if any(c.proc.poll() is not None for c in run.running() if c.proc)
            ]

    def forget(self, uid: str) -> None:
        """The pod is gone: kill whatever still runs for it."""
        with self.lock:
            run = self.runs.pop(uid, None)
        if run is not None:
            self._kill(run)

    def stop(self) -> None:
        with self.lock:
            runs, self.runs = list(self.runs.values()), {}
        for run in runs:
            self._kill(run)

    def _kill(self, run: PodRun) -> None:
        for container in run.running():
            assert container.proc is not None
            _signal(container.proc, signal.SIGKILL)
            container.proc.wait()
            container.proc = None

    # -- logs ----------------------------------------------------------------------------------
    def _container(self, pod: Obj, name: str) -> ContainerRun | None:
        run = self.runs.get(pod["metadata"]["uid"])
        return next((c for c in run.containers if c.name == name), None) if run else None

    def read_log(self, pod: Obj, container: str, *, previous: bool) -> str | None:
        with self.lock:
            found = self._container(pod, container)
            logs = list(found.logs) if found else []
        if len(logs) < (2 if previous else 1):
            return None
        path = logs[-2] if previous else logs[-1]
        return path.read_bytes().decode(errors="replace") if path.exists() else None

    # -- sync ------------------------------------------------------------------------------------
    def sync(self, pod: Obj, mono: float) -> KubeletResult:
        """Advance one pod bound to one of the agent's nodes; what to write back."""
        with self.lock:
            return self._sync(pod, mono)

    def _sync(self, pod: Obj, mono: float) -> KubeletResult:
        meta = pod["metadata"]
        result = KubeletResult()
        phase = pod.get("status", {}).get("phase")
        run = self.runs.get(meta["uid"])
        if run is None:
            if phase in ("Succeeded", "Failed"):
                result.remove = bool(meta.get("deletionTimestamp"))
                return result
            run = self.runs[meta["uid"]] = self._new_run(pod)
        self._reap(run)
        if meta.get("deletionTimestamp"):
            return self._terminate(pod, run, mono, result)
        if phase in ("Succeeded", "Failed"):
            return result
        if run.volumes is None:
            try:
                run.volumes = prepare_volumes(
                    pod, run.folder, configmaps=self.configmaps, claim_dir=self.claim_dir
                )
            except MountError as error:
                if str(error) != run.mount_error:
                    result.events.append(("Warning", "FailedMount", str(error)))
                run.mount_error = str(error)
                result.requeue_s = 0.5
                result.status = pod_status(pod, run, self.now())
                return result
        inits = [c for c in run.containers if c.init]
        pending_init = next((c for c in inits if c.exit_code() != 0), None)
        if pending_init is not None:  # init containers run one at a time, in order
            self._advance(pod, run, pending_init, mono=mono, result=result)
        else:
            for container in run.containers:
                if not container.init:
                    self._advance(pod, run, container, mono=mono, result=result)
        result.status = pod_status(pod, run, self.now())
        waits = [
            c.retry_at - mono for c in run.containers if "waiting" in c.state and c.retry_at > mono
        ]
        if waits:
            result.requeue_s = min(waits)
        return result

    def _advance(
        self, pod: Obj, run: PodRun, c: ContainerRun, *, mono: float, result: KubeletResult
    ) -> None:
        """Start a waiting container when due; put a failed one in back-off to restart."""
        restart = pod["spec"].get("restartPolicy", "Always")
        code = c.exit_code()
        if code is not None and (restart == "Always" or (restart == "OnFailure" and code != 0)):
            c.last_state, c.restarts = c.state, c.restarts + 1
            c.retry_at = mono + min(self.restart_backoff_s * 2 ** (c.restarts - 1), 10.0)
            c.state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": (
                        f"back-off restarting failed container={c.name} "
                        f"pod={pod['metadata']['name']}_{pod['metadata']['namespace']}"
                    ),
                }
            }
            result.events.append(
                (
                    "Warning",
                    "BackOff",
                    "Back-off restarting failed container "
                    f"{c.name} in pod {pod['metadata']['name']}",
                )
            )
        elif "waiting" in c.state and mono >= c.retry_at:
            self._start(pod, run, c, mono=mono, result=result)

    def _start(
        self, pod: Obj, run: PodRun, c: ContainerRun, *, mono: float, result: KubeletResult
    ) -> None:
        image = c.spec.get("image", "")
        if not self.has_image(image):
            c.pulls_failed += 1
            c.retry_at = mono + self.image_retry_s
            if c.pulls_failed == 1:
                why = (
                    f"rpc error: code = NotFound desc = failed to pull and unpack image "
                    f'"{image}": failed to resolve reference "{image}": not found'
                )
                c.state = {"waiting": {"reason": "ErrImagePull", "message": why}}
                result.events += [
                    ("Warning", "Failed", f'Failed to pull image "{image}": {why}'),
                    ("Warning", "Failed", "Error: ErrImagePull"),
                ]
            else:
                c.state = {
                    "waiting": {
                        "reason": "ImagePullBackOff",
                        "message": f'Back-off pulling image "{image}"',
                    }
                }
                if c.pulls_failed == 2:
                    result.events += [
                        ("Normal", "BackOff", f'Back-off pulling image "{image}"'),
                        ("Warning", "Failed", "Error: ImagePullBackOff"),
                    ]
            return
        assert run.volumes is not None
        try:
            launch = build_launch(
                pod,
                c.spec,
                pod_dir=run.folder,
                volumes=run.volumes,
                configmaps=self.configmaps,
                secrets=self.secrets,
                base_env=self.base_env,
            )
        except ConfigError as error:
            if c.state.get("waiting", {}).get("message") != str(error):
                result.events.append(("Warning", "Failed", f"Error: {error}"))
            c.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(error)}}
            c.retry_at = mono + 0.5
            return
        except FileNotFoundError as error:
            self._start_error(c, f"exec: no command specified: {error}", result)
            return
        log = run.folder / "logs" / f"{c.name}-{c.restarts}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        try:
            with log.open("wb") as out:
                c.proc = subprocess.Popen(
                    launch.argv,
                    env=launch.env,
                    cwd=launch.cwd,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
        except OSError:
            self._start_error(
                c, f'exec: "{launch.argv[0]}": executable file not found in $PATH: unknown', result
            )
            return
        c.logs.append(log)
        c.termination_file = launch.termination_file
        c.container_id = f"containerd://{uuid.uuid4().hex}"
        c.state = {"running": {"startedAt": self.now()}}
        result.events += [
            ("Normal", "Pulled", f'Container image "{image}" already present on machine'),
            ("Normal", "Created", f"Created container: {c.name}"),
            ("Normal", "Started", f"Started container {c.name}"),
        ]

    def _start_error(self, c: ContainerRun, why: str, result: KubeletResult) -> None:
        message = (
            "failed to create containerd task: failed to create shim task: OCI runtime "
            f"create failed: runc create failed: unable to start container process: {why}"
        )
        now = self.now()
        c.state = {
            "terminated": {
                "exitCode": 128,
                "reason": "StartError",
                "message": message,
                "startedAt": now,
                "finishedAt": now,
            }
        }
        result.events.append(("Warning", "Failed", f"Error: {message}"))

    def _reap(self, run: PodRun) -> None:
        """Record the containers whose process has ended."""
        for c in run.running():
            assert c.proc is not None
            code = c.proc.poll()
            if code is None:
                continue
            code = code if code >= 0 else 128 - code
            c.proc = None
            reason = "Completed" if code == 0 else "Error"
            terminated: Obj = {
                "exitCode": code,
                "reason": reason,
                "startedAt": c.state.get("running", {}).get("startedAt", ""),
                "finishedAt": self.now(),
                "containerID": c.container_id,
            }
            message = self._message(c, code)
            if message:
                terminated["message"] = message
            c.state = {"terminated": terminated}

    def _message(self, c: ContainerRun, code: int) -> str:
        text = b""
        if c.termination_file is not None and c.termination_file.exists():
            text = c.termination_file.read_bytes()[-MESSAGE_LIMIT:]  # the kubelet keeps the tail
        fallback = c.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        if not text and fallback and code != 0 and c.logs and c.logs[-1].exists():
            lines = c.logs[-1].read_bytes().splitlines(keepends=True)[-80:]
            text = b"".join(lines)[-2048:]
        return text.decode(errors="replace")

    def _terminate(
        self, pod: Obj, run: PodRun, mono: float, result: KubeletResult
    ) -> KubeletResult:
        running = run.running()
        if running:
            if run.kill_at is None:
                grace = float(pod["metadata"].get("deletionGracePeriodSeconds") or 0)
                run.kill_at = mono + grace
                for c in running:
                    assert c.proc is not None
                    _signal(c.proc, signal.SIGTERM)
                    result.events.append(("Normal", "Killing", f"Stopping container {c.name}"))
            elif mono >= run.kill_at:
                for c in running:
                    assert c.proc is not None
                    _signal(c.proc, signal.SIGKILL)
            result.requeue_s = 0.02
            result.status = pod_status(pod, run, self.now())
            return result
        now = self.now()
        for c in run.containers:
            if "waiting" in c.state or "running" in c.state:
                c.state = {
                    "terminated": {
                        "exitCode": 137,
                        "reason": "ContainerStatusUnknown",
                        "message": "The container could not be located when the pod was terminated",
                        "startedAt": now,
                        "finishedAt": now,
                    }
                }
        result.status = pod_status(pod, run, self.now(), final=True)
        result.remove = True
        return result

    # -- status ----------------------------------------------------------------------------------
