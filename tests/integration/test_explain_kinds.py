"""`explain` and `explain-batch` for real: a tiny model trained once for the module, then
attributions computed by task processes (and, for the batch, by two workers of one job
through the API and the local backend), read back from their arrays."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from kubetask import keys
from kubetask.jobs.context import TaskContext
from kubetask.jobs.errors import InvalidParams, TaskError
from kubetask.jobs.kinds import datagen, explain, train
from kubetask.jobs.kinds.ml.shares import RedisShares, my_share
from kubetask.jobs.params import DatagenParams, TrainParams
from kubetask.jobs.params.explain import ExplainParams
from kubetask.jobs.publisher import OUTCOME_TTL_S
from kubetask.jobs.reporter import ProgressReporter
from tests.integration.task_process import run_task
from tests.servers import ApiServer

DATA = {"n_per_class": 4, "length": 256, "sample_rate": 2000.0}
TRAIN = {"datagen": DATA, "epochs": 1, "width": 8, "depth": 2, "threads": 1}
HELD_OUT = {**DATA, "n_per_class": 16, "seed": 1}  # generated signals the tiny model takes
PNG = b"\x89PNG\r\n\x1a\n"


def context(store: Path, job_id: str) -> TaskContext:
    reporter = ProgressReporter(None, job_id=job_id)
    return TaskContext(job_id=job_id, index=0, artifacts_root=store, reporter=reporter)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """(artifact store, model path, dataset path): datagen, then train on its dataset, run
    in this process (the kinds under test run as task processes)."""
    store = tmp_path_factory.mktemp("explain") / "artifacts"
    data = datagen.run(DatagenParams.model_validate({**DATA, "seed": 3}), context(store, "data"))
    params = TrainParams.model_validate({**TRAIN, "dataset": data["dataset"]})
    model = train.run(params, context(store, "model"))
    return store, str(model["model"]), str(data["dataset"])


def arrays(path: Path) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def test_one_signal_is_explained_over_its_time_samples(trained: tuple[Path, str, str]) -> None:
    store, model, dataset = trained
    params = {"model": model, "dataset": dataset, "index": 5, "threads": 1}
    run = run_task("explain", params, job_id="explain-0001", root=store.parent)
    assert run.exit_code == 0, run.stderr[-2000:]
    result = run.result
    saved = arrays(store / result["arrays"])
    assert saved["indices"].tolist() == [5]
    with zipfile.ZipFile(store / result["arrays"]) as npz:  # stored: deflating costs more
        assert {entry.compress_type for entry in npz.infolist()} == {zipfile.ZIP_STORED}
    ig = saved["integrated_gradients"][0]
    assert ig.shape == saved["saliency"][0].shape == (DATA["length"],)
    assert saved["signals"][0].shape == (DATA["length"],)
    assert (saved["saliency"] >= 0).all()
    # completeness: the attributions add up to f(x) - f(0) for the explained logit
    assert result["relative_gap"] < 0.05
    assert float(ig.sum()) == pytest.approx(result["attribution_sum"], abs=1e-4)
    logits = saved["logits"][0]
    assert result["predicted"] == result["target"] == str(saved["classes"][logits.argmax()])
    assert result["label"] == str(saved["classes"][saved["labels"][0]])
    assert result["top_samples"] == np.argsort(-np.abs(ig))[:5].tolist()
    assert result["top_times_s"][0] == pytest.approx(result["top_samples"][0] / 2000.0)
    assert (store / result["overlay"]).read_bytes()[:8] == PNG
    assert result["dataset"] == dataset


def test_the_label_or_a_named_class_is_explained_and_mistakes_are_refused(
    trained: tuple[Path, str, str], tmp_path: Path
) -> None:
    store, model, _ = trained
    where = context(store, "explain-0002")
    base = {"model": model, "index": 2, "datagen": HELD_OUT, "threads": 1}  # generated
    by_label = explain.run(ExplainParams.model_validate({**base, "target": "label"}), where)
    assert by_label["target"] == by_label["label"]
    by_name = explain.run(ExplainParams.model_validate({**base, "target": "looseness"}), where)
    assert by_name["target"] == "looseness"
    # params that can never work with this model and data: exit 2, never retried
    with pytest.raises(InvalidParams, match=r"^target: 'rust' is not 'predicted', 'label' or one"):
        explain.run(ExplainParams.model_validate({**base, "target": "rust"}), where)
    with pytest.raises(InvalidParams, match=r"^index: the dataset has 96 signals"):
        explain.run(ExplainParams.model_validate({**base, "index": 96}), where)
    with pytest.raises(TaskError, match="not found"):
        explain.run(ExplainParams.model_validate({**base, "model": "nope/model.pt"}), where)


def test_the_rule_and_its_points_are_reported_and_both_rules_add_up(
    trained: tuple[Path, str, str],
) -> None:
    store, model, _ = trained
    where = context(store, "explain-0003")
    base = {"model": model, "index": 4, "datagen": HELD_OUT, "threads": 1}
    default = explain.run(ExplainParams.model_validate(base), where)
    assert (default["rule"], default["steps"]) == ("gauss-legendre", 48)
    midpoint = ExplainParams.model_validate({**base, "rule": "midpoint", "steps": 64})
    former = explain.run(midpoint, where)
    assert (former["rule"], former["steps"]) == ("midpoint", 64)
    assert former["logit_delta"] == default["logit_delta"]
    assert former["attribution_sum"] != default["attribution_sum"]  # other points, weights
    gaps = [former["relative_gap"], default["relative_gap"]]
    assert all(isinstance(gap, float) and gap < 0.05 for gap in gaps)


def test_batch_explain_shares_the_signals_out_among_two_workers(
    api: ApiServer, trained: tuple[Path, str, str]
) -> None:
    store = api.data_dir / "artifacts"
    uploads = store / "uploads" / "default" / "models"  # the tenant's own uploads area
    uploads.mkdir(parents=True, exist_ok=True)
    shutil.copy(trained[0] / trained[1], uploads / "tiny.pt")
    params = {
        "model": "uploads/default/models/tiny.pt",
        "datagen": HELD_OUT,
        "plots": 2,
        "threads": 1,
    }
    job_id = api.submit("explain-batch", params, parallelism=2, completions=2)
    events = api.events(job_id, timeout_s=120)
    job = api.job(job_id)
    assert job["state"] == "succeeded", job
    result = job["result"]
    workers = result["workers"]
    assert [w["worker"] for w in workers] == [0, 1]
    total = 16 * 6  # the held-out signals generated
    assert {w["signals_total"] for w in workers} == {total}
    assert sum(w["signals_explained"] for w in workers) == total
    # How the signals split depends on when each worker starts (on a busy machine one may
    # find them all claimed); what never varies: each is explained once, in one part.

    rows: list[int] = []
    for worker in workers:
        assert worker["part"] == f"{job_id}/explanations-{worker['worker']}.npz"
        part = arrays(store / worker["part"])
        assert part["indices"].tolist()[:50] == worker["rows"]
        assert part["integrated_gradients"].shape == (worker["signals_explained"], 256)
        if worker["signals_explained"]:
            assert (store / worker["overlay"]).read_bytes()[:8] == PNG
            assert worker["max_relative_gap"] < 0.05
        rows += part["indices"].tolist()
    assert sorted(rows) == list(range(total)), "every signal once, in one part"

    # one merged result: the figures over every signal, whichever worker explained it
    assert (result["signals_total"], result["signals_explained"]) == (total, total)
    parts = [arrays(store / w["part"]) for w in workers]
    right = sum(int((p["predicted"] == p["labels"]).sum()) for p in parts)
    assert result["accuracy"] == pytest.approx(right / total, abs=1e-5)
    gaps = [w["max_relative_gap"] for w in workers if w["max_relative_gap"] is not None]
    assert result["max_relative_gap"] == max(gaps)
    assert result["model"] == params["model"]
    assert (result["rule"], result["steps"]) == ("gauss-legendre", 48)  # the arithmetic used
    assert result["workers_missing"] == []

    explained = [e for e in events if e["type"] == "progress" and e["stage"] == "explain"]
    assert {e["index"] for e in explained} <= {0, 1}
    assert {e["index"] for e in explained} == {w["worker"] for w in workers if w["rows"]}
    assert {e["total"] for e in explained} == {total}
    assert max(e["current"] for e in explained) == total  # progress counts both workers
    with redis.Redis.from_url(api.redis_url) as client:
        assert 0 < client.ttl(keys.shares_claimed(job_id)) <= OUTCOME_TTL_S


def test_a_retried_worker_takes_back_what_it_claimed(redis_url: str) -> None:
    first = RedisShares(redis_url, job_id="shares-0001", worker=0)
    claimed = my_share(first, 10, 2)
    assert next(claimed) == [0, 1]  # then its pod died mid-group
    assert first.finish([0]) == 1
    first.close()
    other = RedisShares(redis_url, job_id="shares-0001", worker=1)
    taking = my_share(other, 10, 3)
    theirs = next(taking)
    assert theirs == [2, 3, 4]
    again = RedisShares(redis_url, job_id="shares-0001", worker=0)
    mine = [position for group in my_share(again, 10, 4) for position in group]
    assert mine[:2] == [0, 1]
    assert set(mine).isdisjoint(theirs)
    assert sorted(mine + theirs) == list(range(10))
    assert again.claim([2, 3]) == []  # once taken, nobody else's
    assert other.claim([2, 4, 9]) == [2, 4]
    assert again.finish([0, 1]) == 2  # finishing twice counts once
    assert other.finish([2, 3]) == again.done() == 4
    for shares in (other, again):
        shares.close()
