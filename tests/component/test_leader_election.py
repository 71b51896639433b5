"""Leader election (controller/leader.py) against the real control plane: a real Lease in a
namespace of the test's own, written as a ServiceAccount allowed what an elector does,
resourceVersion conflicts from the API server itself; the API made unreachable by a proxy
that refuses connections; 429s with Retry-After from API Priority and Fairness. Several
electors in one event loop; the API server's audit log is the witness of their calls."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import itertools
import json
import ssl
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from kubetask.controller.leader import ElectionSettings, LeaderElector
from tests.cluster.audit import AuditRecord
from tests.cluster.bootstrap import (
    admin_client,
    restricted_namespace,
    service_account_kubeconfig,
    throttle,
)
from tests.cluster.control_plane import ControlPlane
from tests.component.flaky_proxy import FlakyProxy

DURATION_S, RENEW_DEADLINE_S, RETRY_S = 2, 1.2, 0.2
LEASE = "kubetask-leader"
ACCOUNT = "elector"
ELECTOR_AGENT = "kubetask-elector"  # the electors' User-Agent (the burst has another)
LEASE_RULES = [
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "verbs": ["get", "list", "create", "update"],  # list: for the burst
    }
]


@dataclass(frozen=True)
class Site:
    """A namespace of the test's own, with a ServiceAccount there that the electors
    authenticate as, through `proxy`."""

    plane: ControlPlane
    namespace: str
    kubeconfig: Path  # the ServiceAccount's, pointing at the proxy
    proxy: FlakyProxy

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{ACCOUNT}"

    @property
    def token(self) -> str:
        config = json.loads(self.kubeconfig.read_text())
        return str(config["users"][0]["user"]["token"])

    def lease_calls(self) -> list[AuditRecord]:
        """The electors' calls about the Lease, in the order the API server received them."""
        calls = [
            r
            for r in self.plane.requests(user=self.user)
            if r.resource == "leases" and r.user_agent.startswith(ELECTOR_AGENT)
        ]
        return sorted(calls, key=lambda r: r.at)

    def lease(self) -> dict[str, Any] | None:
        """The Lease as the API server has it (read as admin)."""
        with admin_client(self.plane) as api:
            leases: Any = k8s.CoordinationV1Api(api)
            try:
                response = leases.read_namespaced_lease(
                    LEASE, self.namespace, _preload_content=False
                )
            except ApiException as error:
                if error.status == 404:
                    return None
                raise
            found: dict[str, Any] = json.loads(response.data)
            return found

    def holder(self) -> str:
        lease = self.lease()
        return "" if lease is None else str(lease["spec"].get("holderIdentity") or "")


@pytest.fixture
def site(control_plane: ControlPlane, tmp_path: Path) -> Iterator[Site]:
    namespace = f"lease-{uuid.uuid4().hex[:10]}"
    with (
        FlakyProxy(upstream_port=control_plane.api_port) as proxy,
        admin_client(control_plane) as api,
    ):
        core: Any = k8s.CoreV1Api(api)
        rbac: Any = k8s.RbacAuthorizationV1Api(api)
        restricted_namespace(api, namespace)
        core.create_namespaced_service_account(namespace, {"metadata": {"name": ACCOUNT}})
        rbac.create_namespaced_role(
            namespace, {"metadata": {"name": ACCOUNT}, "rules": LEASE_RULES}
        )
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": ACCOUNT},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": ACCOUNT,
                },
                "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": namespace}],
            },
        )
        kubeconfig = service_account_kubeconfig(
            control_plane,
            api,
            namespace=namespace,
            account=ACCOUNT,
            path=tmp_path / "elector.kubeconfig",
            server=f"https://127.0.0.1:{proxy.port}",
        )
        try:
            yield Site(control_plane, namespace, kubeconfig, proxy)
        finally:
            flow: Any = k8s.FlowcontrolApiserverV1Api(api)
            with contextlib.suppress(ApiException):  # made by the 429 test's throttle()
                flow.delete_flow_schema(f"kubetask-throttled-{namespace}")
                flow.delete_priority_level_configuration(f"kubetask-throttled-{namespace}")
            core.delete_namespace(namespace, propagation_policy="Background")


def elector(site: Site, identity: str) -> LeaderElector:
    configuration = k8s.Configuration()
    k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(site.kubeconfig), client_configuration=configuration
    )
    api = k8s.ApiClient(configuration)
    api.user_agent = f"{ELECTOR_AGENT}/{identity}"
    settings = ElectionSettings(
        name=LEASE,
        namespace=site.namespace,
        identity=identity,
        duration_s=DURATION_S,
        renew_deadline_s=RENEW_DEADLINE_S,
        retry_period_s=RETRY_S,
    )
    return LeaderElector(api=api, settings=settings)


class Replica:
    """An elector and the work it runs while leading (a flag the test reads)."""

    def __init__(self, site: Site, identity: str) -> None:
        self.elector = elector(site, identity)
        self.working = False
        self.task: asyncio.Task[None] | None = None

    async def _lead(self) -> None:
        self.working = True
        try:
            await asyncio.Event().wait()
        finally:
            self.working = False

    def start(self) -> None:
        self.task = asyncio.create_task(self.elector.run(self._lead))

    async def crash(self) -> None:
        """Stop without releasing the Lease (the process died)."""
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.elector.close()

    async def stop(self) -> None:
        await self.crash()
        await self.elector.release()


@contextlib.asynccontextmanager
async def replicas(site: Site, *names: str) -> AsyncIterator[list[Replica]]:
    group = [Replica(site, name) for name in names]
    for replica in group:
        replica.start()
    try:
        yield group
    finally:
        for replica in group:
            if replica.task is not None and not replica.task.done():
                await replica.crash()


