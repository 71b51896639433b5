"""The core loop with real parts: REST -> task process -> progress via Redis -> state."""

from __future__ import annotations

from pathlib import Path

from tests.servers import ApiServer


def test_datagen_runs_from_queued_to_succeeded_with_live_progress(api: ApiServer) -> None:
    job_id = api.submit("datagen", {"n_per_class": 5, "length": 256})
    events = api.events(job_id)
    states = [e["state"] for e in events if e["type"] == "state"]
    assert states[0] == "queued"
    assert "running" in states
    assert states[-1] == "succeeded"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    progress = [e for e in events if e["type"] == "progress"]
    assert progress, "no progress event reached the stream"
    assert progress[-1]["progress"] == 1.0
    job = api.job(job_id)
    assert job["state"] == "succeeded"
    assert job["result"]["n_signals"] == 30
    dataset = api.data_dir / "artifacts" / job["result"]["dataset"]
    assert Path(dataset).is_file()
