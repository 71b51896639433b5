"""`python -m bench [--quick] [--full] [--only NAME,...]`: run the figures (relay, startup, zygote,
noop, submissions, queue, kube, kube-queue, train, explain, gan, celery) against one set of
servers, print a table and write bench/out/results.json."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from bench import (
    celery_side,
    explain_attribution,
    gan_epoch,
    kube,
    kube_queue,
    local_queue,
    noop_e2e,
    relay,
    startup,
    submissions,
    train_loop,
    zygote_start,
)
from bench.harness import Bench, Counts, Figure, Row, servers
from kubetask.controller.redis_server import server_binary

FIGURES: dict[str, Callable[[Bench, Counts], Figure]] = {
    "relay": relay.run,
    "startup": startup.run,
    "zygote": zygote_start.run,
    "noop": noop_e2e.run,
    "submissions": submissions.run,
    "queue": local_queue.run,
    "kube": kube.run,
    "kube-queue": kube_queue.run,
    "train": train_loop.run,
    "explain": explain_attribution.run,
    "gan": gan_epoch.run,
    "celery": celery_side.run,
}
OUT = Path(__file__).resolve().parent / "out" / "results.json"


def _number(value: float) -> str:
    if math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def _ratio(row: Row) -> str:
    return "-" if math.isnan(row.ratio) else f"{row.ratio:.2f}x"


def format_figure(number: int, figure: Figure) -> str:
    lines = [
        f"[{number}] {figure.title}",
        f"    kubetask: {figure.kubetask}",
        f"    baseline: {figure.baseline}",
        f"    {'metric':<34} {'unit':>7} {'kubetask':>10} {'baseline':>10} {'ratio':>8}",
    ]
    for row in figure.rows:
        lines.append(
            f"    {row.metric:<34} {row.unit:>7} {_number(row.kubetask):>10} "
            f"{_number(row.baseline):>10} {_ratio(row):>8}"
        )
    lines += [f"    note: {note}" for note in figure.notes]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    parser.add_argument(
        "--full", action="store_true", help="bigger bursts (the celery figure: 1,000 jobs, not 200)"
    )
    parser.add_argument(
        "--only",
        default=",".join(FIGURES),
        help=f"comma-separated figures to run (default: all of {', '.join(FIGURES)})",
    )
    parser.add_argument("--out", type=Path, default=OUT, help=f"results file (default {OUT})")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in str(args.only).split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(FIGURES))
    if unknown:
        parser.error(f"unknown figure(s): {', '.join(unknown)}")
    counts = Counts.for_run(quick=bool(args.quick), full=bool(args.full))

    began = time.monotonic()
    print(
        f"kubetask benchmarks{' (quick)' if args.quick else ''}: python {platform.python_version()}"
        f", {os.cpu_count()} CPUs, redis: {Path(server_binary()).name}; "
        "ratio = kubetask / baseline, both measured in this run",
        flush=True,
    )
    figures: list[Figure] = []
    with servers() as bench:
        for number, name in enumerate(chosen, start=1):
            started = time.monotonic()
            figure = FIGURES[name](bench, counts)
            figures.append(figure)
            print(f"\n{format_figure(number, figure)}", flush=True)
            print(f"    ({time.monotonic() - started:.1f} s)", flush=True)
    elapsed = time.monotonic() - began

    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "date": datetime.now(UTC).isoformat(),
        "quick": bool(args.quick),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "redis_server": server_binary(),
        "counts": asdict(counts),
        "elapsed_s": round(elapsed, 1),
        "figures": [figure.to_json() for figure in figures],
    }
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\n{len(figures)} figure(s) in {elapsed:.0f} s; results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
