"""Create, update and patch with the real server's sequence: decode (nulls dropped, kind
checked), strict schema validation, namespace checks, defaulting, system fields (uid,
creationTimestamp, generation, generateName), the strategy's validation and admission, then
the write — skipped when nothing changed, as etcd's GuaranteedUpdate skips it. Writes to the
main resource keep the status; writes to `/status` change only the status."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from tests.kubeapi import gc
from tests.kubeapi.errors import (
    ApiError,
    FieldError,
    already_exists,
    bad_request,
    conflict,
    forbidden,
    invalid_error,
    not_found_error,
)
from tests.kubeapi.events import from_events_v1
from tests.kubeapi.patch import apply_patch
from tests.kubeapi.resources import EVENTS_V1, NAMESPACES, ResourceType
from tests.kubeapi.strategies import check_kind
from tests.kubeapi.validation import validate_metadata

if TYPE_CHECKING:
    from tests.kubeapi.registry import Registry, Result

Obj = dict[str, Any]
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery's SimpleNameGenerator alphabet
_KEPT_ON_UPDATE = (
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
)


def _decode(reg: Registry, rt: ResourceType, body: Any, name: str, field_validation: str) -> Obj:
    """The body as a stored object: kind checked, schema-valid, in the storage's version."""
    external = check_kind(rt, body)
    meta = external["metadata"]
    errors = reg.schema.errors(external)
    unknown = [e for e in errors if e.detail.startswith("unknown field")]
    if field_validation == "Strict" and unknown and len(unknown) == len(errors):
        listed = ", ".join(e.detail for e in unknown)
        raise bad_request(
            f'{rt.kind} in version "{rt.version}" cannot be handled as a '
            f"{rt.kind}: strict decoding error: {listed}"
        )
    if errors:
        raise invalid_error(rt, name or meta.get("name") or meta.get("generateName", ""), errors)
    return from_events_v1(external) if rt == EVENTS_V1 else external


def _check_namespace(rt: ResourceType, namespace: str, meta: Obj) -> None:
    if not rt.namespaced:
        meta.pop("namespace", None)
        return
    if meta.get("namespace", namespace) != namespace:
        raise bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    meta["namespace"] = namespace


def _require_namespace(reg: Registry, namespace: str) -> None:
    ns = reg.store.get(NAMESPACES.store_key, "", namespace)
    if ns is None:
        raise not_found_error(NAMESPACES, namespace)
    if ns["metadata"].get("deletionTimestamp"):
        raise ApiError(
            403,
            "Forbidden",
            f"unable to create new content in namespace {namespace} because it is being terminated",
        )


