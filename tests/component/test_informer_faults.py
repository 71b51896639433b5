"""The informer (controller/backends/informer.py) against the real control plane when its
watches fail: a watch resumed from a version etcd has compacted away gets 410 Gone, and the
informer lists again at once; a watch that was up and is cut resumes at once, however often
that happens. ConfigMaps are watched: the API server keeps no watch cache for them (see
control_plane.py), so resuming one goes to etcd, where `compact()` makes the 410 real. The
informer reaches the API server through a FlakyProxy, whose `drop()` cuts its watch; the
API server's audit log witnesses its calls."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from kubetask.controller.backends.informer import ESTABLISHED_S, Informer
from tests.cluster.audit import AuditRecord
from tests.cluster.bootstrap import admin_client, restricted_namespace
from tests.cluster.control_plane import ControlPlane
from tests.cluster.pki import ADMIN_USER
from tests.component.flaky_proxy import FlakyProxy

T = TypeVar("T")
INFORMER_AGENT = "kubetask-informer-test"  # the informer's User-Agent (the test's is another)


def wait_for(
    fetch: Callable[[], T], done: Callable[[T], bool], *, timeout_s: float = 15, what: str
) -> T:
    deadline = time.monotonic() + timeout_s
    while not done(value := fetch()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}; last: {value!r}"
        time.sleep(0.02)
    return value


@dataclass(frozen=True)
class Site:
    plane: ControlPlane
    namespace: str
    proxy: FlakyProxy  # between the informer and the API server
    core: Any  # the test's own client, straight to the API server

    def calls(self, verb: str) -> list[AuditRecord]:
        """The informer's calls with this verb about ConfigMaps, in the order received."""
        found = [
            r
            for r in self.plane.requests(user=ADMIN_USER)
            if (r.verb, r.resource, r.namespace) == (verb, "configmaps", self.namespace)
            and r.user_agent == INFORMER_AGENT
        ]
        return sorted(found, key=lambda r: r.at)

    def add(self, name: str, labels: dict[str, str] | None = None) -> None:
        body = {"metadata": {"name": name, "labels": labels or {"app": "x"}}, "data": {"k": "v"}}
        self.core.create_namespaced_config_map(self.namespace, body)


@pytest.fixture
def site(control_plane: ControlPlane) -> Iterator[Site]:
    namespace = f"informer-{uuid.uuid4().hex[:10]}"
    with (
        FlakyProxy(upstream_port=control_plane.api_port) as proxy,
        admin_client(control_plane) as api,
    ):
        restricted_namespace(api, namespace)
        core: Any = k8s.CoreV1Api(api)
        try:
            yield Site(control_plane, namespace, proxy, core)
        finally:
            core.delete_namespace(namespace, propagation_policy="Background")


@pytest.fixture
def informer(site: Site, tmp_path: Path) -> Iterator[Informer]:
    kubeconfig = site.plane.write_kubeconfig(
        tmp_path / "informer.kubeconfig",
        token=site.plane.pki.admin_token,
        namespace=site.namespace,
        server=f"https://127.0.0.1:{site.proxy.port}",
    )
    configuration = k8s.Configuration()
    k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=configuration
    )
    with k8s.ApiClient(configuration) as api:
        api.user_agent = INFORMER_AGENT
        informer = Informer(
            name="configmaps",
            list_fn=k8s.CoreV1Api(api).list_namespaced_config_map,
            namespace=site.namespace,
            selector="app=x",
            on_change=lambda obj: None,
        )
        informer.start()
        assert informer.synced.wait(5)
        yield informer
        informer.stop()


def seen_within(informer: Informer, name: str, timeout_s: float) -> float:
    start = time.monotonic()
    wait_for(lambda: informer.get(name), bool, timeout_s=timeout_s, what=f"{name} in the cache")
    return time.monotonic() - start


def established(site: Site, since: float = 0.0) -> AuditRecord:
    """The informer's watch opened since `since` (epoch seconds), once it has been up for
    ESTABLISHED_S: cutting it then is no failure of the call."""
    watch = wait_for(
        lambda: [w for w in site.calls("watch") if w.at >= since],
        bool,
        timeout_s=5,
        what="the watch",
    )[-1]
    time.sleep(max(watch.at + ESTABLISHED_S + 0.1 - time.time(), 0))
    return watch


def test_a_watch_resumed_from_a_compacted_version_gets_410_and_relists_at_once(
    site: Site, informer: Informer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kubetask.informer")
    since = 0.0
    lags: list[float] = []
    for round_ in range(3):
        established(site, since)
        # writes the informer does not see (another label): etcd's revision moves past
        # the version its watch would resume from, and compaction then removes that one
        for unseen in ("a", "b"):
            site.add(f"unseen-{round_}-{unseen}", labels={"app": "y"})
        site.plane.compact()
        cut = time.time()
        site.proxy.drop()
        relist = wait_for(
            lambda: [r for r in site.calls("list") if r.at > cut],  # noqa: B023
            bool,
            timeout_s=5,
            what="a relist",
        )[0]
        (resumed,) = [w for w in site.calls("watch") if cut < w.at < relist.at]
        lags.append(relist.at - resumed.at)
        since = relist.at
    expired = [r for r in caplog.records if "410" in r.getMessage()]
    print(f"\nresumed watch (410) -> relist: {', '.join(f'{lag:.3f}' for lag in lags)} s")
    assert len(expired) == 3, [r.getMessage() for r in caplog.records]
    # no backoff (it would add 0.4 s or more): etcd answers a compacted watch within about
    # 0.1 s (its unsynced watchers are looked at every 100 ms), and the relist follows
    assert max(lags) < 0.5
    established(site, since)
    site.add("after-410s")
    assert seen_within(informer, "after-410s", timeout_s=1.0) < 1.0


def test_watches_cut_again_and_again_resume_at_once(site: Site, informer: Informer) -> None:
    since = 0.0
    for _ in range(3):  # each watch up for a while, then cut
        established(site, since)
        cut = time.time()
        site.proxy.drop()
        resumed = wait_for(
            lambda: [w for w in site.calls("watch") if w.at > cut],  # noqa: B023
            bool,
            timeout_s=1.0,
            what="a new watch",
        )[0]
        since = resumed.at
    site.add("after-cuts")
    assert seen_within(informer, "after-cuts", timeout_s=1.0) < 1.0
