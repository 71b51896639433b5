"""What the process node agent says about its nodes, as a kubelet would: the Node objects
(a GPU node labelled and tainted as GPU nodes are) and their status (capacity, conditions,
addresses, the port its logs are served on). Pure data."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]
GPU_LABEL = "nvidia.com/gpu.product"
GPU_PRODUCT = "NVIDIA-H200"
GPU_RESOURCE = "nvidia.com/gpu"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def node_manifest(name: str, *, gpu: bool) -> Obj:
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
    }
    spec: Obj = {}
    if gpu:
        labels |= {GPU_LABEL: GPU_PRODUCT, "nvidia.com/gpu.present": "true"}
        spec["taints"] = [{"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }


def node_status(*, gpu: bool, port: int) -> Obj:
    amounts = {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    if gpu:
        amounts[GPU_RESOURCE] = "2"
    stamp = now()
    healthy = [
        ("MemoryPressure", "KubeletHasSufficientMemory"),
        ("DiskPressure", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "KubeletHasSufficientPID"),
    ]
    conditions = [
        {
            "type": t,
            "status": "False",
            "reason": r,
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": stamp,
        }
        for t, r in healthy
    ]
    conditions.append(
        {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "the process node agent is posting ready status",
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": stamp,
        }
    )
    return {
        "capacity": amounts,
        "allocatable": amounts,
        "conditions": conditions,
        "addresses": [
            {"type": "InternalIP", "address": "127.0.0.1"},
            {"type": "Hostname", "address": "localhost"},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "nodeInfo": {
            "kubeletVersion": "v1.37.2",
            "operatingSystem": "linux",
            "architecture": "amd64",
            "containerRuntimeVersion": "process://local",
            "kernelVersion": "",
            "osImage": "kubetask process node",
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
            "kubeProxyVersion": "",
        },
    }
