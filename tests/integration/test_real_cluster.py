"""What only a real control plane shows, and where kubetask once misread it: the upstream Job
controller's suspend, back-off, pod failure policy and two-step final conditions; pods it
cannot create; pods the scheduler cannot place; creates the API refuses for good; evictions;
`kubectl logs` through the API server. Each test runs in a namespace of its own under the
`restricted` Pod Security Standard, with the controller as the chart's ServiceAccount."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.cluster.bootstrap import chart_priority_classes, create_objects
from tests.conftest import KubeStack
from tests.servers import ApiServer

KUBECTL = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "kubectl")


def states_seen(api: ApiServer, job_id: str) -> list[tuple[str, str | None]]:
    """Every (state, reason) the job's stream published, to its end."""
    return [(e["state"], e.get("reason")) for e in api.events(job_id) if e["type"] == "state"]


def wait_for(check: Any, what: str, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return found


def job_pods(stack: KubeStack, job_id: str) -> list[Any]:
    with stack.client() as client:
        pods = k8s.CoreV1Api(client).list_namespaced_pod(
            stack.namespace, label_selector=f"kubetask.io/job-id={job_id}"
        )
    return list(pods.items)


def set_suspend(stack: KubeStack, job_id: str, suspend: bool) -> None:
    """What Kueue does: admit (unsuspend) or preempt (suspend) a Job."""
    with stack.client() as client:
        k8s.BatchV1Api(client).patch_namespaced_job(
            f"kt-{job_id}", stack.namespace, {"spec": {"suspend": suspend}}
        )


def test_a_job_preempted_by_its_queue_is_queued_again_never_failed(kube_stack: KubeStack) -> None:
    """Kueue suspends a running Job to preempt it: the Job controller deletes its pods
    (removing their tracking finalizers first: they are not failures) and the Job stays
    Suspended. Admitted again, it runs to the end."""
    api = kube_stack.api
    job_id = api.submit("noop", {"steps": 200, "step_s": 0.05}, queue="team-a")
    held = wait_for(  # its Job exists, suspended, waiting for the queue
        lambda: (job := api.job(job_id))["reason"] == "Suspended" and job, "the suspended Job"
    )
    assert held["state"] == "queued"
    set_suspend(kube_stack, job_id, False)
    api.wait(job_id, {"running"})
    set_suspend(kube_stack, job_id, True)
    preempted = wait_for(
        lambda: (job := api.job(job_id))["reason"] == "Suspended" and job, "the job to requeue"
    )
    assert preempted["state"] == "queued"
    wait_for(lambda: not job_pods(kube_stack, job_id), "the preempted pod to go")
    time.sleep(1.5)  # the Job controller's status writes trail its pods by about a second
    assert api.job(job_id)["state"] == "queued"
    set_suspend(kube_stack, job_id, False)
    done = api.wait(job_id, timeout_s=90)
    assert (done["state"], done["attempts"]) == ("succeeded", 1)
    assert ("failed", "BackoffLimitExceeded") not in states_seen(api, job_id)


def test_a_retry_waits_out_the_job_controllers_back_off(kube_stack: KubeStack) -> None:
    api = kube_stack.api
    job_id = api.submit("noop", {"fail": "exit", "fail_attempts": 1}, retries=1)
    done = api.wait(job_id, timeout_s=90)
    assert (done["state"], done["attempts"]) == ("succeeded", 2)
    assert done["result"]["attempt"] == 2
    seen = states_seen(api, job_id)
    first_run = seen.index(("running", None))
    # between the tries: the back-off (RetryBackoff), or the new pod already made
    between = seen[first_run + 1]
    assert between in (("pending", "RetryBackoff"), ("pending", "PodPending")), seen
    for event in api.events(job_id):
        if event.get("reason") == "RetryBackoff":
            assert event["message"] == "retrying after 1 failed attempt(s)"


def test_a_job_that_fails_for_good_goes_straight_to_failed(kube_stack: KubeStack) -> None:
    """The pod fails before the Job controller has counted it, and the Job's conditions come
    a second later: no moment of "retrying after 0 failed attempts" in between."""
    api = kube_stack.api
    job_id = api.submit("noop", {"fail": "exit"}, retries=0)
    done = api.wait(job_id, timeout_s=60)
    assert (done["state"], done["reason"], done["attempts"]) == (
        "failed",
        "BackoffLimitExceeded",
        1,
    )
    seen = states_seen(api, job_id)
    assert ("pending", "RetryBackoff") not in seen
    assert seen[-2:] == [("running", None), ("failed", "BackoffLimitExceeded")], seen

    def traced() -> list[tuple[str, str]]:
        with kube_stack.client() as client:
            events = k8s.CoreV1Api(client).list_namespaced_event(
                kube_stack.namespace, field_selector=f"involvedObject.name=kt-{job_id}"
            )
        return [
            (str(e.reason), str(e.message))
            for e in events.items
            if e.source and e.source.component == "kubetask"
        ]

    def failed_traced() -> list[tuple[str, str]]:
        found = traced()
        return found if any(reason == "Failed" for reason, _ in found) else []

    ours = wait_for(failed_traced, "the Failed Event")
    assert not [m for _, m in ours if "retrying" in m], ours  # no Event for a retry either


def test_pods_the_job_controller_cannot_create_show_why(kube_stack: KubeStack) -> None:
    """A ResourceQuota leaves no room for a pod: the Job controller's FailedCreate Event
    becomes the job's pending reason, with the quota's words."""
    with kube_stack.client() as client:
        core: Any = k8s.CoreV1Api(client)
        core.create_namespaced_resource_quota(
            kube_stack.namespace, {"metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}}
        )
    api = kube_stack.api
    job_id = api.submit("noop", start_timeout_s=30)
    job = wait_for(
        lambda: (job := api.job(job_id))["reason"] == "FailedCreate" and job, "FailedCreate"
    )
    assert job["state"] == "pending"
    assert "exceeded quota" in job["message"]


def test_a_create_the_api_refuses_for_good_fails_the_job_with_its_words(
    kube_stack: KubeStack,
) -> None:
    """An admission policy (a ValidatingAdmissionPolicy: CEL in the API server, what a
    webhook would do) denies the Job: the job fails at once, CreateRejected, instead of
    being recreated every second."""
    namespace = kube_stack.namespace
    policy = f"no-blocked-teams-{namespace}"
    with kube_stack.client() as client:
        admission: Any = k8s.AdmissionregistrationV1Api(client)
        admission.create_validating_admission_policy(
            {
                "metadata": {"name": policy},
                "spec": {
                    "failurePolicy": "Fail",
                    "matchConstraints": {
                        "resourceRules": [
                            {
                                "apiGroups": ["batch"],
                                "apiVersions": ["v1"],
                                "operations": ["CREATE"],
                                "resources": ["jobs"],
                            }
                        ]
                    },
                    "validations": [
                        {
                            "expression": "object.metadata.?labels.team.orValue('') != 'blocked'",
                            "message": "team blocked may not run jobs",
                        }
                    ],
                },
            }
        )
        admission.create_validating_admission_policy_binding(
            {
                "metadata": {"name": policy},
                "spec": {
                    "policyName": policy,
                    "validationActions": ["Deny"],
                    "matchResources": {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": namespace}
                        }
                    },
                },
            }
        )
    api = kube_stack.api
    allowed = api.submit("noop", labels={"team": "vision"})
    # the binding takes effect within a second or two: until then, jobs are allowed
    wait_for(lambda: api.wait(allowed)["state"] == "succeeded", "an allowed job")
    refused = wait_for(
        lambda: (
            (job := api.wait(api.submit("noop", labels={"team": "blocked"})))["state"] == "failed"
            and job
        ),
        "the policy to refuse a job",
        timeout_s=30,
    )
    assert refused["reason"] == "CreateRejected"
    assert "team blocked may not run jobs" in refused["message"]
    assert refused["attempts"] == 0


def test_an_evicted_pod_is_replaced_and_not_counted_as_a_try(kube_stack: KubeStack) -> None:
    """An eviction (a drain, preemption by the scheduler) marks the pod DisruptionTarget;
    the pod failure policy ignores it: the job is pending while the pod terminates, then a
    new pod runs it to the end, and the eviction is no attempt."""
    api = kube_stack.api
    job_id = api.submit("noop", {"steps": 40, "step_s": 0.1}, retries=0)
    wait_for(lambda: api.job(job_id)["progress"], "the task to report progress")
    (pod,) = job_pods(kube_stack, job_id)
    with kube_stack.client() as client:
        core: Any = k8s.CoreV1Api(client)
        core.create_namespaced_pod_eviction(
            pod.metadata.name,
            kube_stack.namespace,
            {"metadata": {"name": pod.metadata.name, "namespace": kube_stack.namespace}},
        )
    done = api.wait(job_id, timeout_s=90)
    assert (done["state"], done["attempts"]) == ("succeeded", 1), states_seen(api, job_id)
    assert done["result"]["attempt"] == 2, (
        states_seen(api, job_id),
        job_pods(kube_stack, job_id),
    )  # the task itself ran twice: the second to the end
    seen = states_seen(api, job_id)
    after = seen[seen.index(("running", None)) :]
    assert {s for s, _ in after} <= {"running", "pending", "succeeded"}, after  # never new again
    assert {r for s, r in after if s == "pending"} <= {
        "PodTerminating",
        "PodReplacing",
        "PodPending",
    }


def test_kubectl_logs_reads_the_task_log_through_the_api_server(kube_stack: KubeStack) -> None:
    api = kube_stack.api
    job_id = api.submit("noop", {"steps": 300, "step_s": 0.05})
    api.wait(job_id, {"running"})
    command = [KUBECTL, "--kubeconfig", str(kube_stack.kubeconfig), "logs", f"job/kt-{job_id}"]

    def logs() -> str:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    text = wait_for(lambda: "stage steps" in (out := logs()) and out, "the task's log")
    assert f"noop task of job {job_id} (index 0) starting" in text
    assert api.client.delete(f"/v1/jobs/{job_id}").status_code == 202


def test_a_job_past_its_deadline_goes_from_running_to_failed_never_pending(
    kube_stack: KubeStack,
) -> None:
    """The Job controller deletes the pods as soon as `activeDeadlineSeconds` is over, and
    writes the failure after: that deletion is no eviction ("pending, a replacement starts"),
    and the transition counted is running -> failed."""
    api = kube_stack.api
    job_id = api.submit("noop", {"steps": 60, "step_s": 1}, timeout_s=4)
    done = api.wait(job_id, timeout_s=90)
    assert (done["state"], done["reason"]) == ("failed", "DeadlineExceeded")
    seen = states_seen(api, job_id)
    assert [state for state, _ in seen][-2:] == ["running", "failed"], seen
    assert ("pending", "PodTerminating") not in seen


def test_a_cancelled_indexed_jobs_archived_log_keeps_every_worker(kube_stack: KubeStack) -> None:
    """Cancelled while its workers wait out the back-off: deleting the Job deletes their
    pods, their logs with them. The log read before the delete is the one archived (it was
    empty, or one worker's)."""
    api = kube_stack.api
    params = {"steps": 2, "step_s": 0.1, "fail": "exit", "fail_attempts": 1}
    job_id = api.submit("noop", params, parallelism=2, completions=2, retries=2)
    wait_for(lambda: api.job(job_id)["reason"] == "RetryBackoff", "the back-off")
    api.client.delete(f"/v1/jobs/{job_id}")
    assert api.wait(job_id, timeout_s=60)["state"] == "cancelled"

    def archived() -> str:
        response = api.client.get(f"/v1/jobs/{job_id}/logs")
        return response.text if response.status_code == 200 and response.text else ""

    text = wait_for(archived, "the archived log")
    assert "==> index 0 <==" in text
    assert "==> index 1 <==" in text

    def cancelled_event() -> list[str]:  # written after the Job went: Events outlive it
        with kube_stack.client() as client:
            events = k8s.CoreV1Api(client).list_namespaced_event(
                kube_stack.namespace, field_selector=f"involvedObject.name=kt-{job_id}"
            )
        return [str(e.message) for e in events.items if e.reason == "Cancelled"]

    assert wait_for(cancelled_event, "the Cancelled Event") == ["cancelled on request"]


@pytest.fixture
def priority_classes(kube_stack: KubeStack) -> Iterator[None]:
    """The chart's PriorityClasses, as `cluster.sh up` makes them; deleted after, so that a
    Helm install of the chart on this cluster makes its own."""
    made = chart_priority_classes()
    create_objects(kube_stack.plane, made)
    yield
    with kube_stack.client() as client:
        for obj in made:
            k8s.SchedulingV1Api(client).delete_priority_class(obj["metadata"]["name"])


@pytest.mark.usefixtures("priority_classes")
def test_a_job_with_a_priority_runs_under_the_charts_priority_class(kube_stack: KubeStack) -> None:
    """`cluster.sh up` makes the chart's PriorityClasses: without them a job with a
    `priority` waited in FailedCreate until its deadline."""
    api = kube_stack.api
    job_id = api.submit("noop", priority="high")
    assert api.wait(job_id, timeout_s=60)["state"] == "succeeded"
    (pod,) = job_pods(kube_stack, job_id)
    assert pod.spec.priority_class_name == "kubetask-high"
