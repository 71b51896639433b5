"""A warm task process for the local backend: it has imported the task runtime and the
libraries of one image role (torch, SDV), and forks one child per task.

    python -m kubetask.controller.backends.zygote FD KIND

FD is the zygote's end of a Unix seqpacket socket pair whose other end only the controller
(local_zygotes.py) holds: no one else can ask for a fork, and when the controller is gone,
so is the zygote. It says "ready" on it once preloaded; then the controller sends a request
per pod: the pod's folder, grace period, command and environment, with two descriptors,
the supervisor's stdout and its log. The zygote forks the pod's supervisor: a new session
that runs `shim.supervise`, exactly as a plain start would, except that it starts the task by
forking itself once more instead of starting an interpreter. So the supervisor, not the
zygote, is the task's parent: it records the exit, passes SIGTERM and SIGKILL, and outlives
the zygote and the controller (adopted after a restart as any other). The task child gets
the job's environment (nothing of the zygote's), its own process group, default signal
handlers, fresh seeds for every RNG and no descriptor of the zygote's sockets; it opens its
own connections. The zygote itself opens none and runs no Python thread (it refuses to
fork if one appears).

What is preloaded: the task runtime, and the runner modules and `warm` modules of every
kind with KIND's image role, named by the installed kinds' specs (kubetask.kinds), imported
by name, and the kubetask models' validators built: nothing runs. Then its memory is
collapsed into huge pages (huge_pages.py), which makes each fork and exit ~3x cheaper.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import json
import os
import random
import runpy
import signal
import socket
import sys
import threading
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


@dataclass(frozen=True)
class Request:
    """One pod to start: `python -m MODULE ARGS...` in POD_DIR with ENV."""

    pod_dir: Path
    grace_s: float
    module: str
    args: list[str]
    env: dict[str, str]

    @classmethod
    def from_json(cls, message: bytes) -> Request:
        data = json.loads(message)
        return cls(
            pod_dir=Path(data["pod_dir"]),
            grace_s=float(data["grace_s"]),
            module=str(data["module"]),
            args=[str(a) for a in data["args"]],
            env={str(k): str(v) for k, v in data["env"].items()},
        )


def preload(kind: str) -> list[str]:
    """Import the task runtime and the runners of `kind`'s image role; the modules' names."""
    kinds = load_kinds()
    role = kinds[kind].image if kind in kinds else None
    modules = {
        module
        for spec in kinds.values()
        if spec.image == role
        for module in (spec.runner.partition(":")[0], *spec.warm)
    }
    names = [RUNTIME, *sorted(modules)]
    for name in names:
        importlib.import_module(name)
    "localhost".encode("idna")  # the codec a connection to a host name loads (~3 ms a task)
    build_models()
    gc.freeze()  # what is loaded now stays out of the collector's walks: fewer pages copied
    return names


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
    seeding per device, each with a formatted stack: ~3 ms of source reads per task)."""
    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(int.from_bytes(os.urandom(4), "little"))
    torch = sys.modules.get("torch")
    if torch is not None:
        if torch.cuda.is_initialized():
            torch.seed()  # every device's generator (not in a zygote's child)
        else:
            torch.default_generator.seed()


def run_task(request: Request, output: int) -> int:
    """In the task child: become the task (`python -m MODULE ARGS...`); its exit code."""
    os.setpgid(0, 0)
    shim.die_with_parent()
    for number in (signal.SIGTERM, signal.SIGCHLD):
        signal.signal(number, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as a new interpreter has it
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # blocked by the supervisor
    with open(os.devnull, "rb") as null:
        os.dup2(null.fileno(), 0)
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.close(output)  # the supervisor's; a task started plainly does not inherit it
    for finalizer in list(weakref.finalize._registry):  # type: ignore[attr-defined]
        finalizer.atexit = False  # the zygote's objects' (~40 ms of page copies at exit)
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


def become_supervisor(request: Request, fds: list[int], closing: list[socket.socket]) -> NoReturn:
    """In the supervisor child: a new session, the pod's descriptors, then `shim.supervise`
    with a task forked from here."""
    code = 1
    try:
        for sock in closing:
            sock.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        stdout, log = fds
        with open(os.devnull, "rb") as null:
            os.dup2(null.fileno(), 0)
        os.dup2(stdout, 1)
        os.dup2(log, 2)
        os.close(stdout)
        os.close(log)
        os.chdir(request.pod_dir)

        def start(output: int) -> int:
            # SIGTERM waits in the task until its own handler is the default one (the
            # supervisor's, inherited, would swallow it)
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
            pid = os.fork()
            if pid == 0:
                os._exit(run_task(request, output))
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            with contextlib.suppress(OSError):  # as the child does: a signal to the task's
                os.setpgid(pid, pid)  # group from now on finds it
            return pid

        code = shim.supervise(request.pod_dir, request.grace_s, start, zygote=True)
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def reap() -> None:
    """Collect the supervisors that ended (the zygote is their parent until then)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def serve(conn: socket.socket) -> None:
    """Fork a supervisor per request on `conn` until the controller hangs up."""
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(conn, MAX_REQUEST, 2)
        except ConnectionError:
            return
        if not message:
            return
        try:
            if len(fds) != 2:
                raise ValueError(f"a request carries 2 descriptors, not {len(fds)}")
            if threading.active_count() != 1:  # a fork would copy a thread's held locks
                raise RuntimeError("the zygote runs a Python thread; it will not fork")
            request = Request.from_json(message)
            sys.stdout.flush()
            sys.stderr.flush()
            # SIGTERM waits in the supervisor until it has its handler (shim.supervise)
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
            pid = os.fork()
            if pid == 0:
                become_supervisor(request, fds, [conn])
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            reply: dict[str, object] = {"pid": pid}
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            for fd in fds:
                os.close(fd)
        conn.send(json.dumps(reply).encode())


def main(argv: list[str]) -> int:
    conn, kind = socket.socket(fileno=int(argv[0])), argv[1]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the controller decides when we stop
    signal.signal(signal.SIGCHLD, lambda signum, frame: reap())
    modules = preload(kind)
    collapsed, refused = huge_pages.collapse()
    conn.send(json.dumps({"ready": os.getpid(), "modules": modules}).encode())
    print(f"zygote {os.getpid()} ready for {kind!r}'s role: {', '.join(modules)}", flush=True)
    refusal = f" (refused: {refused})" if refused else ""
    print(f"huge pages: {collapsed >> 20} MiB{refusal}", flush=True)
    with conn:
        serve(conn)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
