"""The chart's Role grants exactly what the controller uses: the kubernetes backend runs
jobs through every path (create, observe, logs, large params, cancel, events) against the
Kubernetes API test server, and the verbs it sent are compared with the Role's rules."""

from __future__ import annotations

from tests.component.chart import one, render
from tests.component.test_chart import role_grants
from tests.conftest import KubeStack

CONTROLLER_AGENT = "OpenAPI-Generator"  # the official client's User-Agent


def used_grants(stack: KubeStack) -> dict[tuple[str, str], set[str]]:
    """(API group, resource[/subresource]) -> verbs, from what the controller sent."""
    used: dict[tuple[str, str], set[str]] = {}
    for request in stack.kube.requests:
        if not request.user_agent.startswith(CONTROLLER_AGENT) or not request.verb:
            continue
        parts = request.path.strip("/").split("/")
        group = "" if parts[0] == "api" else parts[1]
        resource = request.resource  # with its subresource: pods/log
        used.setdefault((group, resource), set()).add(request.verb)
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
    granted = role_grants(one(render(), "Role"))
    assert used, "no requests from the controller were seen"
    for target, verbs in used.items():
        assert verbs <= granted.get(target, set()), f"{target}: {verbs} not granted"
    # ... and nothing granted goes unused, but for `get` on jobs: the controller reads a Job
    # when its cache has not seen it yet (after a 409 on create, or a transition recorded
    # before the watch delivered it), which this run may or may not hit.
    unused = {t: v - used.get(t, set()) for t, v in granted.items()}
    assert {t: v for t, v in unused.items() if v} in ({}, {("batch", "jobs"): {"get"}})
