"""The chart with several controller replicas: leader election on, a rolling update, the
Lease RBAC scoped to its name, and those grants compared with what a controller electing
itself actually sends to the real control plane, installed with that Role (which the API
server enforces)."""

from __future__ import annotations

import time
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest

from tests.cluster.control_plane import ControlPlane
from tests.component.chart import CHART, KUBE_VERSIONS, NAMESPACE, Obj, controller, one, render
from tests.component.test_chart import lint_problems, settings_from
from tests.conftest import kubernetes_stack

REPLICATED = {"replicaCount": 3}
LEASE = "kubetask-leader"


def lease_rules(role: Obj) -> list[Obj]:
    return [r for r in role["rules"] if "coordination.k8s.io" in r["apiGroups"]]


def test_one_replica_by_default_with_no_election_and_no_lease_rights(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    objects = render()
    deployment = controller(objects)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert lease_rules(one(objects, "Role")) == []
    assert settings_from(objects, monkeypatch).election() is None


@pytest.mark.parametrize("values", [REPLICATED, {"leaderElection": {"enabled": True}}])
def test_replicas_elect_a_leader_and_roll_one_pod_at_a_time(
    values: Obj, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = render(values)
    deployment = controller(objects)
    assert deployment["spec"]["replicas"] == values.get("replicaCount", 1)
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    pod_name = next(e for e in container["env"] if e["name"] == "POD_NAME")
    assert pod_name["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    monkeypatch.setenv("POD_NAME", "kubetask-7d9f-abcde")  # what the kubelet sets
    election = settings_from(objects, monkeypatch).election()
    assert election is not None
    assert (election.name, election.namespace) == (LEASE, NAMESPACE)
    assert election.identity == "kubetask-7d9f-abcde"
    assert (election.duration_s, election.renew_deadline_s, election.retry_period_s) == (15, 10, 2)
    assert lease_rules(one(objects, "Role")) == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [LEASE],
            "verbs": ["get", "update"],
        },
    ]
    for obj in objects:
        if obj["kind"] in ("Deployment", "Role"):
            for version in KUBE_VERSIONS:
                kubernetes_validate.validate(obj, version, strict=True)
    assert lint_problems(values, kube_version=KUBE_VERSIONS[0]) == []


@pytest.mark.parametrize(
    ("values", "refused"),
    [
        ({"replicaCount": 0}, "replicaCount"),
        ({"leaderElection": {"enabled": True, "leaseDurationSecond": 5}}, "leaseDurationSecond"),
        (
            {"leaderElection": {"enabled": True, "renewDeadlineSeconds": 20}},
            "retryPeriodSeconds < renewDeadlineSeconds < leaseDurationSeconds",
        ),
    ],
)
def test_bad_election_values_are_refused(values: Obj, refused: str) -> None:
    with (
        helm.Config(namespace=NAMESPACE) as config,
        pytest.raises(helm.HelmError, match=refused),
    ):
        config.install(str(CHART), "kubetask", values, dry_run="client")


def test_the_lease_rules_grant_exactly_what_an_electing_controller_uses(
    control_plane: ControlPlane, redis_db: str, tmp_path: Path
) -> None:
    (create, named) = lease_rules(one(render(REPLICATED), "Role"))
    with kubernetes_stack(
        control_plane,
        redis_db,
        tmp_path,
        values=REPLICATED,  # the Role with these rules, enforced by the API server
        leader_election=True,
        lease_name=named["resourceNames"][0],
        lease_duration_s=3,
        renew_deadline_s=2,
        retry_period_s=0.2,
    ) as stack:
        time.sleep(0.5)  # a few renewals
        stack.api.stop()  # and the release on the way out
        calls = [r for r in stack.controller_requests() if r.resource == "leases"]
    for call in calls:
        by_name = call.verb in named["verbs"] and call.name in named["resourceNames"]
        assert call.verb in create["verbs"] or by_name, f"{call.verb} {call.name} not granted"
    assert {r.verb for r in calls} == {*create["verbs"], *named["verbs"]}  # none unused
    # never refused (403); a 409 is optimistic concurrency at work (a renewal still in flight
    # when leading stopped), and the release reads the Lease again and still succeeds
    statuses = [(r.verb, r.code) for r in sorted(calls, key=lambda r: r.at)]
    assert all(status in (200, 201, 404, 409) for _, status in statuses), statuses
    assert [s for v, s in statuses if v == "update"][-1] == 200, statuses  # released
