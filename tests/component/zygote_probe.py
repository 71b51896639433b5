"""A task that tells what it sees of itself: `python -m tests.component.zygote_probe OUT
[EXIT_CODE [sleep]]`, started plainly or forked by a zygote (test_zygote_process.py); with
`sleep` it then sleeps a minute before it exits; with `stubborn`, too, ignoring SIGTERM."""

from __future__ import annotations

import ctypes
import json
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    threads = len(os.listdir("/proc/self/task"))  # before numpy starts its BLAS threads
    import numpy
    import torch

    fds = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
    getenv = ctypes.CDLL(None).getenv
    getenv.restype = ctypes.c_char_p
    facts = {
        "environ": dict(os.environ),
        "c_getenv": (getenv(b"PROBE_VALUE") or b"").decode(),
        "threads": threads,
        "python_threads": threading.active_count(),
        "fds": fds,
        "random": random.random(),
        "numpy": float(numpy.random.rand()),
        "torch": float(torch.rand(1)),
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "pgid": os.getpgid(0),
        "sid": os.getsid(0),
        "argv": sys.argv[1:],
        "cwd": os.getcwd(),
        "blocked_signals": sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])),
    }
    if argv[2:] == ["stubborn"]:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    Path(argv[0]).write_text(json.dumps(facts))
    print("probe done", flush=True)
    if argv[2:] in (["sleep"], ["stubborn"]):
        time.sleep(60)
    return int(argv[1]) if len(argv) > 1 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
