"""`train` on each backend: the local one, and the kubernetes one against the Kubernetes API
test server, whose node runs the pod's container (`python -m kubetask.jobs train`) as a process.
The user sees the same per-epoch progress, result and model file either way."""

from __future__ import annotations

import torch

from kubetask.jobs.kinds.ml.models import ModelSpec, build_model
from tests.servers import ApiServer

TINY = {"datagen": {"n_per_class": 8, "length": 256, "sample_rate": 2000.0}, "threads": 1}
METRICS = {"epoch", "loss", "accuracy", "val_loss", "val_accuracy"}


def test_train_reports_every_epoch_and_saves_a_usable_model(any_backend: ApiServer) -> None:
    api = any_backend
    job_id = api.submit("train", {**TINY, "epochs": 3, "model": "mlp"})
    events = api.events(job_id, timeout_s=90)
    assert events[-1]["state"] == "succeeded", api.job(job_id)
    epochs = [e for e in events if e["type"] == "progress" and e["stage"] == "train"]
    epochs = [e for e in epochs if e["metrics"]]
    assert [e["metrics"]["epoch"] for e in epochs] == [1, 2, 3]
    assert all(set(e["metrics"]) >= METRICS for e in epochs)
    assert epochs[-1]["progress"] == 1.0

    result = api.job(job_id)["result"]
    assert result["device"].startswith("cpu")
    assert (result["epochs"], result["epochs_run"], result["resumed_from_epoch"]) == (3, 3, None)
    assert result["metrics"] == {k: epochs[-1]["metrics"][k] for k in METRICS}
    assert result["samples_per_s"] > 0
    assert result["model"] == f"{job_id}/model.pt"

    saved = torch.load(api.data_dir / "artifacts" / result["model"], weights_only=True)
    model = build_model(ModelSpec(**saved["spec"]))
    model.load_state_dict(saved["state_dict"])
    model.eval()
    logits = model(torch.zeros(2, saved["spec"]["input_length"]))
    assert logits.shape == (2, len(result["classes"]))
