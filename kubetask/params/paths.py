"""Where an artifact path given in params may lead: the pure rule, shared by the API (at
submit) and the task runtime (before it opens anything).

A path is relative to the artifact store's root, without '..', and its first segments say
whose files it names (its *area*):

- `<job id>/...`: that job's outputs (every task writes under `<root>/<job id>/`), readable
  by the job's own tenant;
- `uploads/<tenant>/...`: the tenant's own uploads (files put in the store by hand today; the
  place an uploads API writes to).

The API refuses, at submit, a path that breaks the syntax, or whose area is another tenant's,
a job that does not exist, or nobody's (controller/chaining.py). The task, which does not
know its tenant, refuses a path that breaks the syntax or that leads, symlinks resolved, out
of the area it names (jobs/context.py). Nothing here touches the filesystem, so no answer
depends on whether a path outside the store exists.
"""

from __future__ import annotations

from pathlib import PurePosixPath

UPLOADS = "uploads"
GLOB_CHARS = frozenset("*?[")
OUTSIDE_THE_STORE = "must be a path relative to the artifact store, without a leading '/' or '..'"


# Control characters (C0, DEL, C1) and the backslash: a file name on Linux may hold them, an
# S3 key may not (MinIO refuses them), so no artifact path does, whichever the store.
UNSAFE_CHARS = frozenset([*map(chr, range(0x20)), *map(chr, range(0x7F, 0xA0)), "\\"])
UNSAFE = "must not hold a control character or a backslash"


class OutsideTheStore(ValueError):
    """The path is not a relative path inside the artifact store (or not one every store
    can hold)."""

    def __init__(self, message: str = OUTSIDE_THE_STORE) -> None:
        super().__init__(message)


def store_parts(path: str) -> tuple[str, ...]:
    """The segments of an artifact path (`a//b/./c` is `a/b/c`); `OutsideTheStore` for an
    absolute path, one with a '..' segment, a control character or a backslash, or one
    that names the root itself."""
    if not UNSAFE_CHARS.isdisjoint(path):
        raise OutsideTheStore(UNSAFE)
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise OutsideTheStore
    return pure.parts


def area(parts: tuple[str, ...]) -> tuple[str, ...]:
    """The leading segments that say whose a path is: `(job id,)` or `('uploads', tenant)`
    (just `('uploads',)` for a path that stops there, which is nobody's)."""
    return parts[:2] if parts[0] == UPLOADS else parts[:1]


def uploads_area(tenant: str) -> tuple[str, str]:
    """A tenant's own uploads area (tenants are DNS labels: one safe segment)."""
    return (UPLOADS, tenant)


def has_wildcards(segments: tuple[str, ...]) -> bool:
    return any(GLOB_CHARS & set(segment) for segment in segments)
