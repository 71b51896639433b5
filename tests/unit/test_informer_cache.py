"""The informer's cache: a version it holds already (the watch echoing the object a create
answered with) or an older one is no change and wakes nobody; `notify=False` fills the
cache without a change notice; managedFields are never cached."""

from __future__ import annotations

from typing import Any

from kubetask.controller.backends.informer import Informer


def job(version: str) -> dict[str, Any]:
    return {"metadata": {"name": "kt-0000000000abcdef", "resourceVersion": version}}


def informer(changed: list[str]) -> Informer:
    return Informer(
        name="jobs/ml",
        list_fn=lambda *args, **kwargs: None,  # never started: no call reaches it
        namespace="ml",
        on_change=lambda obj: changed.append(obj["metadata"]["resourceVersion"]),
    )


def test_only_a_newer_version_is_a_change() -> None:
    changed: list[str] = []
    jobs = informer(changed)
    for version in ("5", "5", "4", "6", "6"):
        jobs.upsert(job(version))
    assert changed == ["5", "6"]
    assert jobs.get("kt-0000000000abcdef") == job("6")


def test_an_object_put_in_without_notice_is_cached_and_its_echo_wakes_nobody() -> None:
    changed: list[str] = []
    jobs = informer(changed)
    jobs.upsert(job("5"), notify=False)  # the create's answer
    jobs.upsert(job("5"))  # the watch's ADDED of the same object
    assert changed == []
    assert jobs.get("kt-0000000000abcdef") == job("5")
    jobs.upsert(job("7"))  # the Job controller's status write
    assert changed == ["7"]


def test_managed_fields_are_left_out_of_the_cache() -> None:
    """As client-go's TransformStripManagedFields: most of an object's parts, never read."""
    changed: list[str] = []
    jobs = informer(changed)
    served = job("5")
    served["metadata"]["managedFields"] = [{"manager": "kube-controller-manager"}]
    jobs.upsert(served)
    assert jobs.get("kt-0000000000abcdef") == job("5")
    assert changed == ["5"]


def test_what_is_cached_is_the_transform_of_what_was_served() -> None:
    changed: list[str] = []
    pods = Informer(
        name="pods/ml",
        list_fn=lambda *args, **kwargs: None,
        namespace="ml",
        on_change=lambda obj: changed.append(obj["metadata"]["resourceVersion"]),
        transform=lambda obj: {"metadata": obj["metadata"]},
    )
    served = {**job("3"), "spec": {"containers": [{"name": "task"}]}}
    pods.upsert(served)
    assert pods.get("kt-0000000000abcdef") == job("3")
    assert changed == ["3"]
