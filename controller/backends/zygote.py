"""A warm task process for the local backend: it has imported the task runtime and the
libraries of one image role (torch, SDV), forks one child per task and supervises them.

    python -m kubetask.controller.backends.zygote FD KIND

FD is the zygote's end of a Unix seqpacket socket pair whose other end only the controller
(local_zygotes.py) holds: no one else can ask for a fork. It says "ready" on it once
preloaded; then the controller sends a request per pod: the pod's folder, command and
environment, with one descriptor: the pod's pipe to the controller.
Each task is a child the zygote forked, once: between requests it keeps one forked and
ready, the spare (`Spare`: a session and process group of its own, nothing of the
zygote's open), which the next request becomes; the next spare is forked after the answer
(with none, the task is forked there and then). The zygote records who the task is, that
it started and that the zygote records its exit (`shim.record_fork`: the pod's
shim.json), then says "started" on the pipe. The child becomes the task: the job's
environment (nothing of the zygote's), default signal handlers, a fresh seed for every
RNG, no descriptor of the zygote's or of another pod's; it opens its own connections. The
zygote is the task's parent and plays the part a shim plays for a plain start (shim.py):
it records the exit, kills what is left in the task's group, and closes the pod's pipe,
which tells the controller at once. An exit it cannot write (the disk is full) it writes
again every STOP_CHECK_S, the pipe open till then: the controller sees the pod still
running, never lost (a lost pod is started again, and this task ran to its end). The
controller signals the task's group itself (SIGTERM, SIGKILL after the grace), and writes
when the SIGKILL is due in the pod's folder (`shim.record_stop`): while it has tasks, the
zygote looks every STOP_CHECK_S and kills an overdue one itself, so a cancel holds even if
the controller is gone by then; so does the job's deadline (`pod.json`'s `stop_at`): the
zygote SIGTERMs a task past it, and SIGKILLs it after the grace, as a kubelet would.

The zygote outlives its controller: once the controller hangs up (it stopped, or was
killed) it takes no more requests, goes on recording its tasks' exits and exits after the
last one; the next controller adopts those tasks as any other. A task dies with its zygote
(nobody would record its exit): the controller then sees the pod lost, and a lost pod is
started again. The zygote itself opens no connection and runs no Python thread (it refuses
to fork if one appears).

What is preloaded: the task runtime, and the runner modules and `warm` modules of every
kind of KIND's warm group (its image role, light or not: `KindSpec.light`), named by the
installed kinds' specs (kubetask.kinds), imported by name, and the kubetask models'
validators built: nothing runs. Then its memory is collapsed into huge pages
(huge_pages.py), which makes each fork and exit of a torch-sized zygote ~3x cheaper.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import json
import logging
import os
import random
import runpy
import select
import signal
import socket
import sys
import threading
import time
import traceback
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from kubetask.controller.backends import huge_pages, shim
from kubetask.kinds import load_kinds

RUNTIME = "kubetask.jobs.runtime"
LOCALE_ENV = ("LC_ALL", "LC_CTYPE", "LANG")
# What a new interpreter adds to its environment when no locale is set (PEP 538): the
# controller starts the zygote without LC_CTYPE, so one seen here is the interpreter's.
COERCED_LOCALE = os.environ.get("LC_CTYPE")
MAX_REQUEST = 1 << 20  # an environment holds at most 32 KiB of params (larger: a file)
STOP_CHECK_S = 1.0  # how often a zygote with tasks looks for one overdue for its SIGKILL


@dataclass(frozen=True)
class Request:
    """One pod to start: `python -m MODULE ARGS...` in POD_DIR with ENV."""

    pod_dir: Path
    module: str
    args: list[str]
    env: dict[str, str]

    @classmethod
    def from_json(cls, message: bytes) -> Request:
        data = json.loads(message)
        return cls(
            pod_dir=Path(data["pod_dir"]),
            module=str(data["module"]),
            args=[str(a) for a in data["args"]],
            env={str(k): str(v) for k, v in data["env"].items()},
        )


def warm_group(kind: str) -> tuple[str, bool] | None:
    """Which zygote forks `kind`'s tasks: its image role's, or the role's light one (None: no
    such kind installed)."""
    spec = load_kinds().get(kind)
    return None if spec is None else (spec.image, spec.light)


def preload(kind: str) -> list[str]:
    """Import the task runtime and the runners of the kinds of `kind`'s warm group; the
    modules' names."""
    group = warm_group(kind)
    modules = {
        module
        for name, spec in load_kinds().items()
        if warm_group(name) == group
        for module in (spec.runner.partition(":")[0], *spec.warm)
    }
    names = [RUNTIME, *sorted(modules)]
    for name in names:
        importlib.import_module(name)
    "localhost".encode("idna")  # the codec a connection to a host name loads (~3 ms a task)
    build_models()
    settle()
    gc.freeze()  # what is loaded now stays out of the collector's walks: fewer pages copied
    return names