def create(
    reg: Registry,
    rt: ResourceType,
    namespace: str,
    body: Any,
    *,
    dry_run: bool,
    field_validation: str,
) -> Result:
    from tests.kubeapi.registry import Result

    obj = _decode(reg, rt, body, "", field_validation)
    meta = obj["metadata"]
    _check_namespace(rt, namespace, meta)
    if rt.namespaced:
        _require_namespace(reg, namespace)
    if meta.get("resourceVersion"):
        raise ApiError(
            500, "InternalError", "resourceVersion should not be set on objects to be created"
        )
    strategy = reg.strategy(rt)
    strategy.default(obj)
    for key in ("deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
        meta.pop(key, None)
    meta["uid"], meta["creationTimestamp"] = reg.new_uid(), reg.now()
    if not meta.get("name") and meta.get("generateName"):
        suffix = "".join(reg.rng.choice(_NAME_CHARS) for _ in range(5))
        meta["name"] = meta["generateName"][:58] + suffix
    strategy.prepare_for_create(obj)
    ctx = reg.context(namespace)
    errors = validate_metadata(meta, namespaced=rt.namespaced, label_names=strategy.label_names)
    errors += strategy.validate(obj, rt, ctx)
    if errors:
        raise invalid_error(rt, meta.get("name") or meta.get("generateName", ""), errors)
    warnings = strategy.admit(obj, ctx)
    if reg.store.get(rt.store_key, namespace, meta["name"]) is not None:
        raise already_exists(rt, meta["name"])
    stored = obj if dry_run else reg.store.write(rt.store_key, obj)
    return Result(reg.encode(rt, stored), 201, tuple(warnings))


def update(
    reg: Registry,
    rt: ResourceType,
    namespace: str,
    name: str,
    body: Any,
    *,
    subresource: str,
    dry_run: bool,
    field_validation: str,
) -> Result:
    obj = _decode(reg, rt, body, name, field_validation)
    meta = obj["metadata"]
    if meta.setdefault("name", name) != name:
        raise bad_request(
            f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
        )
    _check_namespace(rt, namespace, meta)
    old = reg.stored(rt, namespace, name)
    given = meta.get("resourceVersion")
    if given and given != old["metadata"]["resourceVersion"]:
        raise conflict(rt, name)
    return _replace(reg, rt, old, obj, subresource=subresource, dry_run=dry_run)


def patch(
    reg: Registry,
    rt: ResourceType,
    namespace: str,
    name: str,
    body: Any,
    *,
    content_type: str,
    subresource: str,
    dry_run: bool,
    field_validation: str,
) -> Result:
    old = reg.stored(rt, namespace, name)
    patched = apply_patch(reg.encode(rt, old), body, content_type)
    obj = _decode(reg, rt, patched, name, field_validation)
    meta = obj["metadata"]
    if meta.get("name") != name or (rt.namespaced and meta.get("namespace") != namespace):
        raise bad_request("metadata.name and metadata.namespace cannot be patched")
    given = meta.get("resourceVersion")
    if given and given != old["metadata"]["resourceVersion"]:
        raise conflict(rt, name)
    return _replace(reg, rt, old, obj, subresource=subresource, dry_run=dry_run)


def _main_resource(reg: Registry, rt: ResourceType, old: Obj, new: Obj) -> list[FieldError]:
    """Keep the system fields and the status of `old`; bump the generation on a spec change;
    the validation of an update."""
    strategy = reg.strategy(rt)
    meta, old_meta = new["metadata"], old["metadata"]
    for key in _KEPT_ON_UPDATE:
        if key in old_meta:
            meta[key] = old_meta[key]
        else:
            meta.pop(key, None)
    if rt.has_status:
        new["status"] = copy.deepcopy(old.get("status") or {})
    if strategy.tracks_generation and new.get("spec") != old.get("spec"):
        meta["generation"] = old_meta.get("generation", 0) + 1
    errors = validate_metadata(meta, namespaced=rt.namespaced, label_names=strategy.label_names)
    added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
    if old_meta.get("deletionTimestamp") and added:
        errors.append(
            forbidden(
                "metadata.finalizers",
                "no new finalizers can be added if the "
                f"object is being deleted, found new finalizers {sorted(added)}",
            )
        )
    ctx = reg.context(old_meta.get("namespace", ""))
    return errors + strategy.validate(new, rt, ctx) + strategy.validate_update(new, old)


def _replace(
    reg: Registry, rt: ResourceType, old: Obj, obj: Obj, *, subresource: str, dry_run: bool
) -> Result:
    from tests.kubeapi.registry import Result

    reg.strategy(rt).default(obj)
    if subresource == "status":
        new = copy.deepcopy(old)
        new["status"] = obj.get("status") or {}
    elif subresource:
        raise ApiError(
            404,
            "NotFound",
            f"the server could not find the requested resource ({rt.plural}/{subresource})",
        )
    else:
        new = obj
        errors = _main_resource(reg, rt, old, new)
        if errors:
            raise invalid_error(rt, old["metadata"]["name"], errors)
    new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
    if new == old or dry_run:
        return Result(reg.encode(rt, new))
    stored = reg.store.write(rt.store_key, new)
    meta = stored["metadata"]
    if (
        meta.get("deletionTimestamp")
        and not meta.get("finalizers")
        and not meta.get("deletionGracePeriodSeconds")
    ):
        gc.remove(reg, rt, stored)  # the last finalizer went: the deletion completes
    return Result(reg.encode(rt, stored))
