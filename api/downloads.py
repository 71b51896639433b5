"""What an artifact download answers, decided without touching any store (RFC 9110):
`plan` turns an artifact's entry and the request's `Range`, `If-Range` and `If-None-Match`
into a status (200 whole, 206 a range, 304 not modified, 416 a range past the end) and the
byte range to read; `headers` are the response headers of the bytes read.

- `If-None-Match` naming the entry's ETag (weakly compared, or `*`) is 304 and wins over
  `Range`;
- one range `bytes=A-B`, `bytes=A-` or `bytes=-N` is read (an end past the artifact stops
  at its end); one starting past the end (or any of an empty artifact) is 416;
- a `Range` this server does not serve (another unit, several ranges, a malformed one) is
  ignored: the whole artifact, 200, as RFC 9110 allows;
- so is one whose `If-Range` names another version (an ETag but the artifact's, strongly
  compared, or a date but its Last-Modified): a client resuming a download of a file that
  changed gets the new one whole, not its bytes after the old one's.

Every answer says `nosniff` and sandboxes what it serves (`Content-Security-Policy:
sandbox`): a task's `.html` or `.svg` output opened from the API runs no script in its
origin, where the dashboard keeps its token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC
from email.utils import format_datetime

from kubetask.storage import ByteRange, Entry, RangeNotSatisfiable

SINGLE_RANGE = re.compile(r"bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", re.IGNORECASE)


@dataclass(frozen=True)
class Plan:
    status: int  # 200, 206, 304 or 416
    byte_range: ByteRange | None = None  # what to read for a 206


def quoted(etag: str) -> str:
    """An entry's ETag as HTTP writes it."""
    return f'"{etag}"'


def parse_range(header: str | None) -> ByteRange | None:
    """The one byte range a `Range` header asks for; None when there is none this server
    serves (no header, another unit, several ranges, or a malformed one)."""
    match = SINGLE_RANGE.fullmatch(header or "")
    if match is None:
        return None
    first, last = match.groups()
    try:
        if not first:
            return ByteRange(suffix=int(last)) if last else None
        return ByteRange(int(first), int(last) if last else None)
    except ValueError:  # an end before the start, or a suffix of 0
        return None


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether `If-None-Match` names `etag` (weak comparison) or is `*`."""
    if not if_none_match:
        return False
    tags = [tag.strip() for tag in if_none_match.split(",")]
    return "*" in tags or quoted(etag) in (tag.removeprefix("W/") for tag in tags)


def same_version(if_range: str | None, entry: Entry) -> bool:
    """Whether `If-Range` (absent: no condition) names `entry` as it is now: its ETag,
    strongly compared (a weak tag never matches), or its Last-Modified exactly."""
    if not if_range:
        return True
    value = if_range.strip()
    if value.startswith(('"', "W/")):
        return value == quoted(entry.etag)
    return value == last_modified(entry)


def plan(
    entry: Entry,
    *,
    range_header: str | None,
    if_none_match: str | None,
    if_range: str | None = None,
) -> Plan:
    """What to answer a GET of the artifact `entry` (see the module docstring)."""
    if etag_matches(if_none_match, entry.etag):
        return Plan(304)
    byte_range = parse_range(range_header) if same_version(if_range, entry) else None
    if byte_range is None:
        return Plan(200)
    try:
        byte_range.resolve(entry.path, entry.size)
    except RangeNotSatisfiable:
        return Plan(416)
    return Plan(206, byte_range)


def last_modified(entry: Entry) -> str:
    return format_datetime(entry.modified.astimezone(UTC), usegmt=True)


def validators(entry: Entry) -> dict[str, str]:
    """The headers every answer about `entry` carries (304 and 416 too)."""
    return {
        "ETag": quoted(entry.etag),
        "Last-Modified": last_modified(entry),
        "Accept-Ranges": "bytes",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
    }


def headers(entry: Entry, *, start: int, stop: int, status: int) -> dict[str, str]:
    """The headers of bytes `start`..`stop` (exclusive) of `entry`, sent as `status`."""
    out = {
        **validators(entry),
        "Content-Type": entry.content_type,
        "Content-Length": str(stop - start),
    }
    if status == 206:
        out["Content-Range"] = f"bytes {start}-{stop - 1}/{entry.size}"
    return out


def unsatisfiable_headers(entry: Entry) -> dict[str, str]:
    """The headers of a 416: the artifact's size in `Content-Range`."""
    return {**validators(entry), "Content-Range": f"bytes */{entry.size}"}