def settle() -> None:
    """Write now, once, what each task would otherwise write to many of the zygote's objects
    (each page a child writes to is copied for it): the root logger's level, which the task
    runtime sets (setting it clears every logger's cache), and the finalizers of the
    preloaded modules' objects, which no task runs at its exit (~40 ms of page copies)."""
    logging.root.setLevel(logging.INFO)
    for finalizer in list(weakref.finalize._registry):  # type: ignore[attr-defined]
        finalizer.atexit = False


def build_models() -> None:
    """Build the validators of every kubetask pydantic model now (they are built on first
    use, `defer_build`: ~20 ms each that every forked task would pay again)."""
    from pydantic import BaseModel

    pending: list[type[BaseModel]] = [BaseModel]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__module__.startswith("kubetask.") and not cls.__pydantic_complete__:
            with contextlib.suppress(Exception):  # one that cannot be built yet: on first use
                cls.model_rebuild()


def reseed() -> None:
    """Fresh seeds in a forked task: siblings must not share random streams. torch's GPU
    generators are made, freshly seeded, where a process first uses the GPU, and a zygote
    never does: only the CPU's generator is the zygote's (`torch.seed()` would also queue a
    seeding per device, each with a formatted stack: ~3 ms of source reads per task).
    numpy's global generator exists once `numpy.random` is imported (seeded from the OS
    then): a task that imports it itself gets a fresh one (importing it here: ~10 ms)."""
    random.seed()
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed(int.from_bytes(os.urandom(4), "little"))
    torch = sys.modules.get("torch")
    if torch is not None:
        if torch.cuda.is_initialized():
            torch.seed()  # every device's generator (not in a zygote's child)
        else:
            torch.default_generator.seed()


