"""The Pod-only verbs: eviction (a DisruptionTarget condition, then a graceful delete),
binding (what the scheduler does) and logs (from the kubelet, here the simulator)."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Protocol

from tests.kubeapi.errors import bad_request, conflict
from tests.kubeapi.resources import PODS

if TYPE_CHECKING:
    from tests.kubeapi.registry import Registry, Result

Obj = dict[str, Any]


class LogSource(Protocol):
    """Where pod logs come from (the kubelet; here the simulator's)."""

    def read_log(self, pod: Obj, container: str, *, previous: bool) -> str | None:
        """The container's log, or None when it has not started."""

    def log_complete(self, pod: Obj, container: str) -> bool:
        """Whether the container has ended (no more log will come)."""


def _success() -> Obj:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


def evict(
    reg: Registry, namespace: str, name: str, body: Obj | None, *, reason: str, message: str
) -> Result:
    from tests.kubeapi.registry import Result

    pod = reg.stored(PODS, namespace, name)
    if pod.get("status", {}).get("phase") not in ("Succeeded", "Failed"):
        status = copy.deepcopy(pod.get("status") or {})
        conditions = [
            c for c in status.get("conditions") or [] if c.get("type") != "DisruptionTarget"
        ]
        conditions.append(
            {
                "type": "DisruptionTarget",
                "status": "True",
                "reason": reason,
                "message": message,
                "lastTransitionTime": reg.now(),
            }
        )
        status["conditions"] = conditions
        reg.update(PODS, namespace, name, {**pod, "status": status}, subresource="status")
    reg.delete(PODS, namespace, name, (body or {}).get("deleteOptions") or {})
    return Result(_success(), 201)


def bind(reg: Registry, namespace: str, name: str, node: str) -> Result:
    from tests.kubeapi.registry import Result

    pod = copy.deepcopy(reg.stored(PODS, namespace, name))
    if pod["spec"].get("nodeName"):
        raise conflict(
            PODS, name, f'pod {name} is already assigned to node "{pod["spec"]["nodeName"]}"'
        )
    if pod["metadata"].get("deletionTimestamp"):
        raise conflict(PODS, name, f"pod {name} is being deleted, cannot be assigned to a host")
    pod["spec"]["nodeName"] = node
    conditions = [
        c for c in pod["status"].get("conditions") or [] if c.get("type") != "PodScheduled"
    ]
    conditions.append({"type": "PodScheduled", "status": "True", "lastTransitionTime": reg.now()})
    pod["status"]["conditions"] = conditions
    reg.store.write(PODS.store_key, pod)
    return Result(_success(), 201)


def container_of(pod: Obj, container: str) -> str:
    """The container a log request names (the only one when it names none)."""
    spec, name = pod["spec"], pod["metadata"]["name"]
    names = [c["name"] for key in ("containers", "initContainers") for c in spec.get(key) or []]
    if not container:
        if len(spec["containers"]) > 1:
            raise bad_request(
                f"a container name must be specified for pod {name}, choose one "
                f"of: [{' '.join(names)}]"
            )
        return str(spec["containers"][0]["name"])
    if container not in names:
        raise bad_request(f"container {container} is not valid for pod {name}")
    return container


def read_log(
    source: LogSource | None, pod: Obj, *, container: str, tail_lines: int | None, previous: bool
) -> str:
    """The log, or the 400 the real server gives when there is none yet."""
    name = pod["metadata"]["name"]
    container = container_of(pod, container)
    if not pod["spec"].get("nodeName"):
        raise bad_request(f"pod {name} does not have a host assigned")
    text = source.read_log(pod, container, previous=previous) if source is not None else None
    if text is None:
        if previous:
            raise bad_request(
                f'previous terminated container "{container}" in pod "{name}" not found'
            )
        waiting = next(
            (
                s.get("state", {}).get("waiting", {}).get("reason", "")
                for s in pod.get("status", {}).get("containerStatuses") or []
                if s.get("name") == container
            ),
            "",
        )
        raise bad_request(
            f'container "{container}" in pod "{name}" is waiting to start: '
            f"{waiting or 'ContainerCreating'}"
        )
    if tail_lines is not None:
        lines = text.splitlines(keepends=True)
        text = "".join(lines[-tail_lines:]) if tail_lines > 0 else ""
    return text
