"""The publishing end of the relay figure, run as its own process:

    python -m bench.publisher kubetask|raw REDIS_URL JOB_ID COUNT RATE_HZ

It connects, prints "ready", waits for a line on stdin, then sends COUNT progress events
(RATE_HZ 0: as fast as it can) and exits once all are handed to Redis.

`kubetask` goes the way a task does: `ProgressReporter` (with no batching interval, and a
metric on every event so none is conflated) into `RedisPublisher`, which appends each event to
the job's event log (seq, history, latest) and publishes it. `raw` is the baseline: the same
JSON document, built by the same function, sent with one plain redis-py PUBLISH per event on
the same channel.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime

import redis

from jobs.publisher import RedisPublisher
from jobs.reporter import ProgressReporter, progress_fields
from kubetask import keys


def _pace(start: float, index: int, rate_hz: float) -> None:
    if rate_hz > 0:
        delay = start + index / rate_hz - time.perf_counter()
        if delay > 0:
            time.sleep(delay)


def publish_kubetask(url: str, job_id: str, count: int, rate_hz: float) -> None:
    publisher = RedisPublisher(url, job_id=job_id)
    reporter = ProgressReporter(publisher, job_id=job_id, min_interval_s=0)
    _ready()
    start = time.perf_counter()
    for i in range(1, count + 1):
        _pace(start, i - 1, rate_hz)
        reporter.update(i, count, stage="bench", step=i)
    reporter.close(timeout_s=60)
    publisher.close()


def publish_raw(url: str, job_id: str, count: int, rate_hz: float) -> None:
    client = redis.Redis.from_url(url)
    client.ping()
    channel = keys.progress_channel(job_id)
    _ready()
    start = time.perf_counter()
    for i in range(1, count + 1):
        _pace(start, i - 1, rate_hz)
        fields = progress_fields(
            job_id=job_id,
            current=i,
            total=count,
            stage="bench",
            message=None,
            metrics={"step": i},
            index=None,
            now=datetime.now(UTC),
        )
        client.publish(channel, json.dumps({"seq": i, **fields}, separators=(",", ":")))
    client.close()


def _ready() -> None:
    print("ready", flush=True)
    sys.stdin.readline()


def main(argv: list[str]) -> int:
    mode, url, job_id, count, rate_hz = argv
    run = {"kubetask": publish_kubetask, "raw": publish_raw}[mode]
    run(url, job_id, int(count), float(rate_hz))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
