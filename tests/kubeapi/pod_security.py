"""Pod Security admission (`baseline` and `restricted`, latest): a namespace labelled
`pod-security.kubernetes.io/enforce=<level>` rejects violating Pods with 403; Jobs (workload
resources) and namespaces labelled `.../warn=<level>` get `Warning` headers instead. The
checks and messages follow the Pod Security Standards' reference implementation."""

from __future__ import annotations

import json
from typing import Any

Obj = dict[str, Any]

ENFORCE = "pod-security.kubernetes.io/enforce"
WARN = "pod-security.kubernetes.io/warn"
LEVELS = ("privileged", "baseline", "restricted")
_BASELINE_CAPS = {
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
}
_RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def _containers(spec: Obj) -> list[Obj]:
    return [
        c
        for key in ("initContainers", "containers", "ephemeralContainers")
        for c in spec.get(key) or []
    ]


def _names(containers: list[Obj]) -> str:
    quoted = ", ".join(json.dumps(c.get("name", "")) for c in containers)
    return f"container {quoted}" if len(containers) == 1 else f"containers {quoted}"


def _baseline(spec: Obj) -> list[str]:
    found = []
    hosts = [f"{k}=true" for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k)]
    if hosts:
        found.append(f"host namespaces ({', '.join(hosts)})")
    containers = _containers(spec)
    privileged = [c for c in containers if (c.get("securityContext") or {}).get("privileged")]
    if privileged:
        found.append(
            f"privileged ({_names(privileged)} must not set securityContext.privileged=true)"
        )
    for container in containers:
        added = ((container.get("securityContext") or {}).get("capabilities") or {}).get("add")
        extra = [c for c in added or [] if c not in _BASELINE_CAPS]
        if extra:
            found.append(
                f"non-default capabilities ({_names([container])} must not include "
                f"{', '.join(json.dumps(c) for c in extra)} in "
                "securityContext.capabilities.add)"
            )
    host_paths = [v["name"] for v in spec.get("volumes") or [] if "hostPath" in v]
    if host_paths:
        found.append(f"hostPath volumes (volume {', '.join(map(json.dumps, host_paths))})")
    for container in containers:
        ports = [p["hostPort"] for p in container.get("ports") or [] if p.get("hostPort")]
        if ports:
            found.append(
                f"hostPort ({_names([container])} uses hostPort {', '.join(map(str, ports))})"
            )
    return found


def _restricted(spec: Obj) -> list[str]:
    found = []
    pod_context = spec.get("securityContext") or {}
    containers = _containers(spec)
    for volume in spec.get("volumes") or []:
        kinds = [k for k in volume if k != "name" and k not in _RESTRICTED_VOLUMES]
        if kinds:
            found.append(
                f'restricted volume types (volume "{volume["name"]}" uses restricted '
                f'volume type "{kinds[0]}")'
            )
    escalating = [
        c
        for c in containers
        if (c.get("securityContext") or {}).get("allowPrivilegeEscalation") is not False
    ]
    if escalating:
        found.append(
            f"allowPrivilegeEscalation != false ({_names(escalating)} must set "
            "securityContext.allowPrivilegeEscalation=false)"
        )
    as_root = [
        c
        for c in containers
        if (c.get("securityContext") or {}).get("runAsNonRoot", pod_context.get("runAsNonRoot"))
        is not True
    ]
    if as_root:
        found.append(
            f"runAsNonRoot != true (pod or {_names(as_root)} must set "
            "securityContext.runAsNonRoot=true)"
        )
    if pod_context.get("runAsUser") == 0 or any(
        (c.get("securityContext") or {}).get("runAsUser") == 0 for c in containers
    ):
        found.append("runAsUser=0 (pod and containers must not set runAsUser=0)")
    pod_seccomp = (pod_context.get("seccompProfile") or {}).get("type")
    unconfined = [
        c
        for c in containers
        if ((c.get("securityContext") or {}).get("seccompProfile") or {}).get("type", pod_seccomp)
        not in ("RuntimeDefault", "Localhost")
    ]
    if unconfined:
        found.append(
            f"seccompProfile (pod or {_names(unconfined)} must set "
            'securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")'
        )
    not_dropped = [
        c
        for c in containers
        if "ALL"
        not in (((c.get("securityContext") or {}).get("capabilities") or {}).get("drop") or [])
    ]
    if not_dropped:
        found.append(
            f"unrestricted capabilities ({_names(not_dropped)} must set "
            'securityContext.capabilities.drop=["ALL"])'
        )
    return found


def violations(spec: Obj, level: str) -> list[str]:
    """What a pod spec does against a level's policy (empty: allowed)."""
    if level == "baseline":
        return _baseline(spec)
    if level == "restricted":
        return _baseline(spec) + _restricted(spec)
    return []


def describe(level: str, found: list[str]) -> str:
    return f'violates PodSecurity "{level}:latest": ' + ", ".join(found)
