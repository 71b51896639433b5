"""`GET /v1/kinds` tells the truth about defaults: for every kind, the `default` of each param
in its schema is exactly what a dry run of a request without that param fills in (defaults
made by factories and nested params included)."""

from __future__ import annotations

from typing import Any

from kubetask.kinds import load_kinds
from kubetask.params.refs import REF_SCHEMA_KEY
from tests.servers import ApiServer

PLACEHOLDER = "uploads/default/placeholder"  # for the params a kind needs (a model's path)


def test_the_schema_defaults_are_what_a_dry_run_fills_in(api: ApiServer) -> None:
    response = api.client.get("/v1/kinds")
    assert response.status_code == 200
    kinds = response.json()
    assert {"datagen", "train", "evaluate", "explain", "gan-train"} <= {k["kind"] for k in kinds}
    for info in kinds:
        properties: dict[str, Any] = info["params_schema"]["properties"]
        needed = {name: PLACEHOLDER for name, p in properties.items() if "default" not in p}
        body = {"kind": info["kind"], "params": needed}
        dry = api.client.post("/v1/jobs", params={"dry_run": "true"}, json=body)
        # a file that is unpickled is only one its producer wrote: no placeholder passes
        # the dry run, which refuses that field alone; the params model fills in the rest
        unpickled = {
            f"params.{name}"
            for name, p in properties.items()
            if p.get(REF_SCHEMA_KEY, {}).get("outputs_only") and name in needed
        }
        if unpickled:
            assert dry.status_code == 422, (info["kind"], dry.text)
            assert {e["field"] for e in dry.json()["errors"]} == unpickled
            model = load_kinds()[info["kind"]].params
            echoed = model.model_validate(needed).model_dump(mode="json", exclude_none=True)
        else:
            assert dry.status_code == 200, (info["kind"], dry.text)
            echoed = dry.json()["request"]["params"]
        shown = {name: p["default"] for name, p in properties.items() if "default" in p}
        unset = dict.fromkeys(shown.keys() - echoed.keys())  # left out when None
        assert {**shown, **needed} == {**echoed, **unset}, info["kind"]
