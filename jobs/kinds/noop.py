"""`noop`: reports progress and exits. Told to, it fails in a chosen way, so that retries,
errors and suggestions can be tried end to end with a real task process."""

from __future__ import annotations

import sys
import time

from pydantic import JsonValue

from kubetask.jobs.context import TaskContext
from kubetask.jobs.params import NoopParams


def _count_attempt(context: TaskContext) -> int:
    """This attempt's number, counted in the artifact store so it survives a new process."""
    marker = context.artifact(f"attempts-{context.index}")
    attempt = int(marker.read_text()) + 1 if marker.exists() else 1
    marker.write_text(str(attempt))
    return attempt


def run(params: NoopParams, context: TaskContext) -> dict[str, JsonValue]:
    attempt = _count_attempt(context)
    for step in range(1, params.steps + 1):
        time.sleep(params.step_s)
        context.reporter.update(step, params.steps, stage="steps", message=f"step {step}")
    failing = params.fail is not None and (
        params.fail_attempts is None or attempt <= params.fail_attempts
    )
    if failing:
        if params.fail == "memory":
            raise MemoryError(params.fail_message)
        if params.fail == "missing-file":
            raise FileNotFoundError(params.fail_message)
        if params.fail == "exit":
            print(params.fail_message, file=sys.stderr, flush=True)
            sys.exit(params.exit_code)
        raise RuntimeError(params.fail_message)
    return {"steps": params.steps, "attempt": attempt, "payload_chars": len(params.payload)}
