"""The embedded Redis server (no KUBETASK_REDIS_URL): one per data folder, it dies with its
controller, a failed start stops it, and the controller restarts it on the same address and
data if it dies (liveness fails meanwhile); tasks carry on and their progress resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from kubetask import Client
from kubetask.controller.redis_server import FolderInUse, RedisServer, free_port, server_binary
from kubetask.models import ProgressEvent, StateEvent
from tests.servers import ApiServer, redis_processes

ROOT = Path(__file__).resolve().parents[2]


def wait_for(done: Callable[[], bool], what: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def servers(folder: Path) -> list[int]:
    """Live Redis server processes with their data in `folder`."""
    return redis_processes(folder.parent) if folder.name == "redis" else []


def test_a_killed_controller_takes_its_redis_with_it_and_adopted_tasks_stream_on(
    tmp_path: Path,
) -> None:
    api = ApiServer(redis_url=None, data_dir=tmp_path / "api")
    try:
        api.start()
        assert len(redis_processes(api.data_dir)) == 1
        with redis.Redis.from_url(api.redis_url) as client:  # the embedded server's address
            assert client.ping()
        job_id = api.submit("noop", {"steps": 150, "step_s": 0.1})
        api.wait(job_id, {"running"})
        for _ in range(3):
            api.kill()
            wait_for(
                lambda: not redis_processes(api.data_dir),
                "the embedded redis outlived its controller",
            )
            api.start()
            assert len(redis_processes(api.data_dir)) == 1, "two servers on one folder"
        # the adopted task talks to the server that runs now: its progress reaches a live
        # stream, to the last step, and the stream ends with the real terminal event
        with Client(api.base_url) as client:
            events = list(client.job(job_id).events(timeout=60))
        progress = [e for e in events if isinstance(e, ProgressEvent)]
        assert progress[-1].current == 150
        assert isinstance(events[-1], StateEvent)
        assert events[-1].state == "succeeded"
        seqs = [e.seq for e in events]
        assert seqs == sorted(set(seqs))
        api.restart()  # a clean start replays the append-only file: one server's writes
        assert len(redis_processes(api.data_dir)) == 1
        replayed = api.events(job_id)
        assert [e["seq"] for e in replayed] == list(range(1, len(replayed) + 1))
        assert replayed[-1]["state"] == "succeeded"
        assert api.job(job_id)["attempts"] == 1
    finally:
        api.close()
    wait_for(lambda: not redis_processes(api.data_dir), "the embedded redis outlived close()")


def test_a_failed_start_stops_its_redis(tmp_path: Path) -> None:
    # the kubernetes backend with no kubeconfig fails after the embedded Redis started
    api = ApiServer(
        redis_url=None,
        data_dir=tmp_path / "api",
        backend="kubernetes",
        kubeconfig=str(tmp_path / "missing"),
    )
    try:
        with pytest.raises(RuntimeError, match="api exited"):
            api.start()
        assert redis_processes(api.data_dir) == []
        # stopped by the controller (a clean shutdown), not left to the kernel's SIGKILL
        log = (api.data_dir / "redis" / "redis.log").read_text()
        assert "Received SIGTERM" in log
        assert "ready to exit" in log
    finally:
        api.close()


def test_one_server_per_data_folder(tmp_path: Path) -> None:
    folder = tmp_path / "redis"
    first = RedisServer(folder)
    first.start()
    try:
        with redis.Redis.from_url(first.url) as client:
            client.set("first", "1")
        with pytest.raises(FolderInUse):
            RedisServer(folder).start()
        assert servers(folder) == [first.pid]
        with redis.Redis.from_url(first.url) as client:
            assert client.get("first") == b"1"
    finally:
        first.stop()


def test_a_second_server_on_the_same_data_folder_says_so_in_one_line(tmp_path: Path) -> None:
    """`make run` twice: the second refuses before anything starts, naming the folder."""
    api = ApiServer(redis_url=None, data_dir=tmp_path / "api").start()
    try:
        second = subprocess.run(
            [sys.executable, "-m", "kubetask.api", "--port", str(free_port())],
            env=api.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode == 3
        [line] = second.stderr.splitlines()
        assert line.startswith(f"kubetask-server: {api.data_dir / 'redis'} is in use: ")
        assert line.endswith(f"another kubetask-server runs with KUBETASK_DATA_DIR={api.data_dir}")
        assert api.client.get("/healthz").status_code == 200
    finally:
        api.close()


def test_a_new_data_folder_is_its_owners_alone(tmp_path: Path) -> None:
    """Job records, uploads and artifacts: not for the machine's other users to read."""
    data = tmp_path / "new" / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBETASK_")}
    env.update(KUBETASK_DATA_DIR=str(data), KUBETASK_PORT=str(free_port()))
    with (tmp_path / "api.log").open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "kubetask.api"], env=env, stdout=log, stderr=log
        )
    try:
        wait_for((data / "redis").exists, "the server's start", timeout_s=30)
        assert data.stat().st_mode & 0o777 == 0o700
    finally:
        server.terminate()
        server.wait(30)


