"""The local backend's kubelet: it starts each pod with the container's command and
environment, watches it, signals it, and adopts the pods still running after a controller
restart. A pod's task is forked by its image's warm zygote when one is ready
(local_zygotes.py), which supervises it; else a supervisor (shim.py) is started as a new
interpreter, which starts the task. Either one says "started" on the pod's pipe and
records the exit in the pod's folder.

A zygote closes the pod's pipe once it has recorded the exit, which tells of it at once; a
pidfd tells of a plain supervisor's exit, and of a forked task's after a restart (no pipe)
(`check_exits`, called by the backend's poller, is the safety net where pidfds are
missing). A cancel is SIGTERM to a plain pod's supervisor, which gives the task its grace;
to a forked task's group directly, then SIGKILL after the grace, by this controller or, if
it is gone by then, by the task's zygote (told in the pod's `stop.json`). What to start, and when,
is not decided here: the backend's sync step does that (local_plan.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

from kubetask import env
from kubetask.controller.backends import shim
from kubetask.controller.backends.base import TaskSpec
from kubetask.controller.backends.local_folders import (
    JobFolders,
    PodStop,
    read_json,
    write_json,
    write_whole,
)
from kubetask.controller.backends.local_zygotes import Zygotes
from kubetask.controller.backends.shim import EXIT_CANNOT_START, process_start
from kubetask.controller.clock import Clock, utcnow

log = logging.getLogger("kubetask.local")

SHIM = str(Path(__file__).with_name("shim.py"))
MAX_ENV_PARAMS = 32 * 1024  # one environment string may not pass 128 KiB on Linux
SYSTEM_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "VIRTUAL_ENV")
# What a task needs of the controller's environment to reach an object store (the spec's own
# endpoint and region, when the settings name them, win)
STORE_ENV = (
    *env.S3_CREDENTIALS,
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
)


RECORD_WAIT_S = 0.02  # how often to look for a zygote's record of a task that is gone


@dataclass
class LivePod:
    job_id: str
    pid: int | None  # the supervisor's, or a forked task's; None: its zygote has not answered
    proc: subprocess.Popen[bytes] | None = None  # None: adopted, or forked by a zygote
    pidfd: int | None = None
    stdout: IO[bytes] | None = None  # "started"; a zygote closes it once the exit is recorded
    reading: bool = False  # its stdout is being read (`_watch`)
    start: int | None = None  # when the process started (shim.process_start)
    terminating: bool = False  # SIGTERM asked for before its pid was known
    forked: bool = False  # the task itself, forked by a zygote which records its exit
    grace_s: float = 0.0  # a forked task's, between SIGTERM and SIGKILL
    kill_timer: asyncio.TimerHandle | None = None
    recorder: tuple[int, int | None] | None = None  # an adopted forked task's zygote
    recheck: asyncio.TimerHandle | None = None  # gone: looking for its zygote's record


def pid_alive(pid: int, pod_dir: Path, start: int | None = None) -> bool:
    """True if `pid` runs and (where /proc tells) is the supervisor of `pod_dir`: the process
    that started at `start` when known, else one whose command line names the folder."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if start is not None and Path("/proc/self/stat").exists():
        return process_start(pid) == start
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        with contextlib.suppress(OSError):
            return str(pod_dir).encode() in cmdline.read_bytes()
    return True


