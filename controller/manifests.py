"""From a TaskSpec to the Kubernetes objects that run it: one `batch/v1` Job of one container
(and a ConfigMap owned by the Job when the params are too large for an environment
variable). Pure functions over plain data, so every rule here is tested without a server.

The pod runs under the `restricted` Pod Security Standard: non-root, no privilege
escalation, all capabilities dropped, seccomp RuntimeDefault, a read-only root filesystem
with writable `emptyDir`s for /tmp and /dev/shm.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubetask import env
from kubetask.controller.backends.base import TaskSpec
from kubetask.controller.records import JobStatus

Manifest = dict[str, Any]

CONTAINER = "task"
TASK_UID = 10001
MAX_ENV_PARAMS = 32 * 1024
PARAMS_DIR = "/etc/kubetask"
PARAMS_FILE = "params.json"
ARTIFACTS_DIR = "/artifacts"
SCRATCH_DIR = "/tmp/kubetask"  # HOME and XDG_DATA_HOME: writable although / is read-only

LABEL_JOB_ID = "kubetask.io/job-id"
LABEL_KIND = "kubetask.io/kind"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_QUEUE = "kueue.x-k8s.io/queue-name"
ANNOTATION_REQUEST = "kubetask.io/request"
ANNOTATION_INDEX = "batch.kubernetes.io/job-completion-index"
GPU_RESOURCE = "nvidia.com/gpu"


@dataclass(frozen=True)
class SecretKeyRef:
    """One key of a Kubernetes Secret in the Job's namespace: the kubelet reads it into the
    container's environment, so its value is never in the Job, its annotations or its
    events (and the controller needs no access to Secrets)."""

    name: str
    key: str

    def env_source(self) -> Manifest:
        return {"secretKeyRef": {"name": self.name, "key": self.key}}


@dataclass(frozen=True)
class ClusterSettings:
    """What every Job of this installation shares."""

    namespace: str = "default"
    instance: str = "kubetask"
    ttl_after_finished_s: int | None = 3600
    priority_classes: Mapping[str, str] = field(default_factory=dict)  # request -> class
    gpu_node_label: str = "nvidia.com/gpu.product"
    gpu_taint_key: str = GPU_RESOURCE
    artifacts_claim: str | None = "kubetask-artifacts"
    service_account: str | None = None
    image_pull_policy: str = "IfNotPresent"
    shm_size: str = "1Gi"
    # Environment variables every task reads from a Secret (e.g. KUBETASK_REDIS_URL, or a
    # KUBETASK_REDIS_PASSWORD that the URL names as $(KUBETASK_REDIS_PASSWORD)): they take
    # the place of a plain value of the same name, and come first, so that other values
    # may refer to them.
    secret_env: Mapping[str, SecretKeyRef] = field(default_factory=dict)


def job_name(job_id: str) -> str:
    """Deterministic, so creating again after a crash finds the Job instead of a twin."""
    return f"kt-{job_id}"


def job_id_of(name: str) -> str | None:
    """The job id in a Job's name (`job_name`'s inverse); None for a name not made so."""
    prefix = job_name("")
    return name[len(prefix) :] if name.startswith(prefix) and len(name) > len(prefix) else None


def params_configmap_name(job_id: str) -> str:
    return f"kt-{job_id}-params"


def selector(cluster: ClusterSettings) -> str:
    """The label selector for every object of this installation."""
    return f"{LABEL_MANAGED_BY}=kubetask,{LABEL_INSTANCE}={cluster.instance}"


def object_labels(spec: TaskSpec, cluster: ClusterSettings) -> dict[str, str]:
    return {
        **spec.labels,
        "app.kubernetes.io/name": "kubetask",
        LABEL_MANAGED_BY: "kubetask",
        "app.kubernetes.io/component": "task",
        LABEL_INSTANCE: cluster.instance,
        LABEL_JOB_ID: spec.job_id,
        LABEL_KIND: spec.kind,
    }


def needs_params_configmap(spec: TaskSpec) -> bool:
    return len(spec.env.get(env.PARAMS, "")) > MAX_ENV_PARAMS


def build_params_configmap(spec: TaskSpec, cluster: ClusterSettings) -> Manifest | None:
    """The params as a file, for params too large for an environment variable. Its owner
    reference to the Job is set once the Job exists (it needs the Job's uid)."""
    if not needs_params_configmap(spec):
        return None
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": params_configmap_name(spec.job_id),
            "namespace": cluster.namespace,
            "labels": object_labels(spec, cluster),
        },
        "data": {PARAMS_FILE: spec.env[env.PARAMS]},
    }


