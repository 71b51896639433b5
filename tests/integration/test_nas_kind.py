"""`nas` for real: two workers of one job share one Optuna study in Redis (hpo's machinery)
over 1-D CNN architectures, and the best one comes back as params a `train` job accepts and
that train it to the same validation metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetask.jobs.context import TaskContext
from kubetask.jobs.kinds import nas, train
from kubetask.jobs.params import TrainParams
from kubetask.jobs.params.nas import NasParams
from kubetask.jobs.reporter import ProgressReporter
from tests.servers import ApiServer

DATA = {"n_per_class": 12, "length": 512, "sample_rate": 2000.0}
SPACE = {"depth": [1, 3], "channels": [4, 8], "kernel_sizes": [3, 5], "pooling": ["max", "avg"]}
# trials long enough (3 epochs) that neither worker can run them all before the other starts
TRAIN = {"datagen": DATA, "epochs": 3, "threads": 1}


def context(store: Path, job_id: str) -> TaskContext:
    reporter = ProgressReporter(None, job_id=job_id)
    return TaskContext(job_id=job_id, index=0, artifacts_root=store, reporter=reporter)


def test_two_workers_search_one_study_and_the_best_is_trainable(
    api: ApiServer, tmp_path: Path
) -> None:
    params = {"n_trials": 8, "train": TRAIN, "space": SPACE, "startup_trials": 2}
    job_id = api.submit("nas", params, parallelism=2, completions=2)
    events = api.events(job_id, timeout_s=120)
    job = api.job(job_id)
    assert job["state"] == "succeeded", job
    workers = job["result"]["workers"]
    assert [w["worker"] for w in workers] == [0, 1]
    numbers = sorted(n for w in workers for n in w["trial_numbers"])
    assert numbers == list(range(8)), "each trial number once, 8 in total"
    assert all(w["trials_run"] >= 1 for w in workers), "both workers ran trials"
    trials = [e for e in events if e["type"] == "progress" and "trial" in e["metrics"]]
    assert {e["index"] for e in trials} == {0, 1}

    # the job's one result: the best over both workers (the study's), every trial once
    final = job["result"]
    assert final["best_value"] == min(w["best_value"] for w in workers)
    assert (final["trials_total"], final["trials_run"]) == (8, 8)
    architecture = final["best_architecture"]
    assert 1 <= len(architecture) <= 3
    for layer in architecture:
        assert layer["channels"] in {4, 8}
        assert layer["kernel_size"] in {3, 5}
        assert layer["pooling"] in {"max", "avg"}
    assert final["best_metrics"]["val_loss"] == pytest.approx(final["best_value"], abs=1e-6)
    assert final["best_metrics"]["parameters"] > 0
    train_params = final["train_params"]
    assert train_params["architecture"] == architecture
    assert TrainParams.model_validate(train_params).model == "cnn1d"

    # POST /v1/jobs takes them as train params as they are
    request = {"kind": "train", "params": train_params}
    response = api.client.post("/v1/jobs", params={"dry_run": "true"}, json=request)
    assert response.status_code == 200, response.text
    # and training them keeps the epoch the search measured (same seed, data, architecture)
    result = train.run(TrainParams.model_validate(train_params), context(tmp_path, "retrain"))
    assert result["parameters"] == final["best_metrics"]["parameters"]
    assert isinstance(result["best_metrics"], dict)
    assert result["best_metrics"]["val_loss"] == pytest.approx(final["best_value"], abs=1e-4)
    assert result["best_epoch"] == final["best_metrics"]["epoch"]


def test_every_kind_is_listed_with_its_params_schema(api: ApiServer) -> None:
    response = api.client.get("/v1/kinds")
    assert response.status_code == 200
    kinds = {k["kind"]: k for k in response.json()}
    assert {"nas", "explain", "explain-batch"} <= set(kinds)
    nas_schema = kinds["nas"]["params_schema"]
    assert {"n_trials", "space", "train"} <= set(nas_schema["properties"])
    assert "ConvLayer" in nas_schema["$defs"]  # train's `architecture`
    explain_schema = kinds["explain"]["params_schema"]
    assert explain_schema["required"] == ["model"]
    assert {"index", "steps", "target"} <= set(explain_schema["properties"])
    assert "indices" in kinds["explain-batch"]["params_schema"]["properties"]


def test_one_worker_without_redis_runs_the_study_in_memory(tmp_path: Path) -> None:
    params = NasParams.model_validate(
        {"n_trials": 3, "train": {**TRAIN, "epochs": 1}, "space": SPACE}
    )
    result = nas.run(params, context(tmp_path, "nas-by-hand"))
    assert result["storage"] == "memory"
    assert (result["trials_run"], result["trials_total"]) == (3, 3)
    assert isinstance(result["train_params"], dict)
    assert result["train_params"]["architecture"] == result["best_architecture"]
