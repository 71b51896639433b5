"""The resource types the test server serves: one frozen `ResourceType` per (group, version,
resource), as discovery lists them. Two types may share one storage (core/v1 Events and
events.k8s.io/v1 Events are the same objects seen through two versions)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ResourceType:
    """One REST resource: `/apis/{group}/{version}/namespaces/{ns}/{plural}`."""

    group: str
    version: str
    plural: str
    kind: str
    singular: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    storage: str = ""  # shared storage name; defaults to group/plural

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def store_key(self) -> str:
        return self.storage or f"{self.group}/{self.plural}"

    @property
    def group_resource(self) -> str:
        """`jobs.batch`, `pods`: how errors name the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def group_kind(self) -> str:
        """`Job.batch`, `Pod`: how Invalid errors name the kind."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources


JOBS = ResourceType(
    "batch", "v1", "jobs", "Job", "job", subresources=("status",), categories=("all",)
)
PODS = ResourceType(
    "",
    "v1",
    "pods",
    "Pod",
    "pod",
    short_names=("po",),
    subresources=("status", "log", "eviction", "binding"),
    categories=("all",),
)
CONFIGMAPS = ResourceType("", "v1", "configmaps", "ConfigMap", "configmap", short_names=("cm",))
SECRETS = ResourceType("", "v1", "secrets", "Secret", "secret")
EVENTS = ResourceType("", "v1", "events", "Event", "event", short_names=("ev",), storage="events")
EVENTS_V1 = ResourceType(
    "events.k8s.io", "v1", "events", "Event", "event", short_names=("ev",), storage="events"
)
LEASES = ResourceType("coordination.k8s.io", "v1", "leases", "Lease", "lease")
NAMESPACES = ResourceType(
    "",
    "v1",
    "namespaces",
    "Namespace",
    "namespace",
    namespaced=False,
    short_names=("ns",),
    subresources=("status",),
)

ALL: tuple[ResourceType, ...] = (
    NAMESPACES,
    PODS,
    CONFIGMAPS,
    SECRETS,
    EVENTS,
    JOBS,
    EVENTS_V1,
    LEASES,
)

# The preferred version of each group, in discovery order.
GROUPS: dict[str, str] = {
    "": "v1",
    "batch": "v1",
    "events.k8s.io": "v1",
    "coordination.k8s.io": "v1",
}


def lookup(group: str, version: str, plural: str) -> ResourceType | None:
    for rt in ALL:
        if (rt.group, rt.version, rt.plural) == (group, version, plural):
            return rt
    return None


def in_group_version(group: str, version: str) -> list[ResourceType]:
    return [rt for rt in ALL if (rt.group, rt.version) == (group, version)]


def by_store_key(store_key: str) -> ResourceType:
    """The resource type objects of a storage are addressed through by default."""
    return next(rt for rt in ALL if rt.store_key == store_key)
