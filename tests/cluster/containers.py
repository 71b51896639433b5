"""How a container of a Pod becomes a local process: its volumes as host folders, its
environment (values, `fieldRef`, `configMapKeyRef`, `envFrom`, `$(VAR)` expansion), its
command line and working directory.

Paths inside a container cannot exist on the host, so:
- each volume is a host folder: `emptyDir` and `configMap` volumes under the pod's folder (a
  configMap volume holds one file per key), a `persistentVolumeClaim` the folder the node agent
  maps the claim to, a `hostPath` the host path itself;
- any env value, argument or `workingDir` equal to or under a volumeMount's `mountPath` is
  rewritten to the same place under the host folder (`/artifacts/x` -> `<claim folder>/x`);
- the container's `terminationMessagePath` is a host file: env values equal to it are
  rewritten, and `KUBETASK_TERMINATION_LOG` names it;
- other absolute paths (a `workingDir` outside every mount) live under the pod's `rootfs/`;
- a leading `python`/`python3` runs `sys.executable`; a container must say its `command`
  (there are no images, so no entrypoints)."""

from __future__ import annotations

import base64
import os
import re
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from math import ceil
from pathlib import Path
from typing import Any

from tests.cluster.quantity import parse_quantity

Obj = dict[str, Any]
TERMINATION_ENV = "KUBETASK_TERMINATION_LOG"
_SUBSCRIPT = re.compile(r"metadata\.(labels|annotations)\['([^']+)'\]")


class ConfigError(Exception):
    """CreateContainerConfigError: the container's env cannot be resolved."""


class MountError(Exception):
    """FailedMount: a volume cannot be set up (the pod stays ContainerCreating)."""


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    termination_file: Path


ConfigMaps = Callable[[str, str], Obj | None]  # (namespace, name) -> ConfigMap
Secrets = Callable[[str, str], Obj | None]  # (namespace, name) -> Secret


def prepare_volumes(
    pod: Obj, pod_dir: Path, *, configmaps: ConfigMaps, claim_dir: Callable[[str, str], Path]
) -> dict[str, Path]:
    """Set up every volume of the pod as a host folder; MountError if one cannot be."""
    namespace = pod["metadata"]["namespace"]
    folders: dict[str, Path] = {}
    for volume in pod["spec"].get("volumes") or []:
        name = volume["name"]
        target = pod_dir / "volumes" / name
        if "emptyDir" in volume:
            target.mkdir(parents=True, exist_ok=True)
        elif "configMap" in volume:
            source = volume["configMap"]
            cm = configmaps(namespace, source.get("name", ""))
            if cm is None and not source.get("optional"):
                raise MountError(
                    f'MountVolume.SetUp failed for volume "{name}" : configmap '
                    f'"{source.get("name", "")}" not found'
                )
            if target.exists():
                shutil.rmtree(target)
            target.mkdir(parents=True)
            data = (cm or {}).get("data") or {}
            items = source.get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                if item["key"] in data:
                    path = target / item["path"]
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(data[item["key"]])
        elif "persistentVolumeClaim" in volume:
            target = claim_dir(namespace, volume["persistentVolumeClaim"]["claimName"])
            target.mkdir(parents=True, exist_ok=True)
        elif "hostPath" in volume:
            target = Path(volume["hostPath"]["path"])
        elif "secret" in volume and volume["secret"].get("optional"):
            target.mkdir(parents=True, exist_ok=True)
        else:
            kind = next((k for k in volume if k != "name"), "unknown")
            raise MountError(
                f'MountVolume.SetUp failed for volume "{name}" : the node agent '
                f"cannot mount {kind} volumes"
            )
        folders[name] = target
    return folders


def mounts(container: Obj, volumes: Mapping[str, Path]) -> list[tuple[str, Path]]:
    """(mountPath, host folder) pairs, longest mountPath first."""
    pairs = []
    for mount in container.get("volumeMounts") or []:
        host = volumes[mount["name"]]
        if mount.get("subPath"):
            host = host / mount["subPath"]
            host.mkdir(parents=True, exist_ok=True)
        pairs.append((mount["mountPath"].rstrip("/") or "/", host))
    return sorted(pairs, key=lambda pair: -len(pair[0]))


def rewrite(value: str, pairs: Sequence[tuple[str, Path]]) -> str:
    """A path under a mountPath, as the same path under the volume's host folder."""
    for mount_path, host in pairs:
        if value == mount_path:
            return str(host)
        if value.startswith(mount_path + "/"):
            return str(host / value[len(mount_path) + 1 :])
    return value


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: defined variables are replaced, `$$` is a `$`."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return re.sub(r"\$\$|\$\(([^)]*)\)", replace, value)