async def until(condition: Callable[[], bool], timeout_s: float) -> float:
    """Seconds until `condition()` holds."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout_s, "timed out"
        await asyncio.sleep(0.02)
    return time.monotonic() - start


class Burst:
    """Threads sending the ServiceAccount's requests back to back (listing its Leases,
    straight to the API server), so that its priority level is full."""

    def __init__(self, site: Site, threads: int = 12) -> None:
        self._site = site
        self._stop = threading.Event()
        self.answers: list[int] = []
        self._threads = [threading.Thread(target=self._send, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Burst:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _send(self) -> None:
        plane = self._site.plane
        context = ssl.create_default_context(cafile=str(plane.pki.cert))
        headers = {"Authorization": f"Bearer {self._site.token}", "User-Agent": "burst"}
        path = f"/apis/coordination.k8s.io/v1/namespaces/{self._site.namespace}/leases"
        while not self._stop.is_set():
            connection = http.client.HTTPSConnection("127.0.0.1", plane.api_port, context=context)
            try:
                while not self._stop.is_set():
                    connection.request("GET", path, headers=headers)
                    response = connection.getresponse()
                    response.read()
                    self.answers.append(response.status)
            except (OSError, http.client.HTTPException):
                pass  # the server closed it: open another
            finally:
                connection.close()


async def _exactly_one_of_three_leads_and_a_crash_hands_over_within_the_lease(
    site: Site,
) -> None:
    async with replicas(site, "a", "b", "c") as group:
        await until(lambda: any(r.elector.leading for r in group), 5)
        await asyncio.sleep(3 * RETRY_S)  # long enough for anyone else to (wrongly) take it
        leaders = [r for r in group if r.elector.leading]
        assert len(leaders) == 1
        assert [r.working for r in group] == [r is leaders[0] for r in group]
        assert site.holder() == leaders[0].elector.identity
        creates = [r.code for r in site.lease_calls() if r.verb == "create"]
        assert creates.count(201) == 1, creates  # the others got 409 (or found it) and follow

        old = leaders[0]
        await old.crash()
        handover = await until(lambda: any(r.elector.leading for r in group if r is not old), 10)
        print(f"handover after a crash: {handover:.2f} s (lease {DURATION_S} s)")
        assert handover <= DURATION_S + 2 * RETRY_S
        (new,) = [r for r in group if r.elector.leading]
        await until(lambda: new.working, 1)  # its work starts with its leadership
        lease = site.lease()
        assert lease is not None
        assert lease["spec"]["holderIdentity"] == new.elector.identity
        assert lease["spec"]["leaseTransitions"] == 1


async def _a_leader_shut_down_releases_the_lease_and_the_next_takes_it_at_once(
    site: Site,
) -> None:
    async with replicas(site, "a", "b") as group:
        await until(lambda: any(r.elector.leading for r in group), 5)
        (old,) = [r for r in group if r.elector.leading]
        (other,) = [r for r in group if r is not old]
        await old.stop()
        handover = await until(lambda: other.elector.leading, 5)
        assert handover < DURATION_S / 2
        assert site.holder() == other.elector.identity


async def _a_leader_that_cannot_renew_stops_leading_before_its_lease_runs_out(
    site: Site,
) -> None:
    async with replicas(site, "a") as (only,):
        await until(lambda: only.working, 5)
        site.proxy.refuse()  # the API unreachable: every connection cut, new ones refused
        lost = await until(lambda: not only.working, 5)
        assert lost <= RENEW_DEADLINE_S + RETRY_S
        site.proxy.resume()
        await until(lambda: only.working, 5)  # its own Lease, still: it leads again
    assert site.holder() == "a"


async def _429_on_the_lease_is_waited_out(site: Site) -> None:
    throttle(site.plane, namespace=site.namespace, account=ACCOUNT)
    with Burst(site) as burst:
        await until(lambda: 429 in burst.answers, 10)  # the priority level is full
        async with replicas(site, "a") as (only,):
            refused = await until(lambda: 429 in [r.code for r in site.lease_calls()], 20)
            print(f"first 429 on the Lease after {refused:.2f} s of burst")
            burst.stop()  # the burst ends: the elector's calls get through
            await until(lambda: only.working, 10)
    calls = site.lease_calls()
    codes = [r.code for r in calls]
    print([(r.verb, r.code, round(r.at - calls[0].at, 2)) for r in calls])
    assert 429 in codes, codes
    # after each 429 the next call waited out Retry-After (at least 1 s: APF sends a whole
    # number of seconds, 1 to 32), not the 0.2 s retry period
    for refused_call, following in itertools.pairwise(calls):
        if refused_call.code == 429:
            assert following.at - refused_call.at >= 1.0, (refused_call, following)


# -- the tests (no async test plugin here: each runs its scenario in a fresh loop) --------


def test_exactly_one_of_three_leads_and_a_crash_hands_over_within_the_lease(site: Site) -> None:
    asyncio.run(_exactly_one_of_three_leads_and_a_crash_hands_over_within_the_lease(site))


def test_a_leader_shut_down_releases_the_lease_and_the_next_takes_it_at_once(site: Site) -> None:
    asyncio.run(_a_leader_shut_down_releases_the_lease_and_the_next_takes_it_at_once(site))


def test_a_leader_that_cannot_renew_stops_leading_before_its_lease_runs_out(site: Site) -> None:
    asyncio.run(_a_leader_that_cannot_renew_stops_leading_before_its_lease_runs_out(site))


def test_429_on_the_lease_is_waited_out(site: Site) -> None:
    asyncio.run(_429_on_the_lease_is_waited_out(site))
