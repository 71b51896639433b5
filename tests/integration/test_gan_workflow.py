"""The GAN workflow as a user runs it: three requests chained by `job:<id>`, seed -> train ->
generate, each a real task process (SDV on tiny data) writing only under its own job folder,
with per-epoch losses on the stream; a second fit on the same seed data replaces nothing;
a missing input names the kind that makes it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from kubetask.jobs.context import TaskContext
from kubetask.jobs.errors import InvalidParams
from kubetask.jobs.kinds import gan_generate
from kubetask.jobs.params import GanGenerateParams
from kubetask.jobs.reporter import ProgressReporter
from tests.servers import ApiServer


def test_seed_train_generate_chained_by_job_ids(api: ApiServer) -> None:
    artifacts = api.data_dir / "artifacts"
    seed = api.wait(api.submit("gan-seed", {"machine_id": "press-7", "rows": 200}))
    assert seed["state"] == "succeeded", seed
    assert seed["result"]["seed"] == f"{seed['id']}/seed.csv"

    fit = {"dataset": f"job:{seed['id']}", "batch_size": 50}
    train_id = api.submit("gan-train", {**fit, "epochs": 3})
    events = api.events(train_id, timeout_s=90)
    train = api.job(train_id)
    assert train["state"] == "succeeded", train
    assert train["request"]["params"]["dataset"] == seed["result"]["seed"]
    epochs = [e for e in events if e["type"] == "progress" and e["stage"] == "train"]
    assert [e["metrics"]["epoch"] for e in epochs] == [1, 2, 3]
    assert all(isinstance(e["metrics"]["loss"], float) for e in epochs)
    assert train["result"]["synthesizer"] == f"{train_id}/synthesizer.pkl"
    assert train["result"]["seed"] == seed["result"]["seed"]
    assert train["result"]["epochs_reported"] == 3
    fitted = (artifacts / train["result"]["synthesizer"]).read_bytes()

    again = api.wait(api.submit("gan-train", {**fit, "epochs": 1}), timeout_s=90)
    assert again["state"] == "succeeded", again
    assert again["result"]["synthesizer"] == f"{again['id']}/synthesizer.pkl"
    assert (artifacts / train["result"]["synthesizer"]).read_bytes() == fitted  # untouched

    sizes = {"train_rows": 120, "val_rows": 30, "test_rows": 20}
    generate_id = api.submit("gan-generate", {"model": f"job:{train_id}", **sizes})
    generate = api.wait(generate_id, timeout_s=90)
    assert generate["state"] == "succeeded", generate
    params = generate["request"]["params"]
    assert params["model"] == train["result"]["synthesizer"]
    assert params["dataset"] == seed["result"]["seed"]  # what it was fitted on, filled in
    result = generate["result"]
    assert result["rows"] == {"train": 120, "val": 30, "test": 20}
    assert 0.0 < result["quality_score"] <= 1.0
    assert set(result["quality_properties"]) == {"Column Shapes", "Column Pair Trends"}
    seed_columns = list(pd.read_csv(artifacts / seed["result"]["seed"]).columns)
    for split, path in result["files"].items():
        assert path == f"{generate['id']}/{split}.csv"
        frame = pd.read_csv(artifacts / path)
        assert len(frame) == result["rows"][split]
        assert list(frame.columns) == seed_columns
    progress = [e for e in api.events(generate["id"]) if e["type"] == "progress"]
    assert {"load", "sample", "evaluate"} <= {e["stage"] for e in progress}
    # each stage counts its own steps (3 splits to sample, 1 report): sampled, the job's
    # fraction is the weights' (load 1 + sample 7) / 10, not sample's 3 of 4 (0.625 was)
    sampled = [e for e in progress if e["stage"] == "sample"][-1]
    assert (sampled["current"], sampled["total"]) == (3, 3)
    assert sampled["worker_fraction"] == pytest.approx(0.8)

    # the seed decides the rows: the same seed draws them again, another seed others
    def rows(seed: int) -> bytes:
        params = {"model": f"job:{train_id}", "train_rows": 20, "val_rows": 0, "test_rows": 0}
        job = api.wait(api.submit("gan-generate", {**params, "seed": seed, "quality": False}))
        assert job["state"] == "succeeded", job
        path: str = job["result"]["files"]["train"]
        return (artifacts / path).read_bytes()

    first = rows(1)
    assert rows(1) == first
    assert rows(2) != first


def test_references_are_checked_at_submit_and_a_missing_file_names_its_kind(
    api: ApiServer,
) -> None:
    response = api.client.post("/v1/jobs", json={"kind": "gan-generate", "params": {}})
    assert response.status_code == 422
    assert "params.model" in [e["field"] for e in response.json()["errors"]]
    datagen = api.wait(api.submit("datagen", {"n_per_class": 2, "length": 64}))
    response = api.client.post(
        "/v1/jobs", json={"kind": "gan-train", "params": {"dataset": f"job:{datagen['id']}"}}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["msg"].endswith("expected a gan-seed job")

    # a synthesizer is unpickled, which runs code: only a gan-train job's is taken
    uploaded = api.client.post(
        "/v1/jobs", json={"kind": "gan-generate", "params": {"model": "uploads/default/x.pkl"}}
    )
    assert uploaded.status_code == 422
    assert [(e["field"], e["type"]) for e in uploaded.json()["errors"]] == [
        ("params.model", "job_output_only")
    ]
    unseeded = api.submit("gan-train", {"dataset": "uploads/default/none.csv"})
    for job_id, missing, producer in ((unseeded, "uploads/default/none.csv", "gan-seed"),):
        job = api.wait(job_id, timeout_s=60)
        assert job["state"] == "failed"
        assert job["error"]["type"] == "TaskError"
        assert missing in job["error"]["message"]
        assert f"`{producer}`" in job["error"]["suggestion"]


def test_gan_train_without_seed_data_makes_its_own(api: ApiServer) -> None:
    train = api.wait(api.submit("gan-train", {"epochs": 1, "batch_size": 50}), timeout_s=90)
    assert train["state"] == "succeeded", train
    assert train["result"]["seed"] == f"{train['id']}/seed.csv"
    assert train["result"]["rows"] == 400  # gan-seed's default


def test_the_task_itself_never_unpickles_an_upload(tmp_path: Path) -> None:
    """The second line behind the API's check: handed an upload's path anyway, gan-generate
    refuses it as invalid params (exit 2) before it opens anything."""
    (tmp_path / "uploads/t").mkdir(parents=True)
    (tmp_path / "uploads/t/x.pkl").write_bytes(b"not a synthesizer")
    reporter = ProgressReporter(None, job_id="0000000000abcdef")
    where = TaskContext(
        job_id="0000000000abcdef", index=0, artifacts_root=tmp_path, reporter=reporter
    )
    params = GanGenerateParams.model_validate({"model": "uploads/t/x.pkl", "quality": False})
    with pytest.raises(InvalidParams, match="an upload is never unpickled"):
        gan_generate.run(params, where)


def test_seed_data_no_synthesizer_can_use_fails_for_good_before_any_work(
    api: ApiServer,
) -> None:
    """A seed of one row, or a dataset of other columns to score against: a permanent
    TaskError (exit 2, not retried) that says what to do, found before fitting or before any
    row is sampled (it was a library's ValueError, retried, after the sampling)."""
    seed = api.wait(api.submit("gan-seed", {"rows": 40}), timeout_s=60)
    rows = ((api.data_dir / "artifacts") / seed["result"]["seed"]).read_text().splitlines()
    one_row = "\n".join(rows[:2]) + "\n"
    assert api.client.put("/v1/uploads/seeds/one.csv", content=one_row).status_code == 201
    other = "a,b\n1,2\n3,4\n"
    assert api.client.put("/v1/uploads/seeds/other.csv", content=other).status_code == 201
    job = api.wait(
        api.submit("gan-train", {"dataset": "uploads/default/seeds/one.csv"}, retries=2),
        timeout_s=60,
    )
    assert (job["state"], job["attempts"], job["error"]["exit_code"]) == ("failed", 1, 2)
    assert "has 1 row(s): at least 2" in job["error"]["message"]
    assert job["error"]["suggestion"]
    train = api.wait(api.submit("gan-train", {"epochs": 1, "batch_size": 50}), timeout_s=90)
    params = {"model": f"job:{train['id']}", "dataset": "uploads/default/seeds/other.csv"}
    job = api.wait(api.submit("gan-generate", params, retries=2), timeout_s=60)
    assert (job["state"], job["attempts"], job["error"]["exit_code"]) == ("failed", 1, 2)
    assert job["error"]["message"].startswith(
        "dataset uploads/default/seeds/other.csv has the columns a, b; the synthesizer was "
        "fitted on "
    )
    assert not ((api.data_dir / "artifacts") / job["id"] / "train.csv").exists()  # nothing sampled
