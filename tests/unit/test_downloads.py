"""What an artifact download answers (api/downloads.py), decided from the entry and the
request's headers alone: 200, 206 with Content-Range, 304 on a matching ETag, 416 past the
end, and a Range this server does not serve ignored."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kubetask.api.downloads import (
    Plan,
    etag_matches,
    headers,
    parse_range,
    plan,
    unsatisfiable_headers,
)
from kubetask.storage import ByteRange, Entry

ENTRY = Entry(
    path="job/model.pt",
    size=100,
    etag="abc-64",
    content_type="application/octet-stream",
    modified=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
)
EMPTY = Entry("job/empty.txt", 0, "e-0", "text/plain", ENTRY.modified)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-9", ByteRange(0, 9)),
        ("bytes=90-", ByteRange(90)),
        ("bytes=-10", ByteRange(suffix=10)),
        ("Bytes = 5 - 7", ByteRange(5, 7)),
        (None, None),
        ("", None),
        ("items=0-9", None),  # another unit
        ("bytes=0-1,5-6", None),  # several ranges: served whole
        ("bytes=9-2", None),  # end before start
        ("bytes=-", None),
        ("bytes=-0", None),
        ("bytes=a-b", None),
    ],
)
def test_a_range_header_is_one_byte_range_or_none(
    header: str | None, expected: ByteRange | None
) -> None:
    assert parse_range(header) == expected


@pytest.mark.parametrize(
    ("range_header", "if_none_match", "expected"),
    [
        (None, None, Plan(200)),
        ("bytes=0-9", None, Plan(206, ByteRange(0, 9))),
        ("bytes=50-500", None, Plan(206, ByteRange(50, 500))),
        ("bytes=-500", None, Plan(206, ByteRange(suffix=500))),
        ("bytes=100-", None, Plan(416)),
        ("bytes=0-1,5-6", None, Plan(200)),
        (None, '"abc-64"', Plan(304)),
        ("bytes=0-9", 'W/"abc-64"', Plan(304)),  # a match wins over the range
        (None, '"other", "abc-64"', Plan(304)),
        (None, "*", Plan(304)),
        ("bytes=0-9", '"other"', Plan(206, ByteRange(0, 9))),
        (None, "abc-64", Plan(200)),  # an unquoted tag names nothing
    ],
)
def test_the_plan_of_a_download(
    range_header: str | None, if_none_match: str | None, expected: Plan
) -> None:
    assert plan(ENTRY, range_header=range_header, if_none_match=if_none_match) == expected


@pytest.mark.parametrize(
    ("if_range", "expected"),
    [
        ('"abc-64"', Plan(206, ByteRange(0, 9))),
        ("Fri, 02 Jan 2026 03:04:05 GMT", Plan(206, ByteRange(0, 9))),
        ('"abc-63"', Plan(200)),  # another version: the whole new one
        ('W/"abc-64"', Plan(200)),  # a weak tag is never the same bytes
        ("Thu, 01 Jan 2026 03:04:05 GMT", Plan(200)),
        ("yesterday", Plan(200)),
    ],
)
def test_a_range_applies_only_to_the_version_if_range_names(if_range: str, expected: Plan) -> None:
    decided = plan(ENTRY, range_header="bytes=0-9", if_none_match=None, if_range=if_range)
    assert decided == expected


def test_any_range_of_an_empty_artifact_is_unsatisfiable() -> None:
    assert plan(EMPTY, range_header="bytes=-5", if_none_match=None) == Plan(416)
    assert plan(EMPTY, range_header=None, if_none_match=None) == Plan(200)


def test_etag_matches_only_the_quoted_tag() -> None:
    assert etag_matches('"abc-64"', "abc-64")
    assert not etag_matches(None, "abc-64")
    assert not etag_matches('"abc-6"', "abc-64")


def test_the_headers_of_whole_and_partial_answers() -> None:
    whole = headers(ENTRY, start=0, stop=100, status=200)
    assert whole == {
        "ETag": '"abc-64"',
        "Last-Modified": "Fri, 02 Jan 2026 03:04:05 GMT",
        "Accept-Ranges": "bytes",
        "X-Content-Type-Options": "nosniff",  # served as it is typed, scripts sandboxed
        "Content-Security-Policy": "sandbox",
        "Content-Type": "application/octet-stream",
        "Content-Length": "100",
    }
    part = headers(ENTRY, start=90, stop=100, status=206)
    assert (part["Content-Range"], part["Content-Length"]) == ("bytes 90-99/100", "10")
    assert unsatisfiable_headers(ENTRY)["Content-Range"] == "bytes */100"
