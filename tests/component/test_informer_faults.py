"""The informer (controller/backends/informer.py) against the Kubernetes API test server
when watches fail: a 410 Gone answered by the watch call itself means relist at once, and
a watch that was up and is cut resumes at once, however often that happens."""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial
from operator import lt
from typing import Any

import pytest
from kubernetes import client as k8s

from controller.backends.informer import ESTABLISHED_S, Informer
from tests.kubeapi import KubeApiServer, wait_for


@pytest.fixture
def kube() -> Iterator[KubeApiServer]:
    with KubeApiServer() as server:
        yield server


@pytest.fixture
def core(kube: KubeApiServer) -> Iterator[Any]:
    with kube.api_client() as api:
        yield k8s.CoreV1Api(api)


@pytest.fixture
def informer(core: Any) -> Iterator[Informer]:
    informer = Informer(
        name="configmaps",
        list_fn=core.list_namespaced_config_map,
        namespace="default",
        selector="app=x",
        on_change=lambda obj: None,
    )
    informer.start()
    assert informer.synced.wait(5)
    yield informer
    informer.stop()


def add(core: Any, name: str) -> None:
    core.create_namespaced_config_map(
        "default", {"metadata": {"name": name, "labels": {"app": "x"}}, "data": {"k": "v"}}
    )


def seen_within(informer: Informer, name: str, timeout_s: float) -> float:
    start = time.monotonic()
    wait_for(lambda: informer.get(name), bool, timeout_s=timeout_s, what=f"{name} in the cache")
    return time.monotonic() - start


def watch_calls(kube: KubeApiServer) -> int:
    return sum(1 for r in kube.requests if r.verb == "watch" and r.resource == "configmaps")


def test_a_410_from_the_watch_call_relists_at_once(
    kube: KubeApiServer, core: Any, informer: Informer
) -> None:
    wait_for(lambda: kube.app.open_watches, bool, what="the watch")
    kube.compact()
    kube.faults.fail_next(verb="watch", resource="configmaps", status=410, times=3)
    kube.drop_watches()
    gone = wait_for(
        lambda: [r for r in kube.requests if r.verb == "watch" and r.status == 410],
        lambda found: len(found) == 3,
        timeout_s=5,
        what="three 410s",
    )
    assert gone[-1].at - gone[0].at < 0.5  # no backoff between them: a relist each time
    relists = [
        r for r in kube.requests if r.verb == "list" and r.at > gone[0].at and r.status == 200
    ]
    assert len(relists) >= 2
    add(core, "after-410s")
    assert seen_within(informer, "after-410s", timeout_s=1.0) < 1.0


def test_watches_cut_again_and_again_resume_at_once(
    kube: KubeApiServer, core: Any, informer: Informer
) -> None:
    for _ in range(3):  # each watch up for a while, then cut
        wait_for(lambda: kube.app.open_watches, bool, what="the watch")
        time.sleep(ESTABLISHED_S + 0.1)
        before = watch_calls(kube)
        kube.drop_watches()
        wait_for(lambda: watch_calls(kube), partial(lt, before), timeout_s=1.0, what="a new watch")
    add(core, "after-cuts")
    assert seen_within(informer, "after-cuts", timeout_s=1.0) < 1.0
