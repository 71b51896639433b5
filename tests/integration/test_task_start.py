"""A task starts light: `python -m kubetask.jobs noop` imports neither redis-py (nor its
asyncio client) nor the SDK, the API's contracts, the server, the ML libraries, the artifact
store or another kind's runner, and builds only the models it uses; its publisher speaks to
a real Redis over TCP (with a database number and a password) and a unix socket, and through
redis-py for the URLs it leaves to it."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from pydantic import JsonValue

from kubetask import eventlog, keys
from kubetask.controller.redis_server import RedisServer, free_port
from kubetask.jobs.publisher import OUTCOME_TTL_S, RedisPublisher
from tests.integration.task_process import finish, run_task, start_task, task_command

NOT_IN_A_TASK = (
    "redis",
    "redis.asyncio",
    "asyncio",
    "httpx",
    "typer",
    "rich",
    "fastapi",
    "starlette",
    "numpy",
    "torch",
    "sdv",
    "kubernetes",
    "kubetask.client",
    "kubetask.aio",
    "kubetask.errors",
    "kubetask.models",  # the API's contracts: a task builds its outcome (kubetask.outcome)
    "pydantic.networks",
    # on a folder store: neither the object store nor staging (only with
    # KUBETASK_ARTIFACTS_URL); no runner but its own
    "kubetask.storage",
    "kubetask.storage.s3",
    "kubetask.jobs.staging",
    "optuna",
    "kubetask.jobs.kinds.train",
    "kubetask.jobs.kinds.datagen",
)

# Runs the task's main as `python -m kubetask.jobs` would, then leaves what the process
# imported and which models it built.
PROBE = """
import json, sys
from kubetask.jobs.runtime import main
code = main(sys.argv[2:])
loaded = sorted(sys.modules)
from kubetask import models
from kubetask.jobs import params
built = sorted(
    name
    for module in (models, params)
    for name, value in vars(module).items()
    if getattr(value, "__pydantic_complete__", False)
)
with open(sys.argv[1], "w") as out:
    json.dump({"modules": loaded, "built": built}, out)