def run_task(request: Request, output: int) -> int:
    """In the task child: become the task (`python -m MODULE ARGS...`); its exit code."""
    for number in (signal.SIGTERM, signal.SIGCHLD):
        signal.signal(number, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as a new interpreter has it
    with open(os.devnull, "rb") as null:
        os.dup2(null.fileno(), 0)
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.close(output)
    os.environ.clear()
    os.environ.update(request.env)
    if COERCED_LOCALE and not any(name in request.env for name in LOCALE_ENV):
        os.environ["LC_CTYPE"] = COERCED_LOCALE  # as the task's own interpreter would
    reseed()
    sys.argv = [request.module, *request.args]
    code = 0
    try:
        runpy.run_module(request.module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except BaseException:
        traceback.print_exc()
        code = 1
    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()  # what an interpreter runs at its exit
        sys.stdout.flush()
        sys.stderr.flush()
    return code


def make_ready(closing: list[int]) -> None:
    """In a forked child, what does not depend on its pod: nothing of the zygote's open
    (`closing`: its descriptors, and the other pods' pipes), a session of its own."""
    signal.set_wakeup_fd(-1)
    for fd in closing:
        os.close(fd)
    os.setsid()  # its own session and process group
    shim.die_with_parent()  # a task outlives no zygote: nobody would record its exit


def enter_pod(request: Request, stdout: int) -> int:
    """In a ready child: the pod's folder and output log (the zygote holds the pod's pipe,
    `stdout`: it is closed here), then the task; its exit code."""
    os.chdir(request.pod_dir)
    output = os.open("output.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(output, 2)  # a failure from here on is in the pod's log
    os.close(stdout)
    return run_task(request, output)


def become_task(request: Request, stdout: int, closing: list[int]) -> NoReturn:
    """In a child forked for `request`: ready, then its task."""
    code = shim.EXIT_CANNOT_START
    try:
        make_ready(closing)
        code = enter_pod(request, stdout)
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def become_spare(conn: socket.socket, closing: list[int]) -> NoReturn:
    """In a spare: ready before its request comes, then the task of the request the zygote
    passes on `conn` (with the pod's pipe); it exits quietly when the zygote lets it go."""
    code = shim.EXIT_CANNOT_START
    try:
        make_ready(closing)
        message, fds, _, _ = socket.recv_fds(conn, MAX_REQUEST, 1)
        conn.close()
        if not message:
            code = 0
        else:
            (stdout,) = fds
            code = enter_pod(Request.from_json(message), stdout)
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


@dataclass
class Spare:
    """A child forked ahead of the next request, already ready (`make_ready`), waiting on
    the other end of `conn` for the request it becomes (the pool of unspecialized app
    processes Android's zygote keeps, of one): the fork and its first page copies are off
    the request's path."""

    pid: int
    conn: socket.socket


@dataclass
class Pod:
    """A task this zygote forked and supervises: its folder, and the controller's pipe,
    closed once its exit is recorded (so the controller hears of it at once)."""

    pod_dir: Path
    stdout: int
    kill_at: float | None = None  # when it is to be SIGKILLed (the controller asked)
    killed: bool = False
    stop: tuple[float, float] | None = None  # the job's deadline and grace (`pod.json`)
    stopped: bool = False  # SIGTERMed at that deadline
    exit: dict[str, object] | None = None  # how it ended, once reaped, until recorded
    retrying: bool = False  # its exit could not be recorded at the first try


def say(message: str) -> None:
    """A line in the zygote's log, unless it cannot be written (a full disk is no reason to
    stop: every task would die with its zygote)."""
    with contextlib.suppress(OSError):
        print(message, flush=True)


class Supervisor:
    """The zygote's loop: fork a task per request, record each task's exit; once the
    controller hangs up, take no more requests and exit when the last task has ended."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn: socket.socket | None = conn
        self.pods: dict[int, Pod] = {}
        self.ended: list[Pod] = []  # tasks reaped whose exit is not recorded yet
        self.spare: Spare | None = None
        self._next_stop_read = 0.0  # when the pods' stop.json files are looked at next
        self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self._wake_write)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # wakes select

    def run(self) -> None:
        poller = select.poll()
        poller.register(self._wake_read, select.POLLIN)
        assert self.conn is not None
        poller.register(self.conn, select.POLLIN | select.POLLRDHUP)
        self.refill()
        while self.conn is not None or self.pods or self.ended:
            timeout = STOP_CHECK_S * 1000 if self.pods or self.ended else None
            for fd, events in poller.poll(timeout):
                if fd == self._wake_read:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_read, 4096)
                    self.reap()
                elif self.conn is not None and fd == self.conn.fileno():
                    if events & (select.POLLHUP | select.POLLRDHUP | select.POLLERR):
                        self.hang_up()  # what it asked and never heard of: not forked
                    else:
                        self.answer(self.conn)
                    if self.conn is None:
                        with contextlib.suppress(KeyError):
                            poller.unregister(fd)
            self.kill_overdue()
            self.record_ended()

    def kill_overdue(self) -> None:
        """SIGTERM each task past the job's deadline (as a kubelet keeps a pod's active
        deadline, with or without a controller), and SIGKILL each whose grace after that or
        after a cancel is over (`shim.record_stop`: read every STOP_CHECK_S, not at each of
        the loop's turns, which come with every request and exit)."""
        now = time.time()
        read_stops = time.monotonic() >= self._next_stop_read
        if read_stops:
            self._next_stop_read = time.monotonic() + STOP_CHECK_S
        for pid, pod in self.pods.items():
            if pod.stop is not None and now >= pod.stop[0] and not pod.stopped:
                pod.stopped = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGTERM)
            if pod.kill_at is None and read_stops:
                pod.kill_at = shim.read_stop(pod.pod_dir)
            after_deadline = sum(pod.stop) if pod.stopped and pod.stop else None
            due = min((t for t in (pod.kill_at, after_deadline) if t is not None), default=None)
            if due is not None and now >= due and not pod.killed:
                pod.killed = True  # (not reaped yet: its group is still its own)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)

    def hang_up(self) -> None:
        """Take no more requests (the controller is gone, or this zygote refused one); the
        spare is let go."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.spare is not None:
            self.spare.conn.close()  # it reads the end and exits
            self.spare = None

    def refill(self) -> None:
        """Fork the spare the next request takes, unless there is one (or no more requests
        come, or a thread runs: the request then says why not)."""
        if self.conn is None or self.spare is not None or threading.active_count() != 1:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        closing = [*self._descriptors(), ours.fileno()]
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            become_spare(theirs, closing)
        theirs.close()
        self.spare = Spare(pid, ours)

    def _descriptors(self) -> list[int]:
        """What a child closes first: the zygote's own descriptors and the pods' pipes."""
        assert self.conn is not None
        own = [self.conn.fileno(), self._wake_read, self._wake_write]
        return own + [pod.stdout for pod in (*self.pods.values(), *self.ended)]

    def _start(self, request: Request, message: bytes, stdout: int) -> int:
        """The pid of the task of `request`: the spare, given the request, else a child
        forked now (no spare, or it died)."""
        spare, self.spare = self.spare, None
        if spare is not None:
            try:
                socket.send_fds(spare.conn, [message], [stdout])
                return spare.pid
            except OSError:  # it is gone (and reaped as any child)
                pass
            finally:
                spare.conn.close()
        closing = self._descriptors()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            become_task(request, stdout, closing)
        return pid

    def answer(self, conn: socket.socket) -> None:
        """Fork the task of one request and answer with its pid (or why not)."""
        try:
            message, fds, _, _ = socket.recv_fds(conn, MAX_REQUEST, 1)
        except ConnectionError:
            message, fds = b"", []
        if not message:  # the controller is gone
            self.hang_up()
            return
        try:
            if len(fds) != 1:
                raise ValueError(f"a request carries 1 descriptor, not {len(fds)}")
            if threading.active_count() != 1:  # a fork would copy a thread's held locks
                raise RuntimeError("the zygote runs a Python thread; it will not fork")
            request = Request.from_json(message)
            (stdout,) = fds
            pid = self._start(request, message, stdout)
            fds = []
            self.pods[pid] = Pod(request.pod_dir, stdout, stop=shim.read_pod_stop(request.pod_dir))
            with contextlib.suppress(OSError):  # no folder: the child cannot start either
                shim.record_fork(request.pod_dir, pid)  # while the child makes ready
                os.write(stdout, b"started\n")  # (or nobody listens: the controller is gone)
            reply: dict[str, object] = {"pid": pid}
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            for fd in fds:
                os.close(fd)
        with contextlib.suppress(OSError):
            conn.send(json.dumps(reply).encode())
        if "error" in reply:  # the controller starts the rest plainly: fork none of them
            self.hang_up()
        self.refill()  # after the answer: off the request's path

    def reap(self) -> None:
        """Kill what is left in the group of each task that ended, and record its exit."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if self.spare is not None and pid == self.spare.pid:  # killed while it waited
                self.spare.conn.close()
                self.spare = None
            pod = self.pods.pop(pid, None)
            if pod is None:
                continue
            with contextlib.suppress(ProcessLookupError):  # its group outlives it, if not empty
                os.killpg(pid, signal.SIGKILL)
            pod.exit = shim.exit_record(status)
            self.ended.append(pod)
        self.record_ended()

    def record_ended(self) -> None:
        """Write the exit of each ended task, then close its pipe (which tells the controller).
        One that cannot be written yet (the disk is full) stays, its pipe open, for the next
        try; one whose folder is gone is given up (the controller sees the pod lost)."""
        waiting = []
        for pod in self.ended:
            assert pod.exit is not None
            try:
                shim.write_exit(pod.pod_dir, pod.exit)
            except FileNotFoundError as exc:
                say(f"cannot record an exit in {pod.pod_dir}: {exc}")
            except OSError as exc:
                if not pod.retrying:
                    say(f"cannot record an exit in {pod.pod_dir} yet, trying again: {exc}")
                pod.retrying = True
                waiting.append(pod)
                continue
            os.close(pod.stdout)
        self.ended = waiting


def main(argv: list[str]) -> int:
    conn, kind = socket.socket(fileno=int(argv[0])), argv[1]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the controller decides when we stop
    modules = preload(kind)
    collapsed, refused = huge_pages.collapse()
    conn.send(json.dumps({"ready": os.getpid(), "modules": modules}).encode())
    print(f"zygote {os.getpid()} ready for {kind!r}'s group: {', '.join(modules)}", flush=True)
    refusal = f" (refused: {refused})" if refused else ""
    print(f"huge pages: {collapsed >> 20} MiB{refusal}", flush=True)
    Supervisor(conn).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
