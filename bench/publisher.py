"""The publishing end of the relay figure, run as its own process:

    python -m bench.publisher kubetask|raw REDIS_URL JOB_ID COUNT RATE_HZ

It starts (the imports), prints "ready", waits for a line on stdin, then reports COUNT
progress events (RATE_HZ 0: as fast as it can) and exits once all are handed to Redis.

Both modes report the way a task does, through `ProgressReporter` (no batching interval, and
a metric on every event so none is conflated): its background thread sends whatever has
piled up as one pipelined batch. Only the sink differs. `kubetask`: `RedisPublisher`, which
runs the event-log script per event (seq, history, latest progress, PUBLISH). `raw`, the
baseline: the same JSON documents, each with a seq, sent as plain PUBLISH commands.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence

import redis
from pydantic import JsonValue

from kubetask import keys
from kubetask.jobs.publisher import RedisPublisher
from kubetask.jobs.reporter import EventSink, ProgressReporter


class RawPublishSink:
    """Plain pub/sub: one PUBLISH per event, a batch per round trip, nothing kept."""

    def __init__(self, url: str, *, job_id: str) -> None:
        self._client = redis.Redis.from_url(url)
        self._channel = keys.progress_channel(job_id)
        self._seq = 0

    def publish(self, events: Sequence[dict[str, JsonValue]]) -> bool:
        with self._client.pipeline(transaction=False) as pipe:
            for fields in events:
                self._seq += 1
                body = json.dumps({"seq": self._seq, **fields}, separators=(",", ":"))
                pipe.publish(self._channel, body)
            pipe.execute()
        return True

    def close(self) -> None:
        self._client.close()


def report(sink: EventSink, *, job_id: str, count: int, rate_hz: float) -> None:
    """Report `count` events, paced at `rate_hz` (0: unpaced), and wait until all are sent."""
    reporter = ProgressReporter(sink, job_id=job_id, min_interval_s=0)
    start = time.perf_counter()
    for i in range(1, count + 1):
        if rate_hz > 0:
            delay = start + (i - 1) / rate_hz - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        reporter.update(i, count, stage="bench", step=i)
    reporter.close(timeout_s=60)


def publish_kubetask(url: str, job_id: str, count: int, rate_hz: float) -> None:
    publisher = RedisPublisher(url, job_id=job_id)
    _ready()
    report(publisher, job_id=job_id, count=count, rate_hz=rate_hz)
    publisher.close()


def publish_raw(url: str, job_id: str, count: int, rate_hz: float) -> None:
    sink = RawPublishSink(url, job_id=job_id)  # connects on first use, as RedisPublisher does
    _ready()
    report(sink, job_id=job_id, count=count, rate_hz=rate_hz)
    sink.close()


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
