"""The local backend's zygotes: one warm task process per image (zygote.py), and one more for
the image's light kinds (`KindSpec.light`: a fork and an exit of a process that holds no
torch cost ~2 ms instead of ~12), started by the first pod it would fork, then asked to fork
each later pod's task, which it supervises.

A pod is started by a zygote when one is ready for it; otherwise (none yet, still
importing, or gone) plainly, by a new interpreter, while a zygote is (re)started in the
background. A request is answered later (`request`: the event loop never waits for a fork;
`start_pod` waits, for callers without one): the zygote answers in order, with the task's
pid. A zygote found dead is replaced at the next pod. One that refuses is hung up on (it
exits after its last task); one that does not answer within `REPLY_TIMEOUT_S` (wedged), or
dies before it is ready, is killed (the tasks it supervises with it: their pods are lost,
and started again). Either way its unanswered pods are told to start plainly, and no other
is started in its place during `RETRY_AFTER_S`. A controller that stops hangs up on its
zygotes: they go on supervising their tasks. Cost: at most two processes per image in use, their
memory the libraries they imported (trainer: torch, ~0.8 GiB resident here; its light one
~46 MiB), shared copy-on-write with the tasks they fork.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kubetask.controller.backends.base import TaskSpec
from kubetask.controller.backends.zygote import warm_group

log = logging.getLogger("kubetask.local")

ZYGOTE = "kubetask.controller.backends.zygote"
REPLY_TIMEOUT_S = 2.0  # a fork takes ~10 ms
RETRY_AFTER_S = 30.0
LATE_SUPERVISOR_S = 0.5  # how long a killed zygote's last child gets to say who it is
ZYGOTE_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "VIRTUAL_ENV")

OnReply = Callable[[int | None], None]  # the supervisor's pid; None: start the pod plainly


def key(spec: TaskSpec) -> str:
    """Which zygote forks the spec's task: its image's, or the image's light one."""
    group = warm_group(spec.kind)
    return f"{spec.image} (light)" if group is not None and group[1] else spec.image


def module_command(command: Sequence[str], python: str) -> tuple[str, list[str]] | None:
    """(MODULE, ARGS) of `python -m MODULE ARGS...` run by our interpreter; None otherwise
    (a zygote can only become a Python module of its own installation)."""
    if len(command) >= 3 and command[0] in ("python", python) and command[1] == "-m":
        return command[2], list(command[3:])
    return None


@dataclass
class Pending:
    pod_dir: Path
    on_reply: OnReply
    deadline: float


@dataclass
class Zygote:
    key: str  # its image, and "(light)" for the image's light kinds (zygote.warm_group)
    proc: subprocess.Popen[bytes]
    conn: socket.socket  # the controller's end of the pair (non-blocking); the zygote's: the other
    ready: bool = False  # it said so: it has imported what it preloads
    pending: collections.deque[Pending] = field(default_factory=collections.deque)
    loop: asyncio.AbstractEventLoop | None = None  # the loop reading its answers, if any
    timer: asyncio.TimerHandle | None = None