def owned_by(configmap: Manifest, job: Manifest) -> Manifest:
    """The ConfigMap, owned by the Job: deleting the Job deletes it too."""
    meta = job["metadata"]
    reference = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": meta["name"],
        "uid": meta["uid"],
        "blockOwnerDeletion": False,
    }
    return {**configmap, "metadata": {**configmap["metadata"], "ownerReferences": [reference]}}


def _resources(spec: TaskSpec) -> Manifest:
    amounts: dict[str, str] = {}
    if spec.resources.cpu:
        amounts["cpu"] = spec.resources.cpu
    if spec.resources.memory:
        amounts["memory"] = spec.resources.memory
    if spec.resources.gpu:
        amounts[GPU_RESOURCE] = str(spec.resources.gpu)
    return {"requests": dict(amounts), "limits": dict(amounts)} if amounts else {}


def _env(spec: TaskSpec, cluster: ClusterSettings) -> list[Manifest]:
    variables = dict(spec.env)
    if needs_params_configmap(spec):
        del variables[env.PARAMS]
        variables[env.PARAMS_FILE] = f"{PARAMS_DIR}/{PARAMS_FILE}"
    variables.setdefault(env.ARTIFACTS, ARTIFACTS_DIR)
    variables.update({"HOME": SCRATCH_DIR, "XDG_DATA_HOME": SCRATCH_DIR})
    secrets = {
        **{name: SecretKeyRef(*ref) for name, ref in spec.secret_env.items()},
        **cluster.secret_env,
    }
    entries: list[Manifest] = [
        {"name": name, "valueFrom": ref.env_source()} for name, ref in sorted(secrets.items())
    ]
    entries += [{"name": k, "value": v} for k, v in sorted(variables.items()) if k not in secrets]
    if spec.completions > 1:
        annotation = f"metadata.annotations['{ANNOTATION_INDEX}']"
        entries.append(
            {"name": env.COMPLETION_INDEX, "valueFrom": {"fieldRef": {"fieldPath": annotation}}}
        )
    return entries


def uses_object_storage(spec: TaskSpec) -> bool:
    """The task stages through object storage (KUBETASK_ARTIFACTS_URL=s3://...) in its own
    scratch folder: it mounts no shared artifacts volume, whatever the claim setting says."""
    return bool(spec.env.get(env.ARTIFACTS_URL))


