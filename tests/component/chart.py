"""The Helm chart rendered by a real Helm engine (`helm-python-sdk`: Helm's Go SDK through a
C ABI, no helm binary, no cluster), for the chart tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

CHART = Path(__file__).resolve().parents[2] / "helm" / "kubetask"
RELEASE = "kubetask"
NAMESPACE = "ml"
KUBE_VERSIONS = ("1.30.0", "1.37.0")  # the oldest supported and the newest bundled schemas

Obj = dict[str, Any]


@lru_cache(maxsize=64)
def _render(values_json: str, release: str, namespace: str) -> dict[str, str]:
    with helm.Chart.load(CHART) as chart:
        return chart.render(
            json.loads(values_json), name=release, namespace=namespace, is_install=True
        )


def render_files(
    values: Obj | None = None, *, release: str = RELEASE, namespace: str = NAMESPACE
) -> dict[str, str]:
    """Template path -> rendered text (NOTES.txt included), as `helm template` renders it;
    the values are checked against values.schema.json first, as an install does."""
    return _render(json.dumps(values or {}, sort_keys=True), release, namespace)


def render(
    values: Obj | None = None, *, release: str = RELEASE, namespace: str = NAMESPACE
) -> list[Obj]:
    """Every Kubernetes object the chart renders, helm test hooks included."""
    objects: list[Obj] = []
    for path, text in sorted(render_files(values, release=release, namespace=namespace).items()):
        if path.endswith((".yaml", ".yml")):
            objects.extend(obj for obj in yaml.safe_load_all(text) if obj)
    return objects


def find(objects: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = find(objects, kind, name)
    assert len(found) == 1, f"{len(found)} {kind} objects named {name}: {found}"
    return found[0]


def controller(objects: list[Obj]) -> Obj:
    """The controller's Deployment (the in-chart MinIO is a Deployment too)."""
    (deployment,) = [
        o
        for o in find(objects, "Deployment")
        if o["metadata"]["labels"]["app.kubernetes.io/component"] == "controller"
    ]
    return deployment


def pod_specs(objects: list[Obj]) -> Iterator[tuple[str, Obj]]:
    """(object name, pod spec) for every object that makes pods."""
    for obj in objects:
        if obj["kind"] == "Pod":
            yield obj["metadata"]["name"], obj["spec"]
        elif obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]


def settings_env(objects: list[Obj]) -> dict[str, str]:
    """The controller's environment from the settings ConfigMap it loads (envFrom) and its
    own env entries, as the kubelet would compose it."""
    container = controller(objects)["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(one(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env