def _field(pod: Obj, path: str) -> str:
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": status.get("podIP", ""),
        "status.hostIP": status.get("hostIP", ""),
    }
    if path in simple:
        return str(simple[path])
    match = _SUBSCRIPT.fullmatch(path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        values = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
    raise ConfigError(f"unsupported fieldPath: {path}")


def _resource_field(container: Obj, ref: Obj) -> str:
    kind, _, name = ref["resource"].partition(".")
    amount = ((container.get("resources") or {}).get(kind) or {}).get(name)
    if amount is None:
        return "0"
    divisor = parse_quantity(ref.get("divisor", "1") or "1")
    return str(ceil(parse_quantity(amount) / divisor))


def _config_value(namespace: str, ref: Obj, configmaps: ConfigMaps) -> str | None:
    cm = configmaps(namespace, ref.get("name", ""))
    if cm is None:
        if ref.get("optional"):
            return None
        raise ConfigError(f'configmap "{ref.get("name", "")}" not found')
    data = cm.get("data") or {}
    if ref["key"] not in data:
        if ref.get("optional"):
            return None
        raise ConfigError(
            f"couldn't find key {ref['key']} in ConfigMap {namespace}/{ref.get('name', '')}"
        )
    return str(data[ref["key"]])


def _secret_value(namespace: str, ref: Obj, secrets: Secrets | None) -> str | None:
    secret = secrets(namespace, ref.get("name", "")) if secrets is not None else None
    if secret is None:
        if ref.get("optional"):
            return None
        raise ConfigError(f'secret "{ref.get("name", "")}" not found')
    data = secret.get("data") or {}
    if ref["key"] not in data:
        if ref.get("optional"):
            return None
        raise ConfigError(
            f"couldn't find key {ref['key']} in Secret {namespace}/{ref.get('name', '')}"
        )
    return base64.b64decode(str(data[ref["key"]])).decode()


def container_env(
    pod: Obj, container: Obj, *, configmaps: ConfigMaps, secrets: Secrets | None = None
) -> dict[str, str]:
    """The container's own environment, resolved; ConfigError if it cannot be."""
    namespace = pod["metadata"]["namespace"]
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        ref = source.get("configMapRef")
        if ref is None:
            if not (source.get("secretRef") or {}).get("optional"):
                raise ConfigError(
                    f'secret "{(source.get("secretRef") or {}).get("name")}" not found'
                )
            continue
        cm = configmaps(namespace, ref.get("name", ""))
        if cm is None and not ref.get("optional"):
            raise ConfigError(f'configmap "{ref.get("name", "")}" not found')
        for key, value in ((cm or {}).get("data") or {}).items():
            env[source.get("prefix", "") + key] = str(value)
    for variable in container.get("env") or []:
        source = variable.get("valueFrom")
        if source is None:
            env[variable["name"]] = expand(str(variable.get("value", "")), env)
            continue
        value = _value_from(pod, container, source, configmaps=configmaps, secrets=secrets)
        if value is not None:
            env[variable["name"]] = value
    return env


def _value_from(
    pod: Obj, container: Obj, source: Obj, *, configmaps: ConfigMaps, secrets: Secrets | None
) -> str | None:
    """One `valueFrom`; None for an optional reference to nothing."""
    namespace = pod["metadata"]["namespace"]
    if "fieldRef" in source:
        return _field(pod, source["fieldRef"]["fieldPath"])
    if "configMapKeyRef" in source:
        return _config_value(namespace, source["configMapKeyRef"], configmaps)
    if "resourceFieldRef" in source:
        return _resource_field(container, source["resourceFieldRef"])
    return _secret_value(namespace, source.get("secretKeyRef") or {}, secrets)


def _executable(argv0: str) -> str:
    if re.fullmatch(r"python(3(\.\d+)?)?", Path(argv0).name):
        return sys.executable
    return argv0


def build_launch(
    pod: Obj,
    container: Obj,
    *,
    pod_dir: Path,
    volumes: Mapping[str, Path],
    configmaps: ConfigMaps,
    base_env: Mapping[str, str],
    secrets: Secrets | None = None,
) -> Launch:
    """Everything needed to start the container as a process."""
    own = container_env(pod, container, configmaps=configmaps, secrets=secrets)
    pairs = mounts(container, volumes)
    termination = pod_dir / "termination" / container["name"]
    termination.parent.mkdir(parents=True, exist_ok=True)
    termination.write_bytes(b"")
    message_path = container.get("terminationMessagePath", "/dev/termination-log")
    env = {"HOSTNAME": pod["spec"].get("hostname") or pod["metadata"]["name"], **base_env}
    for key, value in own.items():
        env[key] = str(termination) if value == message_path else rewrite(value, pairs)
    env[TERMINATION_ENV] = str(termination)
    image = container.get("image", "")
    command = [expand(c, own) for c in container.get("command") or []]
    args = [expand(a, own) for a in container.get("args") or []]
    argv = [rewrite(part, pairs) if i else part for i, part in enumerate(command + args)]
    if not argv:  # an image's own entrypoint: there are no images here
        raise FileNotFoundError(f"no command specified, and {image} has no entrypoint here")
    argv[0] = _executable(argv[0])
    rootfs = pod_dir / "rootfs"
    working = container.get("workingDir", "")
    mapped = rewrite(working, pairs) if working else ""
    cwd = Path(mapped) if mapped and mapped != working else rootfs / working.lstrip("/")
    cwd.mkdir(parents=True, exist_ok=True)
    return Launch(argv, env, cwd, termination)


def default_base_env() -> dict[str, str]:
    """What every container starts with besides its own env: the host's PATH and locale."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
