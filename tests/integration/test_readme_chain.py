"""The README's pipeline as a user types it, on the local backend: `datagen` -> `train` on
`job:<datagen>` -> `evaluate`, `explain`, `explain-batch`, `export` and `test` on
`job:<train>`, every kind with its default params (plus what the README's examples add).
The analysis jobs name no data: they run on the data the model was trained on, filled in at
submit. Data the model cannot take is a 422 at submit, naming the field and both shapes."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.servers import ApiServer

ANALYSES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("evaluate", {}, {}),
    ("explain", {"index": 3}, {}),
    # as the README's: all 240 signals (4-6 s started to finished on a 2-core machine)
    ("explain-batch", {}, {"parallelism": 2, "completions": 2}),
    ("export", {"quantize": True}, {}),
    ("test", {"snr_db": [20, 10, 0]}, {}),
]


def succeeded(api: ApiServer, job_id: str, timeout_s: float = 240) -> dict[str, Any]:
    job = api.wait(job_id, timeout_s=timeout_s)
    assert job["state"] == "succeeded", (job, api.client.get(f"/v1/jobs/{job_id}/logs").text)
    return job


def problem(api: ApiServer, kind: str, params: dict[str, Any]) -> dict[str, str]:
    response = api.client.post("/v1/jobs", json={"kind": kind, "params": params})
    assert response.status_code == 422, response.text
    return {e["field"]: e["msg"] for e in response.json()["errors"]}


@pytest.mark.timeout(400)
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_the_readme_chain_with_default_params_succeeds_end_to_end(api: ApiServer) -> None:
    started = time.monotonic()
    datagen = succeeded(api, api.submit("datagen"))
    dataset = datagen["result"]["dataset"]
    train = succeeded(api, api.submit("train", {"dataset": f"job:{datagen['id']}"}))
    assert train["result"]["dataset"] == dataset
    shape = {k: train["result"][k] for k in ("length", "sample_rate", "classes")}
    assert shape == {k: datagen["result"][k] for k in ("length", "sample_rate", "classes")}

    model = f"job:{train['id']}"
    submitted = {
        kind: api.submit(kind, {"model": model, **params}, **fields)
        for kind, params, fields in ANALYSES
    }
    for kind, job_id in submitted.items():
        job = succeeded(api, job_id)
        request = job["request"]["params"]
        assert request["model"] == train["result"]["model"], kind
        assert request["dataset"] == dataset, kind  # the model's own data, filled at submit
    # scored on the signals the model did not train on: its validation split (0.2)
    evaluated = succeeded(api, submitted["evaluate"])["result"]
    assert (evaluated["rows"], evaluated["n_signals"]) == (
        "held-out",
        datagen["result"]["n_signals"] // 5,
    )
    assert succeeded(api, submitted["test"])["result"]["rows"] == "held-out"
    explained = succeeded(api, submitted["explain-batch"])["result"]
    assert explained["signals_explained"] == datagen["result"]["n_signals"]
    listed = api.client.get(f"/v1/jobs/{train['id']}/artifacts").json()["items"]
    size = next(a["size"] for a in listed if a["path"] == "model.pt")
    model_pt = api.client.get(f"/v1/jobs/{train['id']}/artifacts/model.pt")  # what it ends with
    assert model_pt.status_code == 200
    assert len(model_pt.content) == size > 0
    print(f"the README chain: {time.monotonic() - started:.1f}s")


def test_data_the_model_cannot_take_is_refused_at_submit(api: ApiServer) -> None:
    short = {"n_per_class": 2, "length": 256, "sample_rate": 2000.0}
    other = succeeded(api, api.submit("datagen", short))
    train = succeeded(api, api.submit("train", {"epochs": 1}))  # on data it generates
    assert train["result"]["dataset"] == f"{train['id']}/dataset.npz"
    assert (train["result"]["length"], train["result"]["sample_rate"]) == (1024, 12000.0)
    model = f"job:{train['id']}"

    wanted = "signals of length 256 at 2000 Hz; the model takes length 1024 at 12000 Hz"
    for kind, _, _ in ANALYSES:
        assert problem(api, kind, {"model": model, "dataset": f"job:{other['id']}"}) == {
            "params.dataset": wanted
        }
    assert problem(api, "evaluate", {"model": model, "datagen": short}) == {
        "params.datagen": wanted
    }
    evaluate = succeeded(api, api.submit("evaluate", {"model": model}))
    assert evaluate["request"]["params"]["dataset"] == train["result"]["dataset"]
