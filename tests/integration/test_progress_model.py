"""The one progress model end to end (REST -> task processes -> Redis -> SSE and job view):
the job's fraction over stages and workers, never back within an attempt (checked for every
stream the suite reads, tests/progress_check.py), a retry as a new attempt, and a failed job
shown where it stopped."""

from __future__ import annotations

from typing import Any

from tests.servers import ApiServer


def progress_of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "progress"]


def test_a_kind_with_stages_moves_through_them_without_going_back(api: ApiServer) -> None:
    """datagen: generate then save; the job's fraction is not the stage's 100% -> 0%."""
    job_id = api.submit("datagen", {"n_per_class": 5, "length": 256})
    progress = progress_of(api.events(job_id))
    stages = [e["stage"] for e in progress]
    assert stages.index("save") > stages.index("generate")
    fractions = [e["fraction"] for e in progress]
    assert fractions == sorted(fractions)
    generated = [e for e in progress if e["stage"] == "generate" and e["progress"] == 1.0]
    assert generated
    assert all(e["fraction"] < 1.0 for e in generated)  # the save stage is still to come
    assert fractions[-1] == 1.0
    assert {e["attempt"] for e in progress} == {1}


def test_two_workers_make_one_figure_with_each_worker_in_the_view(api: ApiServer) -> None:
    params = {"steps": 6, "step_s": 0.05}
    job_id = api.submit("noop", params, parallelism=2, completions=2)
    progress = progress_of(api.events(job_id))
    assert {e["index"] for e in progress} == {0, 1}
    fractions = [e["fraction"] for e in progress]
    assert fractions == sorted(fractions)  # the workers interleave; the job never goes back
    assert max(fractions[:3]) <= 0.5  # one worker's own progress is half the job's at most
    assert fractions[-1] == 1.0
    job = api.job(job_id)
    assert job["progress"]["fraction"] == 1.0
    assert [(w["index"], w["fraction"]) for w in job["workers"]] == [(0, 1.0), (1, 1.0)]


def test_a_retry_is_a_new_attempt_and_a_failed_job_stays_where_it_stopped(
    api: ApiServer,
) -> None:
    params = {"steps": 3, "fail": "exception", "fail_attempts": 1}
    job_id = api.submit("noop", params, retries=1)
    progress = progress_of(api.events(job_id))
    attempts = [e["attempt"] for e in progress]
    assert attempts == sorted(attempts)
    assert attempts[0] == 1
    assert attempts[-1] == 2
    assert api.job(job_id)["progress"]["fraction"] == 1.0

    failed_id = api.submit("noop", {"steps": 4, "fail": "exception"})
    events = progress_of(api.events(failed_id))
    job = api.job(failed_id)
    assert job["state"] == "failed"
    assert job["progress"]["fraction"] == events[-1]["fraction"] < 1.0
    assert job["progress"]["eta_s"] is None
