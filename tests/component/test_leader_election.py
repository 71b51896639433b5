"""Leader election (controller/leader.py) against the Kubernetes API test server: real Lease
objects, resourceVersion conflicts, injected faults; several electors in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from controller.leader import ElectionSettings, LeaderElector
from tests.kubeapi import KubeApiServer

DURATION_S, RENEW_DEADLINE_S, RETRY_S = 2, 1.2, 0.2


@pytest.fixture
def kube() -> Iterator[KubeApiServer]:
    with KubeApiServer() as server:
        yield server


def elector(kube: KubeApiServer, identity: str) -> LeaderElector:
    settings = ElectionSettings(
        name="kubetask-leader",
        namespace="default",
        identity=identity,
        duration_s=DURATION_S,
        renew_deadline_s=RENEW_DEADLINE_S,
        retry_period_s=RETRY_S,
    )
    return LeaderElector(api=kube.api_client(), settings=settings)


class Replica:
    """An elector and the work it runs while leading (a flag the test reads)."""

    def __init__(self, kube: KubeApiServer, identity: str) -> None:
        self.elector = elector(kube, identity)
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
async def replicas(kube: KubeApiServer, *names: str) -> AsyncIterator[list[Replica]]:
    group = [Replica(kube, name) for name in names]
    for replica in group:
        replica.start()
    try:
        yield group
    finally:
        for replica in group:
            if replica.task is not None and not replica.task.done():
                await replica.crash()


def holder(kube: KubeApiServer) -> str:
    lease = kube.registry.store.get("coordination.k8s.io/leases", "default", "kubetask-leader")
    return "" if lease is None else str(lease["spec"].get("holderIdentity") or "")


async def until(condition: Callable[[], bool], timeout_s: float) -> float:
    """Seconds until `condition()` holds."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout_s, "timed out"
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def _exactly_one_of_three_leads_and_a_crash_hands_over_within_the_lease(
    kube: KubeApiServer,
) -> None:
    async with replicas(kube, "a", "b", "c") as group:
        await until(lambda: any(r.elector.leading for r in group), 5)
        await asyncio.sleep(3 * RETRY_S)  # long enough for anyone else to (wrongly) take it
        leaders = [r for r in group if r.elector.leading]
        assert len(leaders) == 1
        assert [r.working for r in group] == [r is leaders[0] for r in group]
        assert holder(kube) == leaders[0].elector.identity
        creates = [r for r in kube.requests if r.resource == "leases" and r.verb == "create"]
        assert [r.status for r in creates].count(201) == 1  # the others got 409 and followed

        old = leaders[0]
        await old.crash()
        handover = await until(lambda: any(r.elector.leading for r in group if r is not old), 10)
        print(f"handover after a crash: {handover:.2f} s (lease {DURATION_S} s)")
        assert handover <= DURATION_S + 2 * RETRY_S
        (new,) = [r for r in group if r.elector.leading]
        await until(lambda: new.working, 1)  # its work starts with its leadership
        assert holder(kube) == new.elector.identity
        lease = kube.registry.store.get("coordination.k8s.io/leases", "default", "kubetask-leader")
        assert lease is not None
        assert lease["spec"]["leaseTransitions"] == 1


async def _a_leader_shut_down_releases_the_lease_and_the_next_takes_it_at_once(
    kube: KubeApiServer,
) -> None:
    async with replicas(kube, "a", "b") as group:
        await until(lambda: any(r.elector.leading for r in group), 5)
        (old,) = [r for r in group if r.elector.leading]
        (other,) = [r for r in group if r is not old]
        await old.stop()
        handover = await until(lambda: other.elector.leading, 5)
        assert handover < DURATION_S / 2
        assert holder(kube) == other.elector.identity


async def _a_leader_that_cannot_renew_stops_leading_before_its_lease_runs_out(
    kube: KubeApiServer,
) -> None:
    async with replicas(kube, "a") as (only,):
        await until(lambda: only.working, 5)
        kube.faults.fail_next(resource="leases", status=503, times=None)
        lost = await until(lambda: not only.working, 5)
        assert lost <= RENEW_DEADLINE_S + RETRY_S
        kube.faults.clear()
        await until(lambda: only.working, 5)  # its own Lease, still: it leads again


async def _429_on_the_lease_is_waited_out(kube: KubeApiServer) -> None:
    kube.faults.fail_next(resource="leases", status=429, retry_after_s=1, times=1)
    async with replicas(kube, "a") as (only,):
        await until(lambda: only.working, 5)
    calls = [r for r in kube.requests if r.resource == "leases"]
    assert calls[0].status == 429
    assert calls[1].at - calls[0].at >= 1.0


# -- the tests (no async test plugin here: each runs its scenario in a fresh loop) --------


def test_exactly_one_of_three_leads_and_a_crash_hands_over_within_the_lease(
    kube: KubeApiServer,
) -> None:
    asyncio.run(_exactly_one_of_three_leads_and_a_crash_hands_over_within_the_lease(kube))


def test_a_leader_shut_down_releases_the_lease_and_the_next_takes_it_at_once(
    kube: KubeApiServer,
) -> None:
    asyncio.run(_a_leader_shut_down_releases_the_lease_and_the_next_takes_it_at_once(kube))


def test_a_leader_that_cannot_renew_stops_leading_before_its_lease_runs_out(
    kube: KubeApiServer,
) -> None:
    asyncio.run(_a_leader_that_cannot_renew_stops_leading_before_its_lease_runs_out(kube))


def test_429_on_the_lease_is_waited_out(kube: KubeApiServer) -> None:
    asyncio.run(_429_on_the_lease_is_waited_out(kube))
