"""The local backend's zygotes: one warm task process per image (zygote.py), started by the
first pod of that image, then asked to fork each later pod's supervisor.

A pod is started by a zygote when one is ready for its image; otherwise (none yet, still
importing, or gone) plainly, by a new interpreter, while a zygote is (re)started in the
background. A zygote found dead is replaced at the next pod; one that refuses, does not
answer within `REPLY_TIMEOUT_S` (wedged), or dies before it is ready is killed, and no other
is started for its image during `RETRY_AFTER_S`. Cost: one process per image
in use, its memory the libraries it imported (trainer: torch, ~0.5 GiB resident here), shared
copy-on-write with the tasks it forks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import select
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kubetask.controller.backends.base import TaskSpec

log = logging.getLogger("kubetask.local")

ZYGOTE = "kubetask.controller.backends.zygote"
REPLY_TIMEOUT_S = 2.0  # a fork takes ~10 ms; the event loop waits for it
RETRY_AFTER_S = 30.0
LATE_SUPERVISOR_S = 0.5  # how long a killed zygote's last child gets to say who it is
ZYGOTE_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "VIRTUAL_ENV")


def module_command(command: Sequence[str], python: str) -> tuple[str, list[str]] | None:
    """(MODULE, ARGS) of `python -m MODULE ARGS...` run by our interpreter; None otherwise
    (a zygote can only become a Python module of its own installation)."""
    if len(command) >= 3 and command[0] in ("python", python) and command[1] == "-m":
        return command[2], list(command[3:])
    return None


@dataclass
class Zygote:
    image: str
    proc: subprocess.Popen[bytes]
    conn: socket.socket  # the controller's end of the pair; the zygote holds the other
    ready: bool = False  # it said so: it has imported what it preloads


class Zygotes:
    """The zygotes of this controller, by image."""

    def __init__(self, folder: Path, *, python: str, system: Mapping[str, str]) -> None:
        self._folder = folder
        self._python = python
        self._env = {k: system[k] for k in ZYGOTE_ENV if k in system}
        self._warm: dict[str, Zygote] = {}
        self._resting: dict[str, float] = {}  # image -> when a new zygote may start

    def start_pod(
        self,
        spec: TaskSpec,
        pod_dir: Path,
        environment: Mapping[str, str],
        *,
        stdout: int,
        log_fd: int,
    ) -> int | None:
        """The pid of the pod's supervisor, forked by its image's zygote (which writes its
        stdout and its log to the descriptors given); None: start it plainly."""
        command = module_command(spec.command, self._python)
        zygote = None if command is None else self._ready(spec)
        if zygote is None or command is None:
            return None
        module, args = command
        request = {
            "pod_dir": str(pod_dir),
            "grace_s": spec.grace_s,
            "module": module,
            "args": args,
            "env": dict(environment),
        }
        try:
            socket.send_fds(zygote.conn, [json.dumps(request).encode()], [stdout, log_fd])
            reply = json.loads(zygote.conn.recv(4096) or b"{}")
        except (OSError, ValueError) as exc:
            self._discard(zygote, f"no answer ({exc or type(exc).__name__})")
            return self._late_supervisor(pod_dir)
        if "pid" not in reply:
            self._discard(zygote, str(reply.get("error", "it hung up")))
            return self._late_supervisor(pod_dir)
        return int(reply["pid"])

    def close(self) -> None:
        """Stop every zygote (the supervisors they forked go on: they are their own)."""
        for zygote in list(self._warm.values()):
            self._discard(zygote, None, rest=False)

    def ready(self, spec: TaskSpec) -> bool:
        """True when a zygote of the spec's image is ready (else one starts, if allowed)."""
        return self._ready(spec) is not None

    @property
    def running(self) -> dict[str, int]:
        """image -> the pid of its zygote."""
        return {image: z.proc.pid for image, z in self._warm.items()}

    # -- one zygote ------------------------------------------------------------------
    def _ready(self, spec: TaskSpec) -> Zygote | None:
        """The image's zygote, connected, if it is ready; else None (and start one)."""
        zygote = self._warm.get(spec.image)
        if zygote is None:
            if time.monotonic() >= self._resting.get(spec.image, 0.0):
                self._launch(spec)
            return None
        code = zygote.proc.poll()
        if code is not None:
            self._discard(zygote, f"exited with code {code}", rest=not zygote.ready)
            if zygote.ready:  # it worked: replace it
                self._launch(spec)
            return None
        if not zygote.ready:
            if not select.select([zygote.conn], [], [], 0)[0]:
                return None  # still importing
            try:
                zygote.ready = "ready" in json.loads(zygote.conn.recv(4096) or b"{}")
            except (OSError, ValueError) as exc:
                self._discard(zygote, f"no word of being ready ({exc})")
                return None
            if not zygote.ready:
                self._discard(zygote, "it hung up while importing")
                return None
        return zygote

    def _launch(self, spec: TaskSpec) -> None:
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
            log.warning("cannot start a zygote for image %s: %s", spec.image, exc)
            self._resting[spec.image] = time.monotonic() + RETRY_AFTER_S
            return
        finally:
            theirs.close()
        ours.settimeout(REPLY_TIMEOUT_S)
        self._warm[spec.image] = Zygote(spec.image, proc, ours)
        log.info("starting a zygote for image %s (pid %d)", spec.image, proc.pid)

    def _discard(self, zygote: Zygote, why: str | None, *, rest: bool = True) -> None:
        """Kill the zygote and wait for it: after this it forks nothing more. `rest`: start
        no other for its image for a while."""
        self._warm.pop(zygote.image, None)
        if why is not None:
            log.warning("zygote of image %s: %s; pods start plainly for now", zygote.image, why)
        if why is not None and rest:
            self._resting[zygote.image] = time.monotonic() + RETRY_AFTER_S
        zygote.conn.close()
        with contextlib.suppress(ProcessLookupError):
            zygote.proc.send_signal(signal.SIGKILL)
        zygote.proc.wait()

    @staticmethod
    def _late_supervisor(pod_dir: Path) -> int | None:
        """After a request without an answer: the supervisor the zygote may have forked
        before it died (it writes shim.json at once), so that no pod starts twice."""
        deadline = time.monotonic() + LATE_SUPERVISOR_S
        while True:
            with contextlib.suppress(OSError, ValueError, KeyError):
                return int(json.loads((pod_dir / "shim.json").read_text())["pid"])
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.01)
