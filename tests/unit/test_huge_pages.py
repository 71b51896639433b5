"""Which of a process's mappings a zygote collapses into huge pages: the writable anonymous
ones and the heap, trimmed to whole 2 MiB spans (huge_pages.py)."""

from __future__ import annotations

from kubetask.controller.backends.huge_pages import HUGE, anonymous_regions

MAPS = [
    "00400000-00600000 r-xp 00000000 08:01 1 /usr/bin/python3.11",
    "00a00000-09000000 rw-p 00000000 00:00 0 [heap]",
    "7f0000100000-7f0000a00000 rw-p 00000000 00:00 0 ",
    "7f0000a00000-7f0000b00000 rw-p 00000000 00:00 0",
    "7f0001000000-7f0002000000 rw-p 00000000 08:01 2 /usr/lib/libtorch_cpu.so",
    "7f0003000000-7f0004000000 r--p 00000000 00:00 0",
    "7ffc00000000-7ffc00400000 rw-p 00000000 00:00 0 [stack]",
]


def test_the_heap_and_writable_anonymous_mappings_in_whole_huge_pages() -> None:
    regions = anonymous_regions(MAPS)
    assert regions == [
        (0x00A00000, 0x09000000 - 0x00A00000),  # the heap, already aligned
        (0x7F0000200000, 0x7F0000A00000 - 0x7F0000200000),  # start rounded up to 2 MiB
    ]  # too small for one huge page, a file, read-only, the stack: left alone
    assert all(start % HUGE == 0 and length % HUGE == 0 for start, length in regions)
