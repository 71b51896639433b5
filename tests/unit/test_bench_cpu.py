"""The bench's CPU accounting by process tree (bench/cpu.py): a tree's time is its
processes' own and their reaped children's, a named tree inside another is billed alone."""

from __future__ import annotations

import os

from bench.cpu import TICKS, Stat, parse_stat, per_job_ms, read_stats, tree_seconds


def test_parse_stat_reads_a_command_with_spaces_and_parentheses() -> None:
    rest = " ".join(["S", "7"] + ["0"] * 9 + ["100", "50", "30", "20"] + ["0"] * 30)
    stat = parse_stat(f"42 (python (x) y) {rest}")
    assert (stat.pid, stat.ppid) == (42, 7)
    assert stat.own_s == 150 / TICKS
    assert stat.reaped_s == 50 / TICKS


def test_a_tree_counts_its_live_descendants_and_what_they_reaped() -> None:
    stats = [
        Stat(pid=1, ppid=0, own_s=1.0, reaped_s=0.5),  # the API; 0.5 s of its shims, reaped
        Stat(pid=2, ppid=1, own_s=0.25, reaped_s=4.0),  # a zygote, 4 s of reaped tasks
        Stat(pid=3, ppid=2, own_s=0.125, reaped_s=0.0),  # a task still running
        Stat(pid=4, ppid=1, own_s=2.0, reaped_s=0.0),  # a shim still running
        Stat(pid=9, ppid=0, own_s=8.0, reaped_s=0.0),  # someone else's
    ]
    assert tree_seconds(stats, {"api": 1}) == {"api": 1.0 + 0.5 + 0.25 + 4.0 + 0.125 + 2.0}
    assert tree_seconds(stats, {"api": 1, "zygote": 2}) == {
        "api": 1.0 + 0.5 + 2.0,
        "zygote": 0.25 + 4.0 + 0.125,
    }
    assert tree_seconds(stats, {"gone": 77}) == {"gone": 0.0}


def test_per_job_is_the_difference_in_milliseconds_per_job() -> None:
    assert per_job_ms({"api": 1.0}, {"api": 3.0, "new": 0.5}, 100) == {"api": 20.0, "new": 5.0}


def test_this_process_is_read_from_proc() -> None:
    mine = [stat for stat in read_stats() if stat.pid == os.getpid()]
    assert len(mine) == 1
    assert mine[0].ppid == os.getppid()
    assert mine[0].own_s > 0
