"""The Kubernetes API test server keeps the real API's contract: official client, raw HTTP
and kubectl against a server each test starts itself."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client

from tests.kubeapi.server import KubeApiServer
from tests.kubeapi.waiting import watch_events

Obj = dict[str, Any]


def job_manifest(name: str = "demo", **spec: Any) -> Obj:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            **spec,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "python:3.11", "command": ["true"]}],
                }
            },
        },
    }


def pod_manifest(name: str, labels: dict[str, str] | None = None, **meta: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}, **meta},
        "spec": {"containers": [{"name": "main", "image": "python:3.11"}]},
    }


@pytest.fixture
def server() -> Iterator[KubeApiServer]:
    with KubeApiServer(bookmark_interval_s=0.2) as started:
        yield started


@pytest.fixture
def api(server: KubeApiServer) -> Iterator[Any]:
    with server.api_client() as api_client:
        yield api_client


@pytest.fixture
def batch(api: Any) -> Any:
    return client.BatchV1Api(api)


@pytest.fixture
def core(api: Any) -> Any:
    return client.CoreV1Api(api)


@pytest.fixture
def http(server: KubeApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as raw:
        yield raw


def status_of(error: client.ApiException) -> Obj:
    body: Obj = json.loads(str(error.body))
    return body


def read_watch(
    http: httpx.Client,
    path: str,
    *,
    count: int | None = None,
    keep_bookmarks: bool = False,
    **params: Any,
) -> list[Obj]:
    """The events of a watch: until `count` of them; or else until the first bookmark (every
    change up to its version has been sent) or the end of the stream. Bookmarks are left out
    unless `keep_bookmarks` (then it reads to the end)."""
    query = {"watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": "10", **params}
    events: list[Obj] = []
    with http.stream("GET", path, params=query) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            event = json.loads(line)
            if event["type"] == "BOOKMARK" and not keep_bookmarks:
                if count is None:
                    break
                continue
            events.append(event)
            if count is not None and len(events) == count:
                break
    return events


KUBECTL = Path(sys.executable).parent / "kubectl"
JOBS = "/apis/batch/v1/namespaces/default/jobs"
PODS = "/api/v1/namespaces/default/pods"


def test_create_get_list_delete_with_the_official_client(batch: Any) -> None:
    created = batch.create_namespaced_job("default", job_manifest())
    meta = created.metadata
    assert meta.uid
    assert meta.creation_timestamp
    assert meta.generation == 1
    assert int(meta.resource_version) > 0
    spec = created.spec
    assert (spec.backoff_limit, spec.completions, spec.parallelism) == (6, 1, 1)
    assert (spec.completion_mode, spec.suspend) == ("NonIndexed", False)
    uid_label = "batch.kubernetes.io/controller-uid"
    assert spec.selector.match_labels == {uid_label: meta.uid}
    assert spec.template.metadata.labels == {
        uid_label: meta.uid,
        "batch.kubernetes.io/job-name": "demo",
        "controller-uid": meta.uid,
        "job-name": "demo",
    }
    container = spec.template.spec.containers[0]
    assert container.termination_message_path == "/dev/termination-log"
    assert container.termination_message_policy == "File"
    assert spec.template.spec.termination_grace_period_seconds == 30
    assert meta.labels == {"app": "demo"}

    got = batch.read_namespaced_job("demo", "default")
    assert got.metadata.resource_version == meta.resource_version
    listed = batch.list_namespaced_job("default")
    assert [j.metadata.name for j in listed.items] == ["demo"]
    assert listed.metadata.resource_version == meta.resource_version

    batch.delete_namespaced_job("demo", "default", propagation_policy="Background")
    with pytest.raises(client.ApiException) as missing:
        batch.read_namespaced_job("demo", "default")
    assert missing.value.status == 404
    assert status_of(missing.value)["reason"] == "NotFound"
    assert status_of(missing.value)["message"] == 'jobs.batch "demo" not found'


def test_label_and_field_selectors(core: Any) -> None:
    for name, labels in (
        ("a", {"tier": "web", "env": "prod"}),
        ("b", {"tier": "db"}),
        ("c", {"env": "dev"}),
    ):
        core.create_namespaced_pod("default", pod_manifest(name, labels))
    pod = core.read_namespaced_pod("b", "default")
    pod.status.phase = "Running"
    core.replace_namespaced_pod_status("b", "default", pod)

    def names(**query: str) -> list[str]:
        return [p.metadata.name for p in core.list_namespaced_pod("default", **query).items]

    assert names(label_selector="tier=web") == ["a"]
    assert names(label_selector="tier!=web") == ["b", "c"]
    assert names(label_selector="tier in (web,db)") == ["a", "b"]
    assert names(label_selector="tier notin (web)") == ["b", "c"]
    assert names(label_selector="env") == ["a", "c"]
    assert names(label_selector="!env") == ["b"]
    assert names(label_selector="tier,env=prod") == ["a"]
    assert names(field_selector="metadata.name=c") == ["c"]
    assert names(field_selector="status.phase=Running") == ["b"]
    assert names(field_selector="status.phase!=Running,metadata.namespace=default") == ["a", "c"]
    with pytest.raises(client.ApiException) as bad:
        names(field_selector="spec.nope=1")
    assert bad.value.status == 400

    involved = {"kind": "Pod", "name": "a", "namespace": "default"}
    for name, target in (("e1", involved), ("e2", {**involved, "name": "b"})):
        core.create_namespaced_event(
            "default",
            {
                "metadata": {"name": name},
                "involvedObject": target,
                "reason": "Tested",
                "message": "hello",
                "type": "Normal",
            },
        )
    events = core.list_namespaced_event("default", field_selector="involvedObject.name=a")
    assert [e.metadata.name for e in events.items] == ["e1"]


def test_resource_versions_increase_across_kinds(batch: Any, core: Any) -> None:
    versions = [
        int(
            core.create_namespaced_config_map(
                "default", {"metadata": {"name": "cm"}}
            ).metadata.resource_version
        ),
        int(batch.create_namespaced_job("default", job_manifest()).metadata.resource_version),
        int(
            core.patch_namespaced_config_map(
                "cm", "default", {"data": {"k": "v"}}
            ).metadata.resource_version
        ),
    ]
    assert versions == sorted(set(versions))
    assert int(core.list_namespaced_config_map("default").metadata.resource_version) == versions[-1]


def test_watch_from_a_resource_version_gets_exactly_the_later_changes(
    http: httpx.Client, batch: Any
) -> None:
    first = batch.create_namespaced_job("default", job_manifest("first"))
    since = first.metadata.resource_version
    second = batch.create_namespaced_job("default", job_manifest("second"))
    patched = batch.patch_namespaced_job("first", "default", {"spec": {"parallelism": 2}})
    batch.delete_namespaced_job("second", "default", propagation_policy="Background")

    events = read_watch(http, JOBS, resourceVersion=since)
    seen = [(e["type"], e["object"]["metadata"]["name"]) for e in events]
    assert seen == [("ADDED", "second"), ("MODIFIED", "first"), ("DELETED", "second")]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions[0] == int(second.metadata.resource_version)
    assert versions[1] == int(patched.metadata.resource_version)
    assert versions == sorted(versions)

    streamed = watch_events(batch.list_namespaced_job, "default", resource_version=since)
    assert [(e["type"], e["object"].metadata.name) for e in streamed] == seen


def test_watch_without_version_lists_first_and_selectors_move_objects(
    http: httpx.Client, core: Any
) -> None:
    core.create_namespaced_pod("default", pod_manifest("p", {"role": "worker"}))
    result: list[Obj] = []
    reader = threading.Thread(
        target=lambda: result.extend(read_watch(http, PODS, count=3, labelSelector="role=worker"))
    )
    reader.start()
    threading.Event().wait(0.3)
    core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"role": "idle"}}})
    core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"role": "worker"}}})
    reader.join()
    assert [e["type"] for e in result] == ["ADDED", "DELETED", "ADDED"]


def test_watch_bookmarks_and_timeout(http: httpx.Client, batch: Any) -> None:
    created = batch.create_namespaced_job("default", job_manifest())
    events = read_watch(
        http,
        JOBS,
        resourceVersion=created.metadata.resource_version,
        keep_bookmarks=True,
        timeoutSeconds=1,
    )
    assert events, "bookmarks expected every 0.2 s"
    assert {e["type"] for e in events} == {"BOOKMARK"}
    assert events[-1]["object"]["metadata"]["resourceVersion"] == created.metadata.resource_version


def test_compact_makes_older_versions_gone(
    server: KubeApiServer, http: httpx.Client, batch: Any
) -> None:
    old = batch.create_namespaced_job("default", job_manifest("old")).metadata.resource_version
    batch.create_namespaced_job("default", job_manifest("new"))
    page = batch.list_namespaced_job("default", limit=1)
    assert page.metadata.remaining_item_count == 1
    batch.create_namespaced_job("default", job_manifest("newer"))
    server.compact()

    events = read_watch(http, JOBS, resourceVersion=old)
    assert len(events) == 1
    assert events[0]["type"] == "ERROR"
    error = events[0]["object"]
    assert (error["kind"], error["code"], error["reason"]) == ("Status", 410, "Expired")
    assert error["message"].startswith(f"too old resource version: {old} (")
    with pytest.raises(client.ApiException) as gone:  # the official client raises it
        watch_events(batch.list_namespaced_job, "default", resource_version=old)
    assert gone.value.status == 410
    with pytest.raises(client.ApiException) as stale_page:
        batch.list_namespaced_job("default", limit=1, _continue=page.metadata._continue)
    assert stale_page.value.status == 410

    current = str(server.resource_version)
    assert read_watch(http, JOBS, resourceVersion=current) == []


def test_drop_watches_cuts_open_streams(server: KubeApiServer, http: httpx.Client) -> None:
    outcome: list[str] = []

    def reader() -> None:
        try:
            read_watch(http, JOBS, resourceVersion="0", timeoutSeconds=30)
            outcome.append("ended")
        except httpx.HTTPError as error:
            outcome.append(type(error).__name__)

    thread = threading.Thread(target=reader)
    thread.start()
    while server.app.open_watches == 0:
        threading.Event().wait(0.01)
    assert server.drop_watches() == 1
    thread.join(5)
    assert outcome == ["RemoteProtocolError"]
    assert server.app.open_watches == 0


def test_injected_429_carries_retry_after(server: KubeApiServer, http: httpx.Client) -> None:
    server.faults.fail_next(verb="create", resource="jobs", status=429, retry_after_s=2)
    refused = http.post(JOBS, json=job_manifest())
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "2"
    assert refused.json()["reason"] == "TooManyRequests"
    assert refused.json()["details"]["retryAfterSeconds"] == 2
    assert http.post(JOBS, json=job_manifest()).status_code == 201
    assert [(r.verb, r.status) for r in server.requests] == [("create", 429), ("create", 201)]

    server.faults.fail_rate(0.5, status=503, verb="get", resource="jobs")
    codes = [http.get(f"{JOBS}/demo").status_code for _ in range(40)]
    assert set(codes) == {200, 503}
    assert 5 < codes.count(503) < 35
    server.faults.clear()
    assert http.get(f"{JOBS}/demo").json()["kind"] == "Job"


def test_conflicts_on_duplicates_and_stale_updates(batch: Any) -> None:
    created = batch.create_namespaced_job("default", job_manifest())
    with pytest.raises(client.ApiException) as duplicate:
        batch.create_namespaced_job("default", job_manifest())
    assert duplicate.value.status == 409
    assert status_of(duplicate.value)["reason"] == "AlreadyExists"

    fresh = batch.patch_namespaced_job("demo", "default", {"spec": {"parallelism": 3}})
    stale = copy.deepcopy(created)
    stale.spec.parallelism = 5
    with pytest.raises(client.ApiException) as conflict:
        batch.replace_namespaced_job("demo", "default", stale)
    assert conflict.value.status == 409
    assert status_of(conflict.value)["reason"] == "Conflict"
    fresh.spec.parallelism = 4
    assert batch.replace_namespaced_job("demo", "default", fresh).spec.parallelism == 4


def test_invalid_jobs_are_rejected_with_422(http: httpx.Client, batch: Any) -> None:
    unknown = job_manifest()
    unknown["spec"]["surprise"] = True
    response = http.post(JOBS, json=unknown)
    assert response.status_code == 422
    causes = response.json()["details"]["causes"]
    assert [c["field"] for c in causes] == ["spec.surprise"]

    cases = {
        "Bad_Name": ("metadata.name", job_manifest("Bad_Name")),
        "long": ("spec.template.metadata.labels", job_manifest("x" * 64)),
    }
    always = job_manifest("always")
    always["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    cases["always"] = ("spec.template.spec.restartPolicy", always)
    policy = job_manifest(
        "policy",
        podFailurePolicy={
            "rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [2]}}]
        },
    )
    policy["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    cases["policy"] = ("spec.template.spec.restartPolicy", policy)
    for field, manifest in cases.values():
        with pytest.raises(client.ApiException) as invalid:
            batch.create_namespaced_job("default", manifest)
        assert invalid.value.status == 422
        body = status_of(invalid.value)
        assert body["reason"] == "Invalid"
        assert field in [c["field"] for c in body["details"]["causes"]], body

    created = batch.create_namespaced_job(
        "default",
        job_manifest(
            podFailurePolicy={
                "rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]
            },
            podReplacementPolicy="Failed",
        ),
    )
    assert created.spec.pod_failure_policy.rules[0].on_pod_conditions[0].status == "True"
    created.spec.template.spec.containers[0].image = "python:3.12"
    with pytest.raises(client.ApiException) as immutable:
        batch.replace_namespaced_job("demo", "default", created)
    assert immutable.value.status == 422
    assert [c["field"] for c in status_of(immutable.value)["details"]["causes"]] == [
        "spec.template"
    ]
    changed = batch.patch_namespaced_job(
        "demo",
        "default",
        {"spec": {"suspend": True, "parallelism": 2, "activeDeadlineSeconds": 60}},
    )
    assert (changed.spec.suspend, changed.spec.parallelism) == (True, 2)


def test_schemas_follow_the_server_version(http: httpx.Client) -> None:
    pod = pod_manifest("named")
    pod["spec"]["hostnameOverride"] = "custom"
    assert http.post(PODS, json=pod).status_code == 201
    with KubeApiServer(version="1.30.0") as older, httpx.Client(base_url=older.url) as raw:
        refused = raw.post(PODS, json=pod)
        assert refused.status_code == 422
        assert refused.json()["details"]["causes"][0]["field"] == "spec.hostnameOverride"


def test_status_subresource_is_kept_apart_from_spec(batch: Any) -> None:
    job = batch.create_namespaced_job("default", job_manifest())
    assert job.status.to_dict() == client.V1JobStatus().to_dict()

    job.status.succeeded = 1
    job.spec.parallelism = 2
    updated = batch.replace_namespaced_job("demo", "default", job)
    assert updated.status.succeeded is None
    assert (updated.spec.parallelism, updated.metadata.generation) == (2, 2)

    updated.status.succeeded = 1
    updated.spec.parallelism = 3
    with_status = batch.replace_namespaced_job_status("demo", "default", updated)
    assert with_status.status.succeeded == 1
    assert (with_status.spec.parallelism, with_status.metadata.generation) == (2, 2)
    patched = batch.patch_namespaced_job_status("demo", "default", {"status": {"failed": 2}})
    assert (patched.status.failed, patched.status.succeeded) == (2, 1)


def test_generate_name(core: Any) -> None:
    names = {
        core.create_namespaced_config_map(
            "default", {"metadata": {"generateName": "params-"}}
        ).metadata.name
        for _ in range(3)
    }
    assert len(names) == 3
    assert all(n.startswith("params-") and len(n) == len("params-") + 5 for n in names)


def test_background_deletion_takes_owned_pods_and_configmaps(
    http: httpx.Client, batch: Any, core: Any
) -> None:

    def owned_set(name: str) -> None:
        job = batch.create_namespaced_job("default", job_manifest(name))
        owner = [
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": name,
                "uid": job.metadata.uid,
                "controller": True,
            }
        ]
        core.create_namespaced_pod("default", pod_manifest(f"{name}-pod", ownerReferences=owner))
        core.create_namespaced_config_map(
            "default",
            {
                "metadata": {
                    "name": f"{name}-params",
                    "ownerReferences": [{**owner[0], "controller": False}],
                }
            },
        )

    owned_set("gone")
    owned_set("kept")
    batch.delete_namespaced_job("gone", "default", propagation_policy="Background")
    assert [p.metadata.name for p in core.list_namespaced_pod("default").items] == ["kept-pod"]
    assert [c.metadata.name for c in core.list_namespaced_config_map("default").items] == [
        "kept-params"
    ]

    default = http.delete(f"{JOBS}/kept")  # no policy: batch/v1 orphans the pods, and says so
    assert default.status_code == 200
    assert "child pods are preserved by default" in default.headers["warning"]
    orphan = core.read_namespaced_pod("kept-pod", "default")
    assert orphan.metadata.owner_references is None


def test_patch_formats_and_stale_patches(http: httpx.Client, core: Any) -> None:
    pod = pod_manifest("p")
    pod["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"}]
    core.create_namespaced_pod("default", pod)
    merged = core.patch_namespaced_pod(
        "p", "default", {"spec": {"containers": [{"name": "main", "image": "python:3.12"}]}}
    )  # strategic: merged by container name
    assert merged.spec.containers[0].env[0].value == "1"
    assert merged.spec.containers[0].image == "python:3.12"

    json_patch = [{"op": "add", "path": "/metadata/labels", "value": {"x": "y"}}]
    response = http.patch(
        f"{PODS}/p",
        content=json.dumps(json_patch),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert response.json()["metadata"]["labels"] == {"x": "y"}
    stale = {"metadata": {"resourceVersion": "1", "labels": {"x": "z"}}}
    response = http.patch(
        f"{PODS}/p", json=stale, headers={"Content-Type": "application/merge-patch+json"}
    )
    assert response.status_code == 409


def test_events_in_both_versions_and_leases(api: Any, http: httpx.Client, core: Any) -> None:
    events: Any = client.EventsV1Api(api)
    core.create_namespaced_event(
        "default",
        {
            "metadata": {"name": "job.1"},
            "involvedObject": {"kind": "Job", "name": "job", "namespace": "default"},
            "reason": "Started",
            "message": "it runs",
            "type": "Normal",
            "action": "Run",
            "eventTime": "2025-01-01T00:00:00.000000Z",
            "reportingComponent": "kubetask",
            "reportingInstance": "kubetask-0",
        },
    )
    seen = events.read_namespaced_event("job.1", "default")
    assert (seen.regarding.name, seen.note, seen.reason) == ("job", "it runs", "Started")
    invalid = http.post(
        "/apis/events.k8s.io/v1/namespaces/default/events",
        json={
            "metadata": {"name": "e2"},
            "reason": "X",
            "type": "Normal",
            "eventTime": "2025-01-01T00:00:00.000000Z",
        },
    )
    assert invalid.status_code == 422
    causes = {c["field"] for c in invalid.json()["details"]["causes"]}
    assert causes == {"reportingController", "reportingInstance", "action"}

    leases: Any = client.CoordinationV1Api(api)
    lease = leases.create_namespaced_lease(
        "default",
        {
            "metadata": {"name": "leader"},
            "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15},
        },
    )
    lease.spec.holder_identity = "b"
    renewed = leases.replace_namespaced_lease("leader", "default", lease)
    assert renewed.spec.holder_identity == "b"
    with pytest.raises(client.ApiException) as lost:
        leases.replace_namespaced_lease("leader", "default", lease)  # the old version
    assert lost.value.status == 409


def test_namespaces_admission_and_pod_logs(batch: Any, core: Any) -> None:
    with pytest.raises(client.ApiException) as missing:
        batch.create_namespaced_job("elsewhere", job_manifest())
    assert (missing.value.status, status_of(missing.value)["message"]) == (
        404,
        'namespaces "elsewhere" not found',
    )
    core.create_namespace(
        {
            "metadata": {
                "name": "secure",
                "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
            }
        }
    )
    with pytest.raises(client.ApiException) as forbidden:
        core.create_namespaced_pod("secure", pod_manifest("p"))
    assert forbidden.value.status == 403
    assert 'violates PodSecurity "restricted:latest"' in status_of(forbidden.value)["message"]
    priority = pod_manifest("q")
    priority["spec"]["priorityClassName"] = "urgent"
    with pytest.raises(client.ApiException) as no_class:
        core.create_namespaced_pod("default", priority)
    assert no_class.value.status == 403

    core.create_namespaced_pod("default", pod_manifest("waiting"))
    with pytest.raises(client.ApiException) as no_host:
        core.read_namespaced_pod_log("waiting", "default")
    assert no_host.value.status == 400


def test_kubectl_lists_and_shows_jobs(server: KubeApiServer, tmp_path: Path, batch: Any) -> None:
    managed = {"app.kubernetes.io/managed-by": "kubetask"}
    for name in ("kt-one", "kt-two"):
        manifest = job_manifest(name)
        manifest["metadata"]["labels"] = managed
        manifest["metadata"]["annotations"] = {"kubetask.io/request": '{"kind": "train"}'}
        batch.create_namespaced_job("default", manifest)
    batch.create_namespaced_job("default", job_manifest("other"))
    config = server.kubeconfig(tmp_path / "kubeconfig")

    def kubectl(*args: str) -> str:
        done = subprocess.run(
            [
                str(KUBECTL),
                "--kubeconfig",
                str(config),
                "--cache-dir",
                str(tmp_path / "cache"),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    listed = kubectl("get", "jobs", "-l", "app.kubernetes.io/managed-by=kubetask", "-o", "name")
    assert listed.split() == ["job.batch/kt-one", "job.batch/kt-two"]
    shown = kubectl("get", "job", "kt-one", "-o", "yaml")
    assert 'kubetask.io/request: \'{"kind": "train"}\'' in shown
    assert "batch.kubernetes.io/controller-uid" in shown
    table = kubectl("get", "jobs")
    assert table.split("\n")[0].split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert "deleted" in kubectl("delete", "job", "other")
    assert kubectl("get", "jobs", "-o", "name").split() == ["job.batch/kt-one", "job.batch/kt-two"]
