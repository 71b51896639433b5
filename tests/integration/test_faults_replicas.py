"""Two controller replicas (two API processes, one Redis, the real control plane, both
running as the chart's ServiceAccount): a coordination.k8s.io Lease elects the one that
reconciles, both serve the API, and when the leader is SIGKILLed the other takes over within
the lease duration. The API server's audit log witnesses the Lease writes and Job creations."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.cluster.control_plane import ControlPlane
from tests.conftest import KubeStack, kubernetes_stack
from tests.integration.test_faults import assert_one_job_each, wait_all
from tests.servers import ApiServer

DURATION_S, RENEW_DEADLINE_S, RETRY_S = 3, 2.0, 0.5
GRACE_S = 30  # the chart's terminationGracePeriodSeconds
LEASE = "kubetask-leader"
REPLICATED = {"replicaCount": 2}  # the chart's Role then grants the Lease
ELECTION = {
    "leader_election": True,
    "lease_duration_s": DURATION_S,
    "renew_deadline_s": RENEW_DEADLINE_S,
    "retry_period_s": RETRY_S,
    "resync_s": 30,  # so that a job taken by the follower starts by its wake-up, not a resync
}


def lease(stack: KubeStack) -> dict[str, Any]:
    """The Lease as the API server has it (read as admin)."""
    with stack.client() as api:
        leases: Any = k8s.CoordinationV1Api(api)
        response = leases.read_namespaced_lease(LEASE, stack.namespace, _preload_content=False)
        found: dict[str, Any] = json.loads(response.data)
        return found


def holder(stack: KubeStack) -> str:
    return str(lease(stack)["spec"].get("holderIdentity") or "")


def transitions_seen(api: ApiServer) -> float:
    """State transitions this replica's reconciler made (its /metrics)."""
    total = 0.0
    for line in api.client.get("/metrics").text.splitlines():
        if line.startswith("kubetask_job_transitions_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def lease_writes(stack: KubeStack) -> list[float]:
    """When the Lease was written (created, renewed, taken over), from the audit log: epoch
    seconds, in order."""
    return sorted(
        r.at
        for r in stack.controller_requests()
        if r.resource == "leases" and r.verb in ("create", "update") and r.code in (200, 201)
    )


@contextlib.contextmanager
def replicated(control_plane: ControlPlane, redis_db: str, tmp_path: Path) -> Iterator[KubeStack]:
    """The chart installed for two replicas (its Role grants the Lease), the first replica
    (`replica-a`) running."""
    with kubernetes_stack(
        control_plane,
        redis_db,
        tmp_path,
        values=REPLICATED,
        leader_identity="replica-a",
        **ELECTION,
    ) as stack:
        yield stack


def second_replica(stack: KubeStack, redis_db: str, tmp_path: Path) -> ApiServer:
    """The second replica: the same installation, ServiceAccount and proxy (not started)."""
    return ApiServer(
        redis_url=redis_db,
        data_dir=tmp_path / "api-b",
        backend="kubernetes",
        kubeconfig=str(stack.installation.kubeconfig),
        namespace=stack.namespace,
        leader_identity="replica-b",
        **ELECTION,
    )


def test_one_replica_leads_both_serve_and_a_killed_leader_hands_over(
    control_plane: ControlPlane, redis_db: str, tmp_path: Path
) -> None:
    with replicated(control_plane, redis_db, tmp_path) as stack:
        a = stack.api
        b = second_replica(stack, redis_db, tmp_path)
        try:
            b.start()
            time.sleep(3 * RETRY_S)  # b has looked at the Lease a few times
            assert holder(stack) == "replica-a"
            assert lease(stack)["spec"]["leaseTransitions"] == 0

            before = [
                (a if i % 2 == 0 else b).submit("noop", {"steps": 15, "step_s": 0.1})
                for i in range(6)
            ]
            taken_by_b = before[1::2]
            submitted = time.monotonic()
            for job_id in taken_by_b:  # the follower's jobs start at once (a wake-up)
                b.wait(job_id, {"running", "succeeded"}, timeout_s=10)
            prompt = time.monotonic() - submitted
            assert prompt < 10
            for job_id in before:  # both replicas answer for every job
                assert a.job(job_id)["id"] == b.job(job_id)["id"] == job_id
            assert transitions_seen(a) > 0
            assert transitions_seen(b) == 0  # the follower reconciles nothing

            a.wait(before[0], {"running"})
            killed = time.time()
            a.kill()
            while holder(stack) != "replica-b":
                assert time.time() - killed < DURATION_S + 4 * RETRY_S + 5, "no handover"
                time.sleep(0.02)
            writes = lease_writes(stack)
            last_renewal = max(at for at in writes if at < killed)  # replica-a's
            took_over = min(at for at in writes if at > killed)  # replica-b's first
            after_kill = took_over - killed
            after_renewal = took_over - last_renewal
            # b saw a's last renewal at most one retry period after it was written, and
            # notices the expiry at most one retry period after it happens
            assert after_renewal <= DURATION_S + 2 * RETRY_S + 0.5
            assert lease(stack)["spec"]["leaseTransitions"] == 1

            after = [b.submit("noop", {"steps": 2}) for _ in range(3)]
            views = wait_all(b, [*before, *after], timeout_s=60)
            assert {v["state"] for v in views.values()} == {"succeeded"}
            assert all(v["attempts"] == 1 for v in views.values()), "a task ran twice"
            assert all(v["result"]["attempt"] == 1 for v in views.values())
            assert transitions_seen(b) > 0
            duplicates = assert_one_job_each(stack, [*before, *after])
        finally:
            b.close()
    print(
        f"\nreplicas: 2 (lease {DURATION_S} s, retry {RETRY_S} s); jobs={len(before) + len(after)}"
        f" (3 taken by the follower, started within {prompt:.1f} s)"
        f" handover={after_kill:.2f}s after the SIGKILL, {after_renewal:.2f}s after the last"
        f" renewal; lost=0 duplicates={duplicates}"
    )


def _holds(stack: KubeStack, identity: str) -> bool:
    with contextlib.suppress(ApiException):  # 404: not created yet
        return holder(stack) == identity
    return False


def test_a_leader_sigtermed_with_streams_open_releases_the_lease_and_exits(
    control_plane: ControlPlane, redis_db: str, tmp_path: Path
) -> None:
    with replicated(control_plane, redis_db, tmp_path) as stack:
        api = stack.api
        deadline = time.monotonic() + 10
        while not _holds(stack, "replica-a"):
            assert time.monotonic() < deadline, "no leader"
            time.sleep(0.05)
        job_id = api.submit("noop", {"steps": 600, "step_s": 0.1})
        api.wait(job_id, {"running"}, timeout_s=30)
        with contextlib.ExitStack() as streams:  # a dashboard tab and a follower, never leaving
            client = streams.enter_context(httpx.Client(base_url=api.base_url, timeout=30))
            for path in ("/v1/events", f"/v1/jobs/{job_id}/events"):
                assert streams.enter_context(client.stream("GET", path)).status_code == 200
            assert api.process is not None
            sent = time.monotonic()
            api.process.send_signal(signal.SIGTERM)
            api.process.wait(GRACE_S)
            took = time.monotonic() - sent
            api.process = None
        assert took < 10
        assert holder(stack) == "", "the Lease was left to expire"
    print(f"\nleader SIGTERMed with 2 streams open: exited in {took:.2f} s, the Lease released")


def test_a_leader_paused_past_its_lease_steps_down_as_it_resumes(
    control_plane: ControlPlane, redis_db: str, tmp_path: Path
) -> None:
    """A frozen node: the leader paused (SIGSTOP) while it reconciles a running job, the
    follower takes over, then the leader resumes. It stops leading at once (its work ended,
    though the stop came as its Redis commands were under way: on Python 3.11 redis-py's
    sends lost such a cancel, and the old leader reconciled on beside the new one, or left
    the election for good and ignored SIGTERM), reconciles nothing more, and exits on
    SIGTERM."""
    with replicated(control_plane, redis_db, tmp_path) as stack:
        a = stack.api
        b = second_replica(stack, redis_db, tmp_path)
        try:
            b.start()
            deadline = time.monotonic() + 10
            while not _holds(stack, "replica-a"):
                assert time.monotonic() < deadline, "no leader"
                time.sleep(0.05)
            busy = a.submit("noop", {"steps": 300, "step_s": 0.02})  # progress: Redis at work
            a.wait(busy, {"running"}, timeout_s=30)
            assert a.process is not None
            a.process.send_signal(signal.SIGSTOP)
            try:
                paused = time.monotonic()
                while not _holds(stack, "replica-b"):
                    assert time.monotonic() - paused < DURATION_S + 10, "no handover"
                    time.sleep(0.05)
            finally:
                a.process.send_signal(signal.SIGCONT)
            resumed = time.monotonic()
            while "replica-a stopped leading" not in a.log_tail():
                assert time.monotonic() - resumed < 10, "the resumed leader leads on"
                time.sleep(0.05)
            seen = transitions_seen(a)
            after = [b.submit("noop", {"steps": 2}) for _ in range(3)]
            views = wait_all(b, [busy, *after], timeout_s=60)
            assert {v["state"] for v in views.values()} == {"succeeded"}
            assert transitions_seen(a) == seen, "the old leader reconciled beside the new one"
            assert_one_job_each(stack, [busy, *after])
            a.process.send_signal(signal.SIGTERM)
            a.process.wait(10)  # raises if it ignores it
            a.process = None
        finally:
            b.close()
