"""The chart's Role grants exactly what the controller uses: the kubernetes backend,
authenticated as the chart's ServiceAccount with only the chart's Role bound, runs jobs
through every path (create, observe, logs, large params, cancel, events) against the real
API server, whose RBAC authorizer must allow each call; the calls it made (from the API
server's audit log) are compared with the Role's rules."""

from __future__ import annotations

from tests.component.chart import one, render
from tests.component.test_chart import role_grants
from tests.conftest import KubeStack


def used_grants(stack: KubeStack) -> dict[tuple[str, str], set[str]]:
    """(API group, resource[/subresource]) -> verbs, from what the controller sent."""
    used: dict[tuple[str, str], set[str]] = {}
    for request in stack.controller_requests():
        if request.resource:  # not discovery
            used.setdefault((request.group, request.resource), set()).add(request.verb)
    return used


def test_the_role_grants_exactly_what_the_controller_uses(kube_stack: KubeStack) -> None:
    api = kube_stack.api
    done = api.submit("noop", {"steps": 2})
    big = api.submit("noop", {"steps": 1, "payload": "x" * 40_000})  # params in a ConfigMap
    assert api.wait(done)["state"] == "succeeded"
    assert api.wait(big)["state"] == "succeeded"
    assert api.client.get(f"/v1/jobs/{done}/logs").status_code == 200
    running = api.submit("noop", {"steps": 300, "step_s": 0.1})
    api.wait(running, {"running"})
    assert api.client.delete(f"/v1/jobs/{running}").status_code == 202
    assert api.wait(running)["state"] == "cancelled"

    used = used_grants(kube_stack)
    refused = [r for r in kube_stack.controller_requests() if r.code == 403]
    assert refused == [], "the real RBAC authorizer refused calls the controller made"
    granted = role_grants(one(render(), "Role"))
    assert used, "no requests from the controller were seen"
    for target, verbs in used.items():
        assert verbs <= granted.get(target, set()), f"{target}: {verbs} not granted"
    # ... and nothing granted goes unused, but for `get` on jobs: the controller reads a Job
    # when its cache has not seen it yet (after a 409 on create, or a transition recorded
    # before the watch delivered it), which this run may or may not hit.
    unused = {t: v - used.get(t, set()) for t, v in granted.items()}
    assert {t: v for t, v in unused.items() if v} in ({}, {("batch", "jobs"): {"get"}})