def cpu_share(parallelism: int, cpus: int | None = None) -> int:
    """Threads one of `parallelism` workers gets of this machine's `cpus` (at least 1)."""
    available = len(os.sched_getaffinity(0)) if cpus is None else cpus
    return max(1, available // max(1, parallelism))


def task_env(
    spec: TaskSpec, pod_dir: Path, index: int, *, system: dict[str, str]
) -> tuple[dict[str, str], str | None]:
    """The container's environment (plus PATH and the like from `system` to find Python),
    and the params when too large for an environment variable: the caller puts them in
    the file named by `KUBETASK_PARAMS_FILE`, as a ConfigMap mount would."""
    environment = {k: system[k] for k in SYSTEM_ENV if k in system}
    if env.ARTIFACTS_URL in spec.env:  # object storage: the controller's own credentials
        environment.update({k: system[k] for k in STORE_ENV if k in system})
    # no cgroup quota here: the job's workers share the machine's CPUs, as their threads
    environment["OMP_NUM_THREADS"] = str(cpu_share(spec.parallelism))
    environment.update(spec.env)
    environment["HOME"] = str(pod_dir)
    environment[env.TERMINATION_LOG] = str(pod_dir / "termination-log")
    if spec.completions > 1:
        environment[env.COMPLETION_INDEX] = str(index)
    params = environment.get(env.PARAMS, "")
    if len(params) <= MAX_ENV_PARAMS:
        return environment, None
    del environment[env.PARAMS]
    return environment, params


def supervised_command(spec: TaskSpec, pod_dir: Path, *, python: str) -> list[str]:
    """The supervisor's command line, with the task's after `--` (`python` as ours)."""
    command = [python if spec.command[0] == "python" else spec.command[0], *spec.command[1:]]
    # -I -S: the supervisor needs only the standard library; skipping site-packages
    # halves its start-up.
    return [python, "-I", "-S", SHIM, str(pod_dir), str(spec.grace_s), "--", *command]


class Supervisor:
    """The pods' supervisors this controller watches. `on_change(job_id)`: a pod of the
    job started or could not start; `on_exit(job_id)`: one exited (a slot is free)."""

    def __init__(
        self,
        *,
        folders: JobFolders,
        python: str,
        on_change: Callable[[str], None],
        on_exit: Callable[[str], None],
        zygotes: bool = True,
        clock: Clock = utcnow,
    ) -> None:
        self._folders = folders
        self._clock = clock
        self._python = python
        self._zygotes = (
            Zygotes(folders.jobs.parent / "zygotes", python=python, system=os.environ)
            if zygotes
            else None
        )
        self._on_change = on_change
        self._on_exit = on_exit
        self._live: dict[Path, LivePod] = {}

    @property
    def running(self) -> int:
        return len(self._live)

    def watches(self, pod_dir: Path) -> bool:
        return pod_dir in self._live

    def spawn(
        self,
        spec: TaskSpec,
        index: int,
        attempt: int,
        *,
        now: datetime,
        stop: PodStop | None = None,
    ) -> None:
        """Start one pod: its folder (with the `stop` its supervisor keeps by itself), then its
        supervisor (which starts the task): asked of its image's zygote, which answers
        later, or else started plainly now."""
        pod_dir = self._folders.new_pod_dir(spec.job_id, index, attempt, now=now, stop=stop)
        try:
            environment = self._environment(spec, pod_dir, index)
        except OSError:  # nothing started: no pod (and no attempt used up)
            self._folders.remove_pod_dir(pod_dir)
            raise
        if self._zygotes is None or not self._ask_zygote(spec, pod_dir, environment):
            try:
                self._watch(pod_dir, self._start_plainly(spec, pod_dir, environment))
            except OSError as exc:
                self._cannot_start(pod_dir, exc)
        self._on_change(spec.job_id)

    def _environment(self, spec: TaskSpec, pod_dir: Path, index: int) -> dict[str, str]:
        """The task's environment, its large params written to the job's params file."""
        environment, params = task_env(spec, pod_dir, index, system=dict(os.environ))
        if params is not None:
            params_file = self._folders.params_file(spec.job_id)
            write_whole(params_file, params)  # a pod of the job may be reading it
            environment[env.PARAMS_FILE] = str(params_file)
        return environment

    def _ask_zygote(self, spec: TaskSpec, pod_dir: Path, environment: dict[str, str]) -> bool:
        """The pod is the zygote's to fork (it runs from now: a slot is taken); its pid
        comes with the answer (`_forked`). False: no zygote can."""
        assert self._zygotes is not None
        read, write = os.pipe()
        try:
            asked = self._zygotes.request(
                spec,
                pod_dir,
                environment,
                stdout=write,
                on_reply=lambda pid: self._forked(spec, pod_dir, environment, pid),
            )
        finally:
            os.close(write)
        if not asked:
            os.close(read)
            return False
        pod = LivePod(
            spec.job_id, None, stdout=os.fdopen(read, "rb"), forked=True, grace_s=spec.grace_s
        )
        self._watch(pod_dir, pod)
        return True

    def _forked(
        self, spec: TaskSpec, pod_dir: Path, environment: dict[str, str], pid: int | None
    ) -> None:
        """The zygote's answer for the pod: its task's pid, or None: start it plainly."""
        live = self._live.get(pod_dir)
        if live is None:
            return  # no longer watched (the controller is stopping)
        terminating = live.terminating
        if pid is None:
            self._unwatch(pod_dir)
            try:
                live = self._start_plainly(spec, pod_dir, environment)
            except OSError as exc:
                self._cannot_start(pod_dir, exc)
                self._on_exit(spec.job_id)  # its slot is free
                return
        else:
            live.pid, live.start = pid, process_start(pid)
        self._watch(pod_dir, live)
        if live.stdout is not None and live.stdout.closed:  # it closed its stdout already
            self._exited(pod_dir)
            return
        if terminating:
            self._terminate(pod_dir, live)

    def _start_plainly(self, spec: TaskSpec, pod_dir: Path, environment: dict[str, str]) -> LivePod:
        """The pod's supervisor as a new interpreter."""
        with (pod_dir / "shim.log").open("ab") as shim_log:
            proc = subprocess.Popen(
                supervised_command(spec, pod_dir, python=self._python),
                env=environment,
                cwd=pod_dir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=shim_log,
                start_new_session=True,
            )
        start = process_start(proc.pid)  # as the supervisor writes it too (first or last)
        try:
            write_json(pod_dir / "shim.json", {"pid": proc.pid, "start": start, "zygote": False})
        except OSError:  # no one could find it again: it must not run (its task dies with it)
            proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
            raise
        return LivePod(spec.job_id, proc.pid, proc, stdout=proc.stdout, start=start)

    def _cannot_start(self, pod_dir: Path, exc: OSError) -> None:
        """The pod fails to start, as a container that cannot be created; one whose failure
        cannot be recorded either (the disk is full) is removed: it never was, and a later
        sync starts it again."""
        log.error("cannot start %s: %s", pod_dir, exc)
        try:
            (pod_dir / "output.log").write_text(f"cannot start the task: {exc}\n")
            write_json(
                pod_dir / "exit.json",
                {"exit_code": EXIT_CANNOT_START, "finished_at": self._clock().isoformat()},
            )
        except OSError as why:
            log.error(
                "cannot record that %s did not start (%s): its folder is removed", pod_dir, why
            )
            self._folders.remove_pod_dir(pod_dir)

    def adopt(self, job_id: str) -> None:
        """Watch the job's pods that still run (started by an earlier controller)."""
        for pod_dir, _ in self._folders.pod_dirs(job_id):
            shim = read_json(pod_dir / "shim.json")
            if not shim or (pod_dir / "exit.json").exists():
                continue
            pid, start = int(str(shim["pid"])), _number(shim.get("start"))
            if not pid_alive(pid, pod_dir, start):
                continue
            pod = LivePod(job_id, pid, start=start)
            recorder = _number(shim.get("recorder"))
            if recorder is not None:  # a forked task (a zygote-forked supervisor has none)
                pod.forked, pod.grace_s = True, self._folders.spec(job_id).grace_s
                pod.recorder = (recorder, _number(shim.get("recorder_start")))
            self._watch(pod_dir, pod)

    def terminate(self, job_id: str) -> None:
        """Stop each running pod of the job: SIGTERM, then SIGKILL after its grace (a plain
        pod's supervisor does that; a forked task's group is signalled from here)."""
        for pod_dir, live in list(self._live.items()):
            if live.job_id == job_id:
                self._terminate(pod_dir, live)

    def _terminate(self, pod_dir: Path, live: LivePod) -> None:
        if live.pid is None:
            live.terminating = True  # once its zygote answers
        elif not live.forked:
            with contextlib.suppress(ProcessLookupError):
                os.kill(live.pid, signal.SIGTERM)
        elif live.kill_timer is None:
            with contextlib.suppress(OSError):  # its zygote kills it, should we be gone then
                shim.record_stop(pod_dir, time.time() + live.grace_s)
            _signal_group(live.pid, signal.SIGTERM)
            loop = asyncio.get_running_loop()
            live.kill_timer = loop.call_later(live.grace_s, self._kill, pod_dir)

    def _kill(self, pod_dir: Path) -> None:
        live = self._live.get(pod_dir)
        if live is not None and live.pid is not None:
            _signal_group(live.pid, signal.SIGKILL)

    def check_exits(self) -> None:
        """Notice the exits no pidfd told of."""
        for pod_dir, live in list(self._live.items()):
            if live.pid is None:
                continue  # its zygote has not answered yet (it times out on its own)
            gone = (
                live.proc.poll() is not None
                if live.proc
                else not pid_alive(live.pid, pod_dir, live.start)
            )
            if gone:
                self._gone(pod_dir)

    def close(self) -> None:
        """Stop watching and stop the zygotes; the supervisors keep running, for the next
        controller to adopt."""
        for pod_dir in list(self._live):
            self._unwatch(pod_dir)
        if self._zygotes is not None:
            self._zygotes.close()

    # -- watching ----------------------------------------------------------------------
    def _on_output(self, pod_dir: Path) -> None:
        """The pod said 'started' (it may be running), or its pipe closed: a zygote closes a
        forked task's once it has recorded the exit (or the zygote died)."""
        live = self._live.get(pod_dir)
        if live is None or live.stdout is None or live.stdout.closed:
            return
        try:
            said = os.read(live.stdout.fileno(), 4096)
        except BlockingIOError:
            return
        except OSError:
            said = b""
        if said:
            self._on_change(live.job_id)
        elif live.forked and live.pid is not None:  # its zygote has recorded the exit
            self._exited(pod_dir)
        else:
            # a plain supervisor's exit is told by its pidfd (it is reaped then); a pod whose
            # zygote has not answered yet hears what happened from the answer
            asyncio.get_running_loop().remove_reader(live.stdout.fileno())
            live.stdout.close()

    def _watch(self, pod_dir: Path, live: LivePod) -> None:
        """Watch the pod: its stdout from now, its exit once its pid is known."""
        self._live[pod_dir] = live
        if live.stdout is not None and not live.reading:
            live.reading = True
            os.set_blocking(live.stdout.fileno(), False)
            asyncio.get_running_loop().add_reader(live.stdout.fileno(), self._on_output, pod_dir)
        if live.pid is None or live.pidfd is not None or (live.forked and live.reading):
            return  # a forked task's zygote closes the pipe once it has recorded the exit
        try:
            live.pidfd = os.pidfd_open(live.pid)
        except (AttributeError, OSError):
            return  # no pidfd here (or already gone): the poller notices the exit
        asyncio.get_running_loop().add_reader(live.pidfd, self._gone, pod_dir)

    def _unwatch(self, pod_dir: Path) -> LivePod | None:
        live = self._live.pop(pod_dir, None)
        if live is None:
            return None
        loop = asyncio.get_running_loop()
        if live.pidfd is not None:
            loop.remove_reader(live.pidfd)
            os.close(live.pidfd)
        for timer in (live.kill_timer, live.recheck):
            if timer is not None:
                timer.cancel()
        if live.stdout is not None and not live.stdout.closed:
            loop.remove_reader(live.stdout.fileno())
            live.stdout.close()
        return live

    def _gone(self, pod_dir: Path) -> None:
        """The pod's process is gone. A forked task's zygote records the exit a moment after
        (unless the zygote is gone too): until then, look again shortly."""
        live = self._live.get(pod_dir)
        if live is None or live.recheck is not None:
            return  # no longer watched, or already looking
        if live.forked and live.reading and live.stdout is not None and not live.stdout.closed:
            return  # its zygote closes the pipe once it has recorded the exit
        recorder = live.recorder
        waiting = (
            live.forked
            and recorder is not None
            and not (pod_dir / "exit.json").exists()
            and pid_alive(recorder[0], pod_dir, recorder[1])
        )
        if not waiting:
            self._exited(pod_dir)
            return
        loop = asyncio.get_running_loop()
        if live.pidfd is not None:  # it stays readable
            loop.remove_reader(live.pidfd)
            os.close(live.pidfd)
            live.pidfd = None
        live.recheck = loop.call_later(RECORD_WAIT_S, self._recheck, pod_dir)

    def _recheck(self, pod_dir: Path) -> None:
        live = self._live.get(pod_dir)
        if live is not None:
            live.recheck = None
            self._gone(pod_dir)

    def _exited(self, pod_dir: Path) -> None:
        live = self._unwatch(pod_dir)
        if live is None:
            return
        if live.proc is not None:
            live.proc.wait()  # reap our own child (gone: its pidfd said so)
        self._on_exit(live.job_id)


def _number(value: object) -> int | None:
    return None if value is None else int(str(value))


def _signal_group(pid: int, sig: int) -> None:
    """Signal a forked task's process group; the task alone while it has none yet (it
    takes a session of its own first thing after the fork)."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
