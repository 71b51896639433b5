"""CPU time by process tree, from /proc: what a figure's work cost each side, in all.

A tree's time is its processes' own (user + system) plus what their reaped children used:
a task a zygote forked and reaped is billed to the zygote's tree, a live one by itself.
Linux only; elsewhere every tree reads 0.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Stat:
    """One process as /proc/PID/stat shows it: its parent, and its CPU in seconds."""

    pid: int
    ppid: int
    own_s: float  # user + system
    reaped_s: float  # its reaped children's user + system


def parse_stat(text: str) -> Stat:
    """A /proc/PID/stat line (its command may hold spaces and parentheses)."""
    pid = int(text[: text.index(" ")])
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return Stat(pid, int(fields[1]), (utime + stime) / TICKS, (cutime + cstime) / TICKS)


def read_stats(proc: Path = Path("/proc")) -> list[Stat]:
    stats = []
    for entry in proc.iterdir() if proc.is_dir() else ():
        if entry.name.isdigit():
            try:
                stats.append(parse_stat((entry / "stat").read_text()))
            except (OSError, ValueError, IndexError):
                continue  # it ended in between
    return stats


def tree_seconds(stats: Iterable[Stat], roots: Mapping[str, int]) -> dict[str, float]:
    """Each named root's tree's CPU seconds. A tree inside another named one is its own:
    billed to it alone, not to the outer root's."""
    stats = list(stats)
    children: dict[int, list[Stat]] = {}
    for stat in stats:
        children.setdefault(stat.ppid, []).append(stat)
    by_pid = {stat.pid: stat for stat in stats}
    named = set(roots.values())
    seconds: dict[str, float] = {}
    for name, root in roots.items():
        total, pending = 0.0, [by_pid[root]] if root in by_pid else []
        while pending:
            stat = pending.pop()
            total += stat.own_s + stat.reaped_s
            pending.extend(c for c in children.get(stat.pid, []) if c.pid not in named)
        seconds[name] = total
    return seconds


def children_of(stats: Iterable[Stat], ppid: int) -> list[int]:
    return sorted(stat.pid for stat in stats if stat.ppid == ppid)


def is_zygote(pid: int) -> bool:
    """A local backend's zygote (controller/backends/zygote.py), by its command line."""
    try:
        return b"backends.zygote" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def per_job_ms(
    before: Mapping[str, float], after: Mapping[str, float], jobs: int
) -> dict[str, float]:
    """Each tree's CPU between two readings, in ms per job."""
    return {name: (after[name] - before.get(name, 0.0)) * 1000 / jobs for name in after}
