"""The event log's progress script in a real Redis: it tallies a job's figure over its workers
exactly as kubetask/progress.py's `JobTally` (its reference) says, atomically."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import JsonValue

from kubetask import eventlog, keys
from kubetask.jobs.publisher import RedisPublisher
from kubetask.models import ProgressEvent
from kubetask.progress import JobTally

T0 = 1_760_000_000.0


@pytest.fixture(scope="module")
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url, decode_responses=True) as connection:
        yield connection


def fields(job_id: str, index: int, fraction: float, now: float) -> dict[str, JsonValue]:
    return {
        "type": "progress",
        "job_id": job_id,
        "timestamp": datetime.fromtimestamp(now, UTC).isoformat(),
        "current": 1,
        "total": 2,
        "progress": 0.5,
        "stage": "work",
        "message": None,
        "metrics": {},
        "index": index,
        "worker_fraction": fraction,
    }


reports = st.lists(
    st.tuples(
        st.integers(0, 2),  # index
        st.sampled_from(["a", "b"]),  # run
        st.floats(0, 1),  # the worker's own fraction
        st.floats(0, 30),  # seconds after the run started
    ),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(reports)
def test_the_script_tallies_as_the_reference_model(
    client: redis.Redis, steps: list[tuple[int, str, float, float]]
) -> None:
    job_id = uuid.uuid4().hex[:16]
    script = client.register_script(eventlog.PROGRESS_SCRIPT)
    tally = JobTally()
    for index, run, fraction, after in steps:
        started = T0 + (100.0 if run == "b" else 0.0)
        worker = eventlog.WorkerRun(run=f"{index}{run}", started=started, completions=3)
        args = eventlog.progress_args(fields(job_id, index, fraction, started + after), worker)
        script(keys=eventlog.progress_keys(job_id), args=args)
        tally, figure = tally.record(
            index=index,
            run=f"{index}{run}",
            worker_fraction=fraction,
            started=started,
            completions=3,
            now=started + after,
        )
        event = ProgressEvent.model_validate_json(client.get(keys.latest_progress(job_id)) or "")
        assert event.attempt == figure.attempt
        assert event.fraction == pytest.approx(figure.fraction, abs=1e-6)
        if figure.eta_s is None:
            assert event.eta_s is None
        else:
            assert event.eta_s == pytest.approx(figure.eta_s, abs=0.11)


def test_two_workers_interleaving_never_take_the_job_back(redis_url: str) -> None:
    job_id = uuid.uuid4().hex[:16]
    publishers = [
        RedisPublisher(
            redis_url,
            job_id=job_id,
            worker=eventlog.WorkerRun(run=f"r{i}", started=T0, completions=2),
        )
        for i in range(2)
    ]
    for step in range(1, 6):
        for index, publisher in enumerate(publishers):
            own = min(step / (5 - index), 1.0)  # the second worker is faster
            assert publisher.publish([fields(job_id, index, own, T0 + step)])
    with redis.Redis.from_url(redis_url, decode_responses=True) as connection:
        history = connection.zrange(keys.history(job_id), 0, -1)
    figures = [json.loads(item)["fraction"] for item in history]
    assert figures == sorted(figures)
    assert figures[-1] == 1.0
    assert [json.loads(item)["attempt"] for item in history] == [1] * 10
    for publisher in publishers:
        publisher.close()


def test_progress_after_the_jobs_end_expires_with_its_other_keys(client: redis.Redis) -> None:
    """The final state gave the job's keys their expiry; a task's progress written just
    after it (a cancel, a deadline) made `latest` forever (a plain SET) and, first of its
    kind, the tally keys without one: they outlived the record."""
    job_id = uuid.uuid4().hex[:16]
    script = client.register_script(eventlog.PROGRESS_SCRIPT)
    worker = eventlog.WorkerRun(run="r", started=T0)
    report = eventlog.progress_args(fields(job_id, 0, 0.5, T0 + 1), worker)
    script(keys=eventlog.progress_keys(job_id), args=report)
    assert client.ttl(keys.latest_progress(job_id)) == -1  # running: no expiry yet
    client.delete(keys.progress_tally(job_id), keys.progress_workers(job_id))
    for key in (keys.seq(job_id), keys.history(job_id), keys.latest_progress(job_id)):
        client.expire(key, 600)  # what the final state's write does
    script(keys=eventlog.progress_keys(job_id), args=report)
    for key in eventlog.progress_keys(job_id):
        if key != keys.progress_channel(job_id):
            assert 0 < client.ttl(key) <= 600, key