def test_a_server_left_on_the_folder_is_stopped_and_its_data_kept(tmp_path: Path) -> None:
    folder = tmp_path / "redis"
    folder.mkdir()
    sock = folder / "redis.sock"
    # one started by hand (or by an older kubetask): no lock, the folder's address and data
    by_hand = subprocess.Popen(
        [server_binary(), "--port", "0", "--unixsocket", str(sock), "--dir", str(folder),
         "--appendonly", "yes", "--save", "", "--logfile", str(folder / "by-hand.log")],
    )  # fmt: skip
    try:
        wait_for(sock.exists, "the hand-started server never listened")
        wait_for(lambda: _set(f"unix://{sock}", "by-hand"), "the hand-started server")
        with RedisServer(folder) as server:
            assert by_hand.wait(10) == 0  # SHUTDOWN: its append-only file flushed
            assert servers(folder) == [server.pid]
            with redis.Redis.from_url(server.url) as client:
                assert client.get("by-hand") == b"1"
                client.set("orphaned", "1")
        # one whose owner died where no parent-death signal took it along
        script = (
            "import os, sys, pathlib, kubetask.controller.redis_server as rs\n"
            "rs.die_with_this_process = lambda: None\n"
            "rs.RedisServer(pathlib.Path(sys.argv[1])).start()\n"
            "os._exit(0)\n"
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, "-c", script, str(folder)], check=True, env=env)
        orphan = json.loads((folder / "lock").read_text())["pid"]
        assert servers(folder) == [orphan]
        with RedisServer(folder) as server:
            assert servers(folder) == [server.pid]
            with redis.Redis.from_url(server.url) as client:
                assert client.get("by-hand") == b"1"
                assert client.get("orphaned") == b"1"
        assert servers(folder) == []
    finally:
        if by_hand.poll() is None:
            by_hand.kill()
            by_hand.wait()


def _set(url: str, key: str) -> bool:
    try:
        with redis.Redis.from_url(url) as client:
            return bool(client.set(key, "1"))
    except redis.RedisError:
        return False


def test_a_redis_that_dies_is_restarted_and_tasks_carry_on(tmp_path: Path) -> None:
    api = ApiServer(redis_url=None, data_dir=tmp_path / "api")
    sock = api.data_dir / "redis" / "redis.sock"
    try:
        api.start()
        job_id = api.submit("noop", {"steps": 60, "step_s": 0.1})
        with Client(api.base_url) as client:
            events = client.job(job_id).events(timeout=60)
            before = [next(events) for _ in range(8)]
            assert isinstance(before[-1], ProgressEvent)
            # the server dies, and its address is blocked until the test frees it
            (pid,) = redis_processes(api.data_dir)
            sock.unlink()
            sock.mkdir()
            os.kill(pid, signal.SIGKILL)
            # the watchdog looks every 0.2 s: from when it has seen the death, and while the
            # server cannot come back, /healthz fails
            wait_for(lambda: api.client.get("/healthz").status_code == 503, "healthz failing")
            down = time.monotonic()
            while time.monotonic() - down < 1.5:
                assert api.client.get("/healthz").status_code == 503
                time.sleep(0.1)
            assert api.client.get("/readyz").status_code == 503
            sock.rmdir()
            wait_for(lambda: api.client.get("/healthz").status_code == 200, "not restarted")
            assert len(redis_processes(api.data_dir)) == 1
            after = list(events)
        # the task's publisher reconnected: progress after the outage, to the last step
        progress = [e for e in after if isinstance(e, ProgressEvent)]
        assert progress[0].current > before[-1].current
        assert progress[-1].current == 60
        assert isinstance(after[-1], StateEvent)
        assert after[-1].state == "succeeded"
        assert api.job(job_id)["attempts"] == 1
        seqs = [e.seq for e in [*before, *after]]
        assert seqs == sorted(set(seqs))
    finally:
        api.close()


def test_a_data_path_too_long_for_a_socket_gets_tcp_with_a_password(tmp_path: Path) -> None:
    """Over TCP any local user could connect: the server asks a password, which is in no
    command line (`ps` shows every one) and stays the same across restarts (tasks that
    outlive the controller keep the URL they were given)."""
    folder = tmp_path / ("d" * 120) / "redis"
    server = RedisServer(folder)
    url = server.start()
    try:
        address = urlsplit(url)
        assert (address.scheme, address.hostname) == ("redis", "127.0.0.1")
        assert address.password
        with (
            redis.Redis(port=address.port or 0) as anyone,
            pytest.raises(redis.AuthenticationError),
        ):
            anyone.ping()
        with redis.Redis.from_url(url) as owner:
            assert owner.ping()
        pid = json.loads((folder / "lock").read_text())["pid"]
        assert address.password not in Path(f"/proc/{pid}/cmdline").read_text()
    finally:
        server.stop()
    again = RedisServer(folder)
    assert again.start() == url
    again.stop()