def _volumes(spec: TaskSpec, cluster: ClusterSettings) -> tuple[list[Manifest], list[Manifest]]:
    volumes: list[Manifest] = [
        {"name": "scratch", "emptyDir": {}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": cluster.shm_size}},
    ]
    mounts: list[Manifest] = [
        {"name": "scratch", "mountPath": "/tmp"},
        {"name": "dshm", "mountPath": "/dev/shm"},
    ]
    if cluster.artifacts_claim and not uses_object_storage(spec):
        volumes.append(
            {"name": "artifacts", "persistentVolumeClaim": {"claimName": cluster.artifacts_claim}}
        )
        mounts.append({"name": "artifacts", "mountPath": ARTIFACTS_DIR})
    if needs_params_configmap(spec):
        volumes.append(
            {"name": "params", "configMap": {"name": params_configmap_name(spec.job_id)}}
        )
        mounts.append({"name": "params", "mountPath": PARAMS_DIR, "readOnly": True})
    return volumes, mounts


def _scheduling(spec: TaskSpec, cluster: ClusterSettings) -> Manifest:
    placement: Manifest = {}
    if spec.resources.gpu_type:
        placement["nodeSelector"] = {cluster.gpu_node_label: spec.resources.gpu_type}
    if spec.resources.gpu:
        placement["tolerations"] = [
            {"key": cluster.gpu_taint_key, "operator": "Exists", "effect": "NoSchedule"}
        ]
    if spec.priority:
        placement["priorityClassName"] = cluster.priority_classes[spec.priority]
    return placement


def _container(spec: TaskSpec, cluster: ClusterSettings, mounts: list[Manifest]) -> Manifest:
    container: Manifest = {
        "name": CONTAINER,
        "image": spec.image,
        "imagePullPolicy": cluster.image_pull_policy,
        "command": list(spec.command),
        "env": _env(spec, cluster),
        "volumeMounts": mounts,
        "terminationMessagePath": env.DEFAULT_TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    resources = _resources(spec)
    if resources:
        container["resources"] = resources
    return container


def build_job(spec: TaskSpec, cluster: ClusterSettings) -> Manifest:
    """The Job for one accepted request."""
    labels = object_labels(spec, cluster)
    pod_labels = dict(labels)
    if spec.queue:
        labels[LABEL_QUEUE] = spec.queue
    volumes, mounts = _volumes(spec, cluster)
    pod_spec: Manifest = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": int(spec.grace_s),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,  # no KUBETASK_PORT=tcp://... from the chart's Services
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": TASK_UID,
            "runAsGroup": TASK_UID,
            "fsGroup": TASK_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        **_scheduling(spec, cluster),
        "containers": [_container(spec, cluster, mounts)],
        "volumes": volumes,
    }
    if cluster.service_account:
        pod_spec["serviceAccountName"] = cluster.service_account
    job_spec: Manifest = {
        "backoffLimit": spec.retries,
        "completions": spec.completions,
        "parallelism": spec.parallelism,
        "podReplacementPolicy": "Failed",
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": CONTAINER,
                        "operator": "In",
                        "values": [env.EXIT_INVALID_PARAMS],
                    },
                },
                {
                    "action": "Ignore",
                    "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                },
            ]
        },
        "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
    }
    if spec.completions > 1:
        job_spec["completionMode"] = "Indexed"
    if spec.timeout_s is not None:
        job_spec["activeDeadlineSeconds"] = spec.timeout_s
    if cluster.ttl_after_finished_s is not None:
        job_spec["ttlSecondsAfterFinished"] = cluster.ttl_after_finished_s
    if spec.queue:
        job_spec["suspend"] = True  # Kueue admits it by unsuspending
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(spec.job_id),
            "namespace": cluster.namespace,
            "labels": labels,
            "annotations": {ANNOTATION_REQUEST: spec.request_json},
        },
        "spec": job_spec,
    }


def request_of(job: Manifest) -> dict[str, Any] | None:
    """The summary of the request kept on a Job (for `kubectl describe` and for audits): the
    request without its params and notify URL, with `params_bytes` (taskspec.py)."""
    raw = job.get("metadata", {}).get("annotations", {}).get(ANNOTATION_REQUEST)
    return json.loads(raw) if raw else None


def build_event(
    job: Manifest, status: JobStatus, *, now: datetime, reporting_instance: str
) -> Manifest:
    """A core/v1 Event on the Job for a state transition (`kubectl describe job` shows it)."""
    meta = job["metadata"]
    state = status.state.value
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        # Named as client-go names events: generateName may not end with a dot.
        "metadata": {
            "name": f"{meta['name']}.{int(now.timestamp() * 1e9):x}",
            "namespace": meta["namespace"],
        },
        "involvedObject": {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
        },
        "reason": state.capitalize(),
        "message": status.message or status.reason or state,
        "type": "Warning" if state == "failed" else "Normal",
        "source": {"component": "kubetask"},
        "reportingComponent": "kubetask",
        "reportingInstance": reporting_instance,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
