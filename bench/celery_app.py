"""The Celery side of the `celery` figure. Runs ONLY in the bench's own Celery virtualenv
(bench/out/celery-venv), never in the project's: the worker loads it as its app
(`celery -A celery_app worker`, with bench/ on PYTHONPATH) and the bench runs it as the
client that measures:

    python bench/celery_app.py roundtrip COUNT | burst COUNT THREADS | progress COUNT RATE_HZ

each printing one JSON document on stdout. The broker and the result backend are the Redis
at $CELERY_BENCH_REDIS_URL. Nothing in the project imports this module (mypy skips it: the
project's venv has no Celery).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from typing import Any

import redis
from celery import Celery, Task

REDIS_URL = os.environ.get("CELERY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/10")
TIMEOUT_S = 120.0


def make_app() -> Celery:
    app = Celery("bench", broker=REDIS_URL, backend=REDIS_URL)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app


app = make_app()


@app.task(name="bench.noop")
def noop() -> None:
    """The no-op task: what `noop` with steps=0 is on the kubetask side."""


@app.task(name="bench.progress", bind=True)
def progress(self: Task, count: int, rate_hz: float) -> int:
    """Report `count` progress states through the result backend (SET + PUBLISH on the
    task's meta channel), paced at `rate_hz`, each stamped when it is made."""
    start = time.perf_counter()
    for i in range(1, count + 1):
        delay = start + (i - 1) / rate_hz - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        self.update_state(state="PROGRESS", meta={"seq": i, "total": count, "at": time.time()})
    return count


# -- the client ------------------------------------------------------------------------------
def roundtrip(count: int) -> dict[str, Any]:
    """apply_async -> the result seen by the client, one task at a time, in ms (after one
    untimed call: this process's connections are open, as the kubetask client's are)."""
    noop.apply_async().get(timeout=TIMEOUT_S)
    samples = []
    for _ in range(count):
        began = time.perf_counter()
        noop.apply_async().get(timeout=TIMEOUT_S)
        samples.append((time.perf_counter() - began) * 1000)
    return {"ms": samples}


def burst(count: int, threads: int) -> dict[str, Any]:
    """`count` no-op tasks sent by `threads` client threads (each its own app: kombu and the
    result consumer are not shared between threads; each sends one untimed task first, to
    open its connections); the seconds until all were enqueued and until all results were
    seen, and this client's CPU seconds over that time."""
    apps = [make_app() for _ in range(threads)]
    ids: list[list[str]] = [[] for _ in range(threads)]
    gate = threading.Barrier(threads + 1)

    def send(k: int) -> None:
        apps[k].send_task("bench.noop").get(timeout=TIMEOUT_S)  # connections open, untimed
        gate.wait()
        for _ in range(count // threads + (k < count % threads)):
            ids[k].append(apps[k].send_task("bench.noop").id)

    workers = [threading.Thread(target=send, args=(k,)) for k in range(threads)]
    for thread in workers:
        thread.start()
    gate.wait()
    cpu_before, began = time.process_time(), time.perf_counter()
    for thread in workers:
        thread.join()
    enqueued = time.perf_counter() - began
    for k, task_ids in enumerate(ids):
        for task_id in task_ids:
            apps[k].AsyncResult(task_id).get(timeout=TIMEOUT_S)
    done = time.perf_counter() - began
    client_cpu = time.process_time() - cpu_before
    return {"count": count, "enqueued_s": enqueued, "done_s": done, "client_cpu_s": client_cpu}


def progress_push(count: int, rate_hz: float) -> dict[str, Any]:
    """Subscribe to the task's result channel (the Redis backend PUBLISHes every state it
    stores there), then run the task; each PROGRESS message's own stamp -> parsed here."""
    task_id = str(uuid.uuid4())
    client = redis.Redis.from_url(REDIS_URL)
    pubsub = client.pubsub()
    pubsub.subscribe(f"celery-task-meta-{task_id}")
    if (pubsub.get_message(timeout=10) or {}).get("type") != "subscribe":
        raise RuntimeError("no subscribe confirmation")
    result = progress.apply_async((count, rate_hz), task_id=task_id)
    latencies: list[float] = []
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=1.0)
        if message is None or message["type"] != "message":
            continue
        now = time.time()
        meta = json.loads(message["data"])
        if meta["status"] == "PROGRESS":
            latencies.append((now - meta["result"]["at"]) * 1000)
        elif meta["status"] in ("SUCCESS", "FAILURE"):
            break
    result.get(timeout=TIMEOUT_S)
    pubsub.close()
    client.close()
    return {"sent": count, "ms": latencies}


def main(argv: list[str]) -> int:
    command, *args = argv
    if command == "roundtrip":
        out = roundtrip(int(args[0]))
    elif command == "burst":
        out = burst(int(args[0]), int(args[1]))
    elif command == "progress":
        out = progress_push(int(args[0]), float(args[1]))
    else:
        raise SystemExit(f"unknown command {command!r}")
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
