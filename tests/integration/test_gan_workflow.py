"""The GAN workflow for one machine, as a user runs it: three requests, seed -> train ->
generate, each a real task process (SDV on tiny data), with per-epoch losses on the stream
and a clear error when a step's input is missing."""

from __future__ import annotations

import pandas as pd

from tests.servers import ApiServer


def test_seed_train_generate_in_three_requests(api: ApiServer) -> None:
    machine = {"machine_id": "press-7"}
    seed = api.wait(api.submit("gan-seed", {**machine, "rows": 200}))
    assert seed["state"] == "succeeded", seed
    assert seed["result"]["seed"] == "gan/press-7/seed.csv"

    train_id = api.submit("gan-train", {**machine, "epochs": 3, "batch_size": 50})
    events = api.events(train_id, timeout_s=90)
    train = api.job(train_id)
    assert train["state"] == "succeeded", train
    epochs = [e for e in events if e["type"] == "progress" and e["stage"] == "train"]
    assert [e["metrics"]["epoch"] for e in epochs] == [1, 2, 3]
    assert all(isinstance(e["metrics"]["loss"], float) for e in epochs)
    assert train["result"]["synthesizer"] == "gan/press-7/synthesizer.pkl"
    assert train["result"]["epochs_reported"] == 3

    sizes = {"train_rows": 120, "val_rows": 30, "test_rows": 20}
    generate = api.wait(api.submit("gan-generate", {**machine, **sizes}), timeout_s=90)
    assert generate["state"] == "succeeded", generate
    result = generate["result"]
    assert result["rows"] == {"train": 120, "val": 30, "test": 20}
    assert 0.0 < result["quality_score"] <= 1.0
    assert set(result["quality_properties"]) == {"Column Shapes", "Column Pair Trends"}
    seed_columns = list(pd.read_csv(api.data_dir / "artifacts" / seed["result"]["seed"]).columns)
    for split, path in result["files"].items():
        frame = pd.read_csv(api.data_dir / "artifacts" / path)
        assert len(frame) == result["rows"][split]
        assert list(frame.columns) == seed_columns
    stages = [e["stage"] for e in api.events(generate["id"]) if e["type"] == "progress"]
    assert {"load", "sample", "evaluate"} <= set(stages)


def test_a_missing_input_names_the_kind_that_makes_it(api: ApiServer) -> None:
    untrained = api.submit("gan-generate", {"machine_id": "never-trained"})
    unseeded = api.submit("gan-train", {"machine_id": "never-seeded"})
    for job_id, missing, producer in (
        (untrained, "gan/never-trained/synthesizer.pkl", "gan-train"),
        (unseeded, "gan/never-seeded/seed.csv", "gan-seed"),
    ):
        job = api.wait(job_id, timeout_s=60)
        assert job["state"] == "failed"
        assert job["error"]["type"] == "TaskError"
        assert missing in job["error"]["message"]
        assert f"`{producer}`" in job["error"]["suggestion"]