class Zygotes:
    """The zygotes of this controller, by image and warm group (`key`)."""

    def __init__(self, folder: Path, *, python: str, system: Mapping[str, str]) -> None:
        self._folder = folder
        self._python = python
        self._env = {k: system[k] for k in ZYGOTE_ENV if k in system}
        self._warm: dict[str, Zygote] = {}
        self._resting: dict[str, float] = {}  # key -> when a new zygote may start

    def request(
        self,
        spec: TaskSpec,
        pod_dir: Path,
        environment: Mapping[str, str],
        *,
        stdout: int,
        on_reply: OnReply,
    ) -> bool:
        """Ask the spec's zygote to fork the pod's task: it says "started" on `stdout`
        (the zygote closes it once the exit is recorded); `on_reply` hears the answer, from
        the running event loop. False: no zygote can (start it plainly now)."""
        command = module_command(spec.command, self._python)
        zygote = None if command is None else self._ready(spec)
        if zygote is None or command is None:
            return False
        module, args = command
        request = {
            "pod_dir": str(pod_dir),
            "module": module,
            "args": args,
            "env": dict(environment),
        }
        try:
            socket.send_fds(zygote.conn, [json.dumps(request).encode()], [stdout])
        except BlockingIOError:
            return False  # its queue of requests is full: this one starts plainly
        except OSError as exc:
            self._fail(zygote, f"cannot ask it ({exc})")
            return False
        zygote.pending.append(Pending(pod_dir, on_reply, time.monotonic() + REPLY_TIMEOUT_S))
        self._watch(zygote)
        return True

    def start_pod(
        self,
        spec: TaskSpec,
        pod_dir: Path,
        environment: Mapping[str, str],
        *,
        stdout: int,
    ) -> int | None:
        """`request`, waiting for the answer (without an event loop): the supervisor's pid;
        None: start it plainly."""
        answers: list[int | None] = []
        if not self.request(spec, pod_dir, environment, stdout=stdout, on_reply=answers.append):
            return None
        zygote = self._warm[key(spec)]
        while not answers:
            wait = zygote.pending[0].deadline - time.monotonic()
            if wait <= 0 or not select.select([zygote.conn], [], [], wait)[0]:
                self._fail(zygote, f"no answer in {REPLY_TIMEOUT_S:g} s")
            else:
                self._answers(zygote)
        return answers[0]

    def close(self) -> None:
        """Hang up on every zygote: each exits once the tasks it supervises have ended (they
        go on: the next controller adopts them); the pods still unanswered are not told
        (nobody is left to start them)."""
        for zygote in list(self._warm.values()):
            zygote.pending.clear()
            self._discard(zygote, None, rest=False, kill=False)

    def ready(self, spec: TaskSpec) -> bool:
        """True when the spec's zygote is ready (else one starts, if allowed)."""
        return self._ready(spec) is not None

    @property
    def running(self) -> dict[str, int]:
        """key -> the pid of its zygote."""
        return {k: z.proc.pid for k, z in self._warm.items()}

    # -- one zygote ------------------------------------------------------------------
    def _ready(self, spec: TaskSpec) -> Zygote | None:
        """The spec's zygote, connected, if it is ready; else None (and start one)."""
        zygote = self._warm.get(name := key(spec))
        if zygote is None:
            if time.monotonic() >= self._resting.get(name, 0.0):
                self._launch(spec)
            return None
        code = zygote.proc.poll()
        if code is not None:
            ready = zygote.ready
            self._fail(zygote, f"exited with code {code}", rest=not ready)
            if ready:  # it worked: replace it
                self._launch(spec)
            return None
        if not zygote.ready:
            try:
                said = zygote.conn.recv(4096)
            except BlockingIOError:
                return None  # still importing
            except OSError as exc:
                self._fail(zygote, f"no word of being ready ({exc})")
                return None
            try:
                zygote.ready = "ready" in json.loads(said or b"{}")
            except ValueError as exc:
                self._fail(zygote, f"no word of being ready ({exc})")
                return None
            if not zygote.ready:
                self._fail(zygote, "it hung up while importing")
                return None
        return zygote

    def _answers(self, zygote: Zygote) -> None:
        """Read the zygote's answers so far; each goes to its pod (they come in order)."""
        while zygote.pending and self._warm.get(zygote.key) is zygote:
            try:
                said = zygote.conn.recv(4096)
            except BlockingIOError:
                return
            except OSError as exc:
                self._fail(zygote, f"no answer ({exc})")
                return
            try:
                reply = json.loads(said or b"{}")
            except ValueError as exc:
                self._fail(zygote, f"a garbled answer ({exc})")
                return
            if "pid" not in reply:  # it refused: no more requests, its tasks go on
                self._fail(zygote, str(reply.get("error", "it hung up")), kill=False)
                return
            zygote.pending.popleft().on_reply(int(reply["pid"]))
        if self._warm.get(zygote.key) is zygote:
            self._watch(zygote)

    def _watch(self, zygote: Zygote) -> None:
        """Within an event loop: read the answers as they come, and time the oldest out."""
        if zygote.loop is None:
            try:
                zygote.loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # start_pod waits for the answer itself
            zygote.loop.add_reader(zygote.conn.fileno(), self._answers, zygote)
        if zygote.timer is not None:
            zygote.timer.cancel()
            zygote.timer = None
        if zygote.pending:
            zygote.timer = zygote.loop.call_at(
                zygote.loop.time() + max(0.0, zygote.pending[0].deadline - time.monotonic()),
                self._check_answered,
                zygote,
            )

    def _check_answered(self, zygote: Zygote) -> None:
        """The oldest request's time is up: read what came, then fail the zygote if that
        request is still unanswered. A timer may fire a little before its time by
        `time.monotonic()` (uvloop's clock counts whole milliseconds, read once per turn
        of the loop): then it is set again for the rest."""
        zygote.timer = None
        self._answers(zygote)
        if self._warm.get(zygote.key) is not zygote:
            return
        if zygote.pending and zygote.pending[0].deadline <= time.monotonic():
            self._fail(zygote, f"no answer in {REPLY_TIMEOUT_S:g} s")
        else:
            self._watch(zygote)

    def _launch(self, spec: TaskSpec) -> None:
        name = key(spec)
        self._folder.mkdir(parents=True, exist_ok=True)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with (self._folder / "zygotes.log").open("ab") as output:
                proc = subprocess.Popen(
                    [self._python, "-m", ZYGOTE, str(theirs.fileno()), spec.kind],
                    env={**self._env, "HOME": str(self._folder)},
                    cwd=self._folder,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    pass_fds=[theirs.fileno()],
                )
        except OSError as exc:
            ours.close()
            log.warning("cannot start a zygote for %s: %s", name, exc)
            self._resting[name] = time.monotonic() + RETRY_AFTER_S
            return
        finally:
            theirs.close()
        ours.setblocking(False)
        self._warm[name] = Zygote(name, proc, ours)
        log.info("starting a zygote for %s (pid %d)", name, proc.pid)

    def _fail(self, zygote: Zygote, why: str, *, rest: bool = True, kill: bool = True) -> None:
        """Kill the zygote (and so the tasks it supervises) or, with `kill` False, hang up on
        it; its unanswered pods hear that it forked them (the first may have been forked
        before it stopped answering) or that they start plainly."""
        self._discard(zygote, why, rest=rest, kill=kill)
        first = True
        while zygote.pending:
            pending = zygote.pending.popleft()
            pid = self._late_supervisor(pending.pod_dir) if first else None
            first = False
            pending.on_reply(pid)

    def _discard(
        self, zygote: Zygote, why: str | None, *, rest: bool = True, kill: bool = True
    ) -> None:
        """Forget the zygote: after this it forks nothing more. `kill`: kill it now and wait
        for it (its tasks die with it); else hang up, and it exits after its last task.
        `rest`: start no other for its key for a while."""
        if zygote.conn.fileno() == -1:
            return  # discarded already
        if self._warm.get(zygote.key) is zygote:
            del self._warm[zygote.key]
        if why is not None:
            log.warning("zygote of %s: %s; pods start plainly for now", zygote.key, why)
        if why is not None and rest:
            self._resting[zygote.key] = time.monotonic() + RETRY_AFTER_S
        if zygote.timer is not None:
            zygote.timer.cancel()
        if zygote.loop is not None and not zygote.loop.is_closed():
            zygote.loop.remove_reader(zygote.conn.fileno())
        zygote.conn.close()
        if kill:
            with contextlib.suppress(ProcessLookupError):
                zygote.proc.send_signal(signal.SIGKILL)
            zygote.proc.wait()
        else:  # reaped whenever it exits
            threading.Thread(target=zygote.proc.wait, name="zygote-reaper", daemon=True).start()

    @staticmethod
    def _late_supervisor(pod_dir: Path) -> int | None:
        """After a request without an answer: the task the zygote may have forked before
        it stopped answering (it writes shim.json first thing), so that no pod starts twice."""
        deadline = time.monotonic() + LATE_SUPERVISOR_S
        while True:
            with contextlib.suppress(OSError, ValueError, KeyError):
                return int(json.loads((pod_dir / "shim.json").read_text())["pid"])
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.01)
