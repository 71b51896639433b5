"""A Kubernetes API test server and a Job-controller/scheduler/kubelet simulator, for tests
that need "a cluster" where none can run.

    from tests.kubeapi import KubeApiServer, Simulator, SimNode

    with KubeApiServer() as server, Simulator(server, workdir=tmp_path) as sim:
        kubeconfig = server.kubeconfig(tmp_path / "kubeconfig")  # client or kubectl
        with server.api_client() as api: ...                     # official client

What the server keeps of the real API (what kubetask touches): batch/v1 Jobs (+status),
core/v1 Pods (+status, log, eviction, binding), ConfigMaps, Events (core/v1 and
events.k8s.io/v1, one storage), coordination.k8s.io/v1 Leases, Namespaces; create (with
generateName), get, list (label/field selectors, limit/continue), watch (from a
resourceVersion, bookmarks, timeoutSeconds, 410 Expired after `compact()`), update, patch
(merge, strategic merge, JSON patch), delete (preconditions, grace periods, finalizers,
Background/Foreground/Orphan propagation and garbage collection by ownerReferences),
deletecollection; uid, one global resourceVersion, creationTimestamp, generation,
deletionTimestamp; status kept apart from spec; 409 on stale writes; strict schema
validation (kubernetes-validate, for the server's `version`) plus the rules a schema cannot
say (names, labels, annotation size, Job selector/restartPolicy/podFailurePolicy/immutable
template, pod spec and pod updates, ConfigMap keys and size, Events); defaulting (Jobs,
pods, admission plugins' service account/priority/tolerations); Pod Security admission
(namespace labels) and PriorityClass checks; Status errors with real codes and messages;
discovery, a minimal OpenAPI v3 and Tables so that kubectl works; injectable faults.

Simplified (see each module): no authentication/TLS; JSON only (no protobuf/CBOR bodies,
so `kubectl create job --image` and `kubectl run` fail with 415); no server-side apply
(415) and no managedFields; unknown fields are always rejected (422, or 400 with
`fieldValidation=Strict`) where a real server by default drops them with a warning; the
garbage collector runs synchronously within the deleting request; a later list page reads
the current state (its token still expires like the real one); strategic merge patch knows
merge keys by field name; Table output covers the served kinds' main columns.
"""

from tests.kubeapi.faults import Faults, RequestRecord
from tests.kubeapi.scheduler import SimNode
from tests.kubeapi.server import KubeApiServer
from tests.kubeapi.simulator import Simulator, SimulatorError
from tests.kubeapi.waiting import wait_for, watch_events

__all__ = [
    "Faults",
    "KubeApiServer",
    "RequestRecord",
    "SimNode",
    "Simulator",
    "SimulatorError",
    "wait_for",
    "watch_events",
]
