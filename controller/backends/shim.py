"""The local backend's per-pod supervisor, the part a container runtime's shim plays:

    python -m kubetask.controller.backends.shim POD_DIR GRACE_S -- COMMAND...

It runs in its own session, so the controller may stop or crash while the task goes on.
It starts the task in a process group of its own (stdout and stderr to `output.log`), says
"started" on its stdout for whoever listens, and records the exit in `exit.json` for the
controller to read later. On SIGTERM it passes SIGTERM to the task's group and, after the
grace period, SIGKILL; so it does by itself at the job's deadline (`pod.json`'s `stop_at`),
as a kubelet keeps a pod's active deadline, whether a controller runs then or not. When
the task ends, anything left in its group is killed: no orphans. Standard library only, so
it starts fast. A zygote (zygote.py) plays this part itself for the tasks it forks
(`record_fork`, `record_exit`).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

PR_SET_PDEATHSIG = 1
EXIT_CANNOT_START = 127  # a pod whose task could not be started (as a shell says it)
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None

StartTask = Callable[[int], int]  # the output file's descriptor -> the task's pid


RETRY_S = 1.0  # how soon an exit that could not be recorded is written again


def die_with_parent() -> None:
    """In the task: if the shim is killed, take the task down too (Linux)."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _write_json(path: Path, data: dict[str, object]) -> None:
    """Atomic: a reader sees the whole file or none of it."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def process_start(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot, /proc/PID/stat field 22); None: gone,
    a zombie, or no /proc. With the pid it names one process, even if the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) "
    return None if fields[0] == "Z" else int(fields[19])


def exit_code_of(returncode: int) -> int:
    """As a container runtime reports it: 128 + signal for a killed process."""
    return 128 - returncode if returncode < 0 else returncode


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def spawn_command(command: list[str], pod_dir: Path) -> StartTask:
    """Start the task as a new process running `command` (the plain start)."""

    def start(output: int) -> int:
        task = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=pod_dir,
            process_group=0,
            preexec_fn=die_with_parent,  # noqa: PLW1509 -- no threads exist yet
        )
        task.returncode = 0  # reaped below by os.waitpid, not by Popen
        return task.pid

    return start


def exit_record(status: int) -> dict[str, object]:
    """The exit.json of a task that ended with wait `status`."""
    return {"exit_code": exit_code_of(os.waitstatus_to_exitcode(status)), "finished_at": _now()}


def write_exit(pod_dir: Path, record: dict[str, object]) -> None:
    _write_json(pod_dir / "exit.json", record)


def record_exit(pod_dir: Path, task: int, status: int, *, retry_s: float = RETRY_S) -> None:
    """The task ended with wait `status`: kill what is left in its group, record the exit.
    A record that cannot be written yet (the disk is full) is written again every
    `retry_s`, this supervisor alive meanwhile: the controller sees the pod running, never
    lost (a lost pod is started again, and this task ran to its end). Given up when the
    pod's folder is gone (the job was purged)."""
    _kill_group(task, signal.SIGKILL)
    record = exit_record(status)
    while True:
        try:
            write_exit(pod_dir, record)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(retry_s)


def record_stop(pod_dir: Path, kill_at: float) -> None:
    """In the controller, as it SIGTERMs a forked task: when its zygote is to SIGKILL it
    (seconds since the epoch), should the controller be gone by then."""
    _write_json(pod_dir / "stop.json", {"kill_at": kill_at})


def read_pod_stop(pod_dir: Path) -> tuple[float, float] | None:
    """When the supervisor stops the pod's task by itself (the job's deadline, seconds since
    the epoch) and the grace it then gives it, from `pod.json`; None: no deadline."""
    try:
        made = json.loads((pod_dir / "pod.json").read_text())
        return float(made["stop_at"]), float(made["grace_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_stop(pod_dir: Path) -> float | None:
    """When the task of the pod is to be killed (`record_stop`); None: not asked."""
    try:
        return float(json.loads((pod_dir / "stop.json").read_text())["kill_at"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def record_fork(pod_dir: Path, task: int) -> None:
    """In the zygote, once it forked `task` (before it answers): who the task is, that it
    started (a forked task has no started.json: the fork is its start), and who records its
    exit (this zygote), so that a controller that restarts finds it to adopt."""
    zygote = os.getpid()
    _write_json(
        pod_dir / "shim.json",
        {
            "pid": task,
            "start": process_start(task),
            "zygote": True,
            "recorder": zygote,
            "recorder_start": process_start(zygote),
            "started_at": _now(),
        },
    )


def supervise(pod_dir: Path, grace_s: float, start: StartTask) -> int:
    """Start the task, tell the listener on stdout, wait for it and record how it ended.
    A SIGTERM from the first moment on reaches the task (one that came before the task
    started terminates it as soon as it has)."""
    me = os.getpid()
    task = 0  # the task's pid (and process group), once started
    asked_to_stop = False

    def terminate(signum: int, frame: FrameType | None) -> None:
        nonlocal asked_to_stop
        if task == 0:
            asked_to_stop = True
            return
        _kill_group(task, signal.SIGTERM)
        timer = threading.Timer(grace_s, _kill_group, (task, signal.SIGKILL))
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _write_json(pod_dir / "shim.json", {"pid": me, "start": process_start(me), "zygote": False})
    with (pod_dir / "output.log").open("ab") as output:
        task = start(output.fileno())
    _write_json(pod_dir / "started.json", {"pid": task, "started_at": _now()})
    if asked_to_stop:
        terminate(signal.SIGTERM, None)
    stop = read_pod_stop(pod_dir)
    if stop is not None:  # the job's deadline, kept with or without a controller
        deadline = threading.Timer(
            max(stop[0] - time.time(), 0.0), terminate, (signal.SIGTERM, None)
        )
        deadline.daemon = True
        deadline.start()
    with contextlib.suppress(OSError):  # nobody listens (the controller restarted): fine
        sys.stdout.write("started\n")
        sys.stdout.flush()
    _, status = os.waitpid(task, 0)
    record_exit(pod_dir, task, status)
    return 0


def main(argv: list[str]) -> int:
    pod_dir, grace_s, command = Path(argv[0]), float(argv[1]), argv[3:]
    return supervise(pod_dir, grace_s, spawn_command(command, pod_dir))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
