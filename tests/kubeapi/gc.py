"""Deletion as the API server and the garbage collector do it together: preconditions,
graceful deletion (`deletionTimestamp` + `deletionGracePeriodSeconds`), finalizers, the
propagation policies, and the collection of dependents by `ownerReferences`.

- Background: the object goes at once; then every object it owned whose owners are all gone
  is deleted (a Pod gracefully), and dangling owner references are dropped.
- Foreground: the object gets the `foregroundDeletion` finalizer and stays (with a
  deletionTimestamp) until its dependents are gone.
- Orphan: the object gets the `orphan` finalizer; its dependents lose their reference to it;
  then it goes.

The collector here is synchronous (it runs within the deleting request) where the real one is
asynchronous; the sequence of watch events is the same."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from tests.kubeapi.errors import ApiError, conflict
from tests.kubeapi.resources import ALL, NAMESPACES, ResourceType, by_store_key

if TYPE_CHECKING:
    from tests.kubeapi.registry import Registry, Result

Obj = dict[str, Any]

JOB_ORPHAN_WARNING = (
    "child pods are preserved by default when jobs are deleted; set "
    "propagationPolicy=Background to remove them or set propagationPolicy=Orphan to suppress "
    "this warning"
)
POLICIES = ("Foreground", "Background", "Orphan")


def _policy(reg: Registry, rt: ResourceType, options: Obj) -> str:
    policy, orphan = options.get("propagationPolicy"), options.get("orphanDependents")
    prefix = 'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: '
    if policy and orphan is not None:
        raise ApiError(
            422,
            "Invalid",
            prefix + 'Invalid value: "' + policy + '": '
            "orphanDependents and deletionPropagation cannot be both set",
        )
    if policy:
        if policy not in POLICIES:
            raise ApiError(
                422,
                "Invalid",
                prefix + f'Unsupported value: "{policy}": supported '
                'values: "Foreground", "Background", "Orphan"',
            )
        return str(policy)
    if orphan is not None:
        return "Orphan" if orphan else "Background"
    return reg.strategy(rt).default_propagation


def _check_preconditions(rt: ResourceType, obj: Obj, preconditions: Obj) -> None:
    meta = obj["metadata"]
    for key, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
        wanted = preconditions.get(key)
        if wanted and wanted != meta.get(key):
            raise conflict(
                rt,
                meta["name"],
                f"Precondition failed: {label} in precondition: "
                f"{wanted}, {label} in object meta: {meta.get(key)}",
            )


def _success(rt: ResourceType, obj: Obj) -> Obj:
    details: Obj = {
        "name": obj["metadata"]["name"],
        "kind": rt.plural,
        "uid": obj["metadata"]["uid"],
    }
    if rt.group:
        details["group"] = rt.group
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }


def _all_objects(reg: Registry, namespace: str) -> list[tuple[ResourceType, Obj]]:
    found = []
    for store_key in dict.fromkeys(rt.store_key for rt in ALL):
        rt = by_store_key(store_key)
        scope = namespace if rt.namespaced else ""
        found += [(rt, o) for o in reg.store.scan(store_key, scope)]
    return found


def dependents(reg: Registry, owner: Obj) -> list[tuple[ResourceType, Obj]]:
    uid = owner["metadata"]["uid"]
    namespace = owner["metadata"].get("namespace", "")
    return [
        (rt, obj)
        for rt, obj in _all_objects(reg, namespace)
        if any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])
    ]


def _by_uid(reg: Registry, namespace: str, uid: str) -> tuple[ResourceType, Obj] | None:
    return next(
        ((rt, o) for rt, o in _all_objects(reg, namespace) if o["metadata"]["uid"] == uid), None
    )


def _rewrite(reg: Registry, rt: ResourceType, obj: Obj, **meta: Any) -> Obj:
    new = copy.deepcopy(obj)
    new["metadata"].update(meta)
    return reg.store.write(rt.store_key, new)


def delete(reg: Registry, rt: ResourceType, obj: Obj, options: Obj, *, dry_run: bool) -> Result:
    from tests.kubeapi.registry import Result

    meta = obj["metadata"]
    _check_preconditions(rt, obj, options.get("preconditions") or {})
    policy = _policy(reg, rt, options)
    explicit = options.get("propagationPolicy") or options.get("orphanDependents") is not None
    warnings = (JOB_ORPHAN_WARNING,) if rt.store_key == "batch/jobs" and not explicit else ()
    strategy = reg.strategy(rt)
    grace = strategy.grace_period_s(obj, options.get("gracePeriodSeconds"))
    if dry_run:
        return Result(reg.encode(rt, obj), 200, warnings)
    if rt == NAMESPACES:
        return Result(reg.encode(rt, _delete_namespace(reg, obj)), 200)
    owned = dependents(reg, obj)
    finalizers = list(meta.get("finalizers") or [])
    added = {"Orphan": "orphan", "Foreground": "foregroundDeletion"}.get(policy)
    if owned and added and added not in finalizers and not meta.get("deletionTimestamp"):
        finalizers.append(added)
    if not meta.get("deletionTimestamp") and not finalizers and grace == 0:
        gone = remove(reg, rt, obj)
        body = reg.encode(rt, gone) if strategy.returns_deleted_object else _success(rt, obj)
        return Result(body, 200, warnings)
    if meta.get("deletionTimestamp"):
        if grace >= (meta.get("deletionGracePeriodSeconds") or 0):
            return Result(reg.encode(rt, obj), 200, warnings)
        stored = _rewrite(
            reg, rt, obj, deletionGracePeriodSeconds=grace, deletionTimestamp=reg.now(grace)
        )
    else:
        changes: Obj = {
            "deletionTimestamp": reg.now(grace),
            "deletionGracePeriodSeconds": grace,
            "finalizers": finalizers,
        }
        if "generation" in meta:
            changes["generation"] = meta["generation"] + 1
        stored = _rewrite(reg, rt, obj, **changes)
    if policy == "Orphan" and owned:
        _orphan(reg, stored, owned)
    elif policy == "Foreground" and owned:
        for dep_rt, dep in owned:
            _delete_dependent(reg, dep_rt, dep)
    _finish(reg, rt, stored)
    latest = reg.store.get(rt.store_key, meta.get("namespace", ""), meta["name"]) or stored
    return Result(reg.encode(rt, latest), 200, warnings)


def _delete_dependent(reg: Registry, rt: ResourceType, obj: Obj) -> None:
    meta = obj["metadata"]
    current = reg.store.get(rt.store_key, meta.get("namespace", ""), meta["name"])
    if current is not None:
        delete(reg, rt, current, {"propagationPolicy": "Background"}, dry_run=False)


def _orphan(reg: Registry, owner: Obj, owned: list[tuple[ResourceType, Obj]]) -> None:
    uid = owner["metadata"]["uid"]
    for rt, dep in owned:
        refs = [r for r in dep["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
        if refs:
            _rewrite(reg, rt, dep, ownerReferences=refs)
        else:
            _drop_refs(reg, rt, dep)
    _remove_finalizer(reg, owner, "orphan")


def _drop_refs(reg: Registry, rt: ResourceType, obj: Obj) -> None:
    new = copy.deepcopy(obj)
    new["metadata"].pop("ownerReferences", None)
    reg.store.write(rt.store_key, new)


def _remove_finalizer(reg: Registry, obj: Obj, finalizer: str) -> None:
    meta = obj["metadata"]
    found = _by_uid(reg, meta.get("namespace", ""), meta["uid"])
    if found is None:
        return
    rt, current = found
    remaining = [f for f in current["metadata"].get("finalizers") or [] if f != finalizer]
    stored = _rewrite(reg, rt, current, finalizers=remaining)
    _finish(reg, rt, stored)


def _finish(reg: Registry, rt: ResourceType, obj: Obj) -> None:
    """Remove an object being deleted once nothing holds it any more."""
    meta = obj["metadata"]
    current = reg.store.get(rt.store_key, meta.get("namespace", ""), meta["name"])
    if current is None or current["metadata"]["uid"] != meta["uid"]:
        return
    current_meta = current["metadata"]
    if (
        current_meta.get("deletionTimestamp")
        and not current_meta.get("finalizers")
        and not (current_meta.get("deletionGracePeriodSeconds"))
    ):
        remove(reg, rt, current)


def remove(reg: Registry, rt: ResourceType, obj: Obj) -> Obj:
    """Remove from storage, then collect: dependents whose owners are all gone, owners waiting
    in foreground deletion, and a terminating namespace now empty."""
    meta = obj["metadata"]
    namespace = meta.get("namespace", "")
    gone = reg.store.remove(rt.store_key, namespace, meta["name"])
    for dep_rt, dep in dependents(reg, obj):
        refs = dep["metadata"].get("ownerReferences") or []
        living = [
            r
            for r in refs
            if r.get("uid") != meta["uid"] and _by_uid(reg, namespace, r.get("uid", "")) is not None
        ]
        if living:
            _rewrite(reg, dep_rt, dep, ownerReferences=living)
        else:
            _delete_dependent(reg, dep_rt, dep)
    for ref in meta.get("ownerReferences") or []:
        found = _by_uid(reg, namespace, ref.get("uid", ""))
        if found is None:
            continue
        owner_meta = found[1]["metadata"]
        waiting = "foregroundDeletion" in (owner_meta.get("finalizers") or [])
        if owner_meta.get("deletionTimestamp") and waiting and not dependents(reg, found[1]):
            _remove_finalizer(reg, found[1], "foregroundDeletion")
    if namespace:
        _reap_namespace(reg, namespace)
    return gone


def _delete_namespace(reg: Registry, ns: Obj) -> Obj:
    name = ns["metadata"]["name"]
    if not ns["metadata"].get("deletionTimestamp"):
        new = copy.deepcopy(ns)
        new["metadata"]["deletionTimestamp"] = reg.now()
        new["metadata"]["deletionGracePeriodSeconds"] = 0
        new["status"] = {"phase": "Terminating"}
        reg.store.write(NAMESPACES.store_key, new)
        for rt, obj in _all_objects(reg, name):
            if rt.namespaced:
                _delete_dependent(reg, rt, obj)
    _reap_namespace(reg, name)
    return reg.store.get(NAMESPACES.store_key, "", name) or ns


def _reap_namespace(reg: Registry, name: str) -> None:
    ns = reg.store.get(NAMESPACES.store_key, "", name)
    if ns is None or not ns["metadata"].get("deletionTimestamp"):
        return
    if not any(rt.namespaced for rt, _ in _all_objects(reg, name)):
        reg.store.remove(NAMESPACES.store_key, "", name)
