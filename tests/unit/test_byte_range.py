"""Byte ranges as HTTP states them (`bytes=a-b`, `bytes=a-`, `bytes=-n`), resolved against
an artifact's size without touching any store."""

from __future__ import annotations

import pytest

from kubetask.storage import ByteRange, RangeNotSatisfiable


@pytest.mark.parametrize(
    ("byte_range", "size", "span", "text"),
    [
        (ByteRange(0, 9), 100, (0, 10), "bytes=0-9"),
        (ByteRange(90), 100, (90, 100), "bytes=90-"),
        (ByteRange(90, 500), 100, (90, 100), "bytes=90-500"),
        (ByteRange(suffix=10), 100, (90, 100), "bytes=-10"),
        (ByteRange(suffix=500), 100, (0, 100), "bytes=-500"),
    ],
)
def test_a_range_resolves_within_the_size(
    byte_range: ByteRange, size: int, span: tuple[int, int], text: str
) -> None:
    assert byte_range.resolve("a", size) == span
    assert str(byte_range) == text


@pytest.mark.parametrize(("byte_range", "size"), [(ByteRange(100), 100), (ByteRange(suffix=1), 0)])
def test_a_range_past_the_end_is_not_satisfiable(byte_range: ByteRange, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable, match=f"outside 'a', which has {size} bytes"):
        byte_range.resolve("a", size)


@pytest.mark.parametrize(
    "arguments",
    [{"start": -1}, {"start": 5, "end": 4}, {"suffix": 0}, {"start": 1, "suffix": 3}],
)
def test_a_malformed_range_is_refused(arguments: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="range"):
        ByteRange(**arguments)