sys.exit(code)
"""


def test_a_noop_task_imports_only_what_it_uses(redis_url: str, tmp_path: Path) -> None:
    job_id = uuid.uuid4().hex[:16]
    argv, task_env, log = task_command(
        "noop", {}, job_id=job_id, root=tmp_path, redis_url=redis_url
    )
    probe = tmp_path / "probe.json"
    run = subprocess.run(
        [sys.executable, "-c", PROBE, str(probe), argv[-1]],
        env=task_env,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(log.read_text())["ok"] is True
    with redis.Redis.from_url(redis_url) as client:  # it did publish, without redis-py
        assert client.get(keys.outcome(job_id, 0)) is not None
        assert client.zcard(keys.history(job_id)) >= 1
    seen = json.loads(probe.read_text())
    assert sorted(set(NOT_IN_A_TASK) & set(seen["modules"])) == []
    # the outcome's models and the kind's own params, not the API's or other kinds'
    assert "Outcome" in seen["built"]
    assert "NoopParams" in seen["built"]
    assert not {"JobView", "JobPage", "HpoParams", "TrainParams"} & set(seen["built"])


def events(job_id: str) -> list[dict[str, JsonValue]]:
    return [
        {"type": "progress", "job_id": job_id, "current": step, "total": 3, "stage": "run"}
        for step in (1, 2, 3)
    ]


def published(url: str, job_id: str) -> tuple[list[int], bytes | None]:
    with redis.Redis.from_url(url) as client:
        history = client.zrange(keys.history(job_id), 0, -1)
        outcome = client.get(keys.outcome(job_id, 0))
        ttl = client.ttl(keys.outcome(job_id, 0))
    assert outcome is None or 0 < ttl <= OUTCOME_TTL_S
    return [json.loads(item)["seq"] for item in history], outcome


def publish_all(url: str) -> str:
    job_id = uuid.uuid4().hex[:16]
    worker = eventlog.WorkerRun(run="r", started=0.0)
    publisher = RedisPublisher(url, job_id=job_id, worker=worker)
    try:
        assert publisher.publish(events(job_id))
        assert publisher.publish([{"type": "log", "job_id": job_id, "message": "hello"}])
        assert publisher.put_outcome('{"ok":true}', index=0)
    finally:
        publisher.close()
    return job_id


@pytest.mark.parametrize("database", [0, 5])
def test_the_publisher_over_tcp_in_any_database(redis_url: str, database: int) -> None:
    url = redis_url.rsplit("/", 1)[0] + f"/{database}"
    job_id = publish_all(url)
    assert published(url, job_id) == ([1, 2, 3, 4], b'{"ok":true}')


def test_the_publisher_leaves_other_urls_to_redis_py(redis_url: str) -> None:
    url = redis_url.rsplit("/", 1)[0] + "/6?socket_keepalive=true"
    job_id = publish_all(url)
    assert published(url.partition("?")[0], job_id) == ([1, 2, 3, 4], b'{"ok":true}')


@pytest.fixture
def socket_redis() -> Iterator[RedisServer]:
    folder = Path("/tmp") / f"kt-resp-{uuid.uuid4().hex[:8]}"  # a short socket path
    server = RedisServer(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_the_publisher_over_a_unix_socket_with_a_password(socket_redis: RedisServer) -> None:
    assert socket_redis.url.startswith("unix://")
    with redis.Redis.from_url(socket_redis.url) as admin:
        admin.config_set("requirepass", "s@cret")
        try:
            url = socket_redis.url.replace("unix://", "unix://:s%40cret@")
            job_id = publish_all(url)
            with redis.Redis.from_url(url) as client:
                assert client.get(keys.outcome(job_id, 0)) == b'{"ok":true}'
                assert client.zcard(keys.history(job_id)) == 4
            wrong = RedisPublisher(url.replace("s%40cret", "wrong"), job_id=job_id)
            assert not wrong.publish(events(job_id))  # refused: logged, dropped, no raise
            assert wrong.dropped == 3
            wrong.close()
        finally:
            with redis.Redis.from_url(socket_redis.url, password="s@cret") as client:
                client.config_set("requirepass", "")


def test_refused_events_are_counted_and_the_outcome_still_stored(redis_url: str) -> None:
    job_id = uuid.uuid4().hex[:16]
    with redis.Redis.from_url(redis_url) as client:
        client.set(keys.outcome(job_id, 0), "x")
        client.hset(keys.history(job_id), "not", "a sorted set")  # the script's ZADD fails
    publisher = RedisPublisher(redis_url, job_id=job_id)
    try:
        assert not publisher.publish(events(job_id))
        assert publisher.dropped == 3
        assert publisher.put_outcome('{"ok":false}', index=0)
    finally:
        publisher.close()
    with redis.Redis.from_url(redis_url) as client:
        assert client.get(keys.outcome(job_id, 0)) == b'{"ok":false}'


def test_no_server_drops_events_and_the_task_carries_on() -> None:
    publisher = RedisPublisher(f"redis://127.0.0.1:{free_port()}/0", job_id="j", retry_after_s=60.0)
    assert not publisher.publish([{"type": "log", "job_id": "j", "message": "m"}])
    assert not publisher.publish([{"type": "log", "job_id": "j", "message": "m"}])
    assert publisher.dropped == 2
    assert not publisher.put_outcome("{}", index=0, attempts=1)
    publisher.close()


@pytest.mark.parametrize(
    ("params", "code", "last"),
    [
        ({"fail": "exception"}, 1, "RuntimeError: failure requested by params"),
        ({"fail": "exit"}, 3, "SystemExit: the task exited with code 3"),
    ],
)
def test_a_failed_tasks_log_ends_in_one_line_saying_how_it_ended(
    tmp_path: Path, params: dict[str, JsonValue], code: int, last: str
) -> None:
    """The traceback's own last line is not repeated: the summary adds the exit code."""
    run = run_task("noop", params, job_id="0000000000abcdef", root=tmp_path)
    lines = run.stderr.strip().splitlines()
    assert run.exit_code == code
    assert lines[-1] == f"task failed, exit code {code}: {last}"
    assert lines.count(last) <= 1, lines  # the traceback's line, if any; no repeat of it


def test_a_second_sigterm_changes_nothing_the_first_did_not(tmp_path: Path) -> None:
    """A deadline and a cancel at once, or the supervisor and the controller each: the
    task stops once, 143, its outcome written, one traceback-free line saying so."""
    process, log = start_task(
        "noop", {"steps": 200, "step_s": 0.05}, job_id="00000sigterm2", root=tmp_path
    )
    time.sleep(1.5)  # its work under way
    process.send_signal(signal.SIGTERM)
    time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    run = finish(process, log)
    assert run.exit_code == 143
    assert run.outcome["error"]["type"] == "TaskTerminated"
    assert run.stderr.count("Traceback") == 0, run.stderr


def test_a_server_that_hangs_holds_the_outcome_one_try_only() -> None:
    """Its answer never comes: the task's exit (and its slot) waits one timeout, not three."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        publisher = RedisPublisher(f"redis://127.0.0.1:{port}/0", job_id="j")
        started = time.monotonic()
        assert not publisher.put_outcome("{}", index=0)
        assert time.monotonic() - started < 4  # one 2 s try (three took ~7 s)
        publisher.close()
