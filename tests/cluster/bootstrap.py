"""What an installation of kubetask needs in a real cluster, made as an operator would:
a namespace under the `restricted` Pod Security Standard, the chart's own ServiceAccount,
Role and RoleBinding (rendered by Helm's engine), the artifacts claim bound to a hostPath
PersistentVolume on a local folder, and a kubeconfig holding a token of the chart's
ServiceAccount (TokenRequest), so the controller runs with exactly the chart's rights."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import utils as k8s_utils
from kubernetes.client.exceptions import ApiException

from tests.cluster.control_plane import ControlPlane
from tests.component.chart import render

Obj = dict[str, Any]  # bodies go to the client as plain dicts: its APIs are used as Any
ARTIFACTS_CLAIM = "kubetask-artifacts"
RBAC_KINDS = ("ServiceAccount", "Role", "RoleBinding")


@dataclass(frozen=True)
class Installation:
    namespace: str
    kubeconfig: Path  # the controller's: the chart's ServiceAccount
    artifacts: Path
    account: str  # the controller's ServiceAccount

    @property
    def user(self) -> str:
        """The user the controller authenticates as."""
        return f"system:serviceaccount:{self.namespace}:{self.account}"


def admin_client(plane: ControlPlane) -> k8s.ApiClient:
    configuration = k8s.Configuration()
    k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(plane.kubeconfig), client_configuration=configuration
    )
    return k8s.ApiClient(configuration)


def restricted_namespace(api: k8s.ApiClient, name: str) -> None:
    labels = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
    core: Any = k8s.CoreV1Api(api)
    with contextlib.suppress(ApiException):
        core.create_namespace({"metadata": {"name": name, "labels": labels}})


@contextlib.contextmanager
def _already_there() -> Iterator[None]:
    """Creating what exists already is done (409, or the client's wrapper around one)."""
    try:
        yield
    except ApiException as error:
        if error.status != 409:
            raise
    except k8s_utils.FailToCreateError as error:
        if any(getattr(e, "status", None) != 409 for e in error.api_exceptions):
            raise


def bind_claim(
    api: k8s.ApiClient, *, namespace: str, claim: str, folder: Path, access: str = "ReadWriteOnce"
) -> None:
    """A PersistentVolumeClaim, and a hostPath PersistentVolume on `folder` reserved for it
    (the PersistentVolume binder binds the two, as for a statically provisioned volume)."""
    folder.mkdir(parents=True, exist_ok=True)
    core: Any = k8s.CoreV1Api(api)
    with _already_there():
        core.create_persistent_volume(
            {
                "metadata": {"name": f"{namespace}-{claim}"},
                "spec": {
                    "capacity": {"storage": "10Gi"},
                    "accessModes": [access],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": "",
                    "hostPath": {"path": str(folder), "type": "DirectoryOrCreate"},
                    "claimRef": {"namespace": namespace, "name": claim},
                },
            }
        )
    with contextlib.suppress(ApiException):  # the chart may have made it already
        core.create_namespaced_persistent_volume_claim(
            namespace,
            {
                "metadata": {"name": claim},
                "spec": {
                    "accessModes": [access],
                    "storageClassName": "",
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
        )


def chart_rbac(namespace: str, values: Obj | None = None) -> list[Obj]:
    """The chart's ServiceAccounts, Roles and RoleBindings for a release in `namespace`."""
    return [o for o in render(values, namespace=namespace) if o["kind"] in RBAC_KINDS]


def chart_priority_classes() -> list[Obj]:
    """The chart's PriorityClasses: what a job's `priority` names (without them its pods
    cannot be made). Cluster-wide, and a Helm install of the chart makes its own: only a
    cluster no release of the chart will go on gets them this way (`cluster.sh up`)."""
    return [o for o in render(None, namespace="default") if o["kind"] == "PriorityClass"]


def create_objects(plane: ControlPlane, objects: list[Obj]) -> None:
    """Create each object, keeping one already there."""
    with admin_client(plane) as api:
        for obj in objects:
            with _already_there():
                k8s_utils.create_from_dict(api, obj)  # type: ignore[no-untyped-call]


def controller_account(objects: list[Obj]) -> str:
    binding = next(o for o in objects if o["kind"] == "RoleBinding")
    return str(binding["subjects"][0]["name"])


def service_account_kubeconfig(
    plane: ControlPlane,
    api: k8s.ApiClient,
    *,
    namespace: str,
    account: str,
    path: Path,
    server: str | None = None,
) -> Path:
    request = {"spec": {"expirationSeconds": 24 * 3600}}
    core: Any = k8s.CoreV1Api(api)
    token: str = core.create_namespaced_service_account_token(
        account, namespace, request
    ).status.token
    return plane.write_kubeconfig(path, token=token, namespace=namespace, server=server)


def install(
    plane: ControlPlane,
    *,
    namespace: str,
    folder: Path,
    artifacts: Path,
    values: Obj | None = None,
    server: str | None = None,
) -> Installation:
    """Namespace, the chart's RBAC, the artifacts claim on the `artifacts` folder, and the
    controller's kubeconfig in `folder` (pointing at `server`, when a proxy stands in
    front of the API server)."""
    folder.mkdir(parents=True, exist_ok=True)
    with admin_client(plane) as api:
        restricted_namespace(api, namespace)
        objects = chart_rbac(namespace, values)
        for obj in objects:
            with _already_there():  # installing again (`cluster.sh up` twice) keeps them
                k8s_utils.create_from_dict(api, obj, namespace=namespace)  # type: ignore[no-untyped-call]
        bind_claim(api, namespace=namespace, claim=ARTIFACTS_CLAIM, folder=artifacts)
        account = controller_account(objects)
        kubeconfig = service_account_kubeconfig(
            plane,
            api,
            namespace=namespace,
            account=account,
            path=folder / "controller.kubeconfig",
            server=server,
        )
    return Installation(namespace, kubeconfig, artifacts, account)


def uninstall(plane: ControlPlane, installation: Installation) -> None:
    """Delete the namespace (its pods stop, the garbage collector does the rest) and the
    PersistentVolume; what the tasks wrote stays in the folder."""
    with admin_client(plane) as api, contextlib.suppress(ApiException):
        core = k8s.CoreV1Api(api)
        core.delete_namespace(installation.namespace, propagation_policy="Background")
        core.delete_persistent_volume(f"{installation.namespace}-{ARTIFACTS_CLAIM}")


def throttle(plane: ControlPlane, *, namespace: str, account: str) -> None:
    """API Priority and Fairness for one ServiceAccount: its own priority level with the
    smallest share of the server's concurrency (about 3 requests at once) and no queue, so
    its bursts are answered 429 with Retry-After by the API server itself."""
    level = f"kubetask-throttled-{namespace}"
    with admin_client(plane) as api:
        flow: Any = k8s.FlowcontrolApiserverV1Api(api)
        flow.create_priority_level_configuration(
            {
                "metadata": {"name": level},
                "spec": {
                    "type": "Limited",
                    "limited": {
                        "nominalConcurrencyShares": 1,
                        "lendablePercent": 0,
                        "borrowingLimitPercent": 0,  # no seats borrowed from other levels
                        "limitResponse": {"type": "Reject"},
                    },
                },
            }
        )
        everything = {
            "verbs": ["*"],
            "apiGroups": ["*"],
            "resources": ["*"],
            "namespaces": ["*"],
            "clusterScope": True,
        }
        flow.create_flow_schema(
            {
                "metadata": {"name": level},
                "spec": {
                    "priorityLevelConfiguration": {"name": level},
                    "matchingPrecedence": 150,  # before the built-in service-accounts schema
                    "distinguisherMethod": {"type": "ByUser"},
                    "rules": [
                        {
                            "subjects": [
                                {
                                    "kind": "ServiceAccount",
                                    "serviceAccount": {"name": account, "namespace": namespace},
                                }
                            ],
                            "resourceRules": [everything],
                            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                        }
                    ],
                },
            }
        )
