"""The task entrypoint, `python -m kubetask.jobs <kind>`, the same in a container and locally.

It reads the `KUBETASK_*` environment, validates the params (exit 2 when they are invalid,
which the pod failure policy never retries), runs the kind, and leaves its outcome in the
termination log and in Redis. Exit codes: 0 success, 2 invalid params or a `permanent`
`TaskError` (a retry would fail the same), 143 SIGTERM, 1 any other failure (a failed upload
of a succeeded task's outputs too). With object storage
(`KUBETASK_ARTIFACTS_URL=s3://…`) the kind works in a scratch folder that jobs/staging.py
fills from the store before it runs and empties into the store after.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from pydantic import JsonValue, ValidationError

from kubetask import env
from kubetask.eventlog import WorkerRun
from kubetask.jobs.context import TaskContext
from kubetask.jobs.errors import InvalidParams, TaskError, TaskTerminated, describe_failure
from kubetask.jobs.publisher import RedisPublisher
from kubetask.jobs.reporter import ProgressReporter
from kubetask.kinds import (
    KindError,
    KindSpec,
    installed_kind_names,
    load_kind,
    load_runner,
    missing_outputs,
)
from kubetask.outcome import ErrorInfo, Outcome
from kubetask.params import Params
from kubetask.params.refs import path_values

if TYPE_CHECKING:  # imported when used: a task without an object store never needs them
    from kubetask.jobs.staging import Staging
    from kubetask.storage import ArtifactStore

log = logging.getLogger("kubetask.task")

MAX_OUTCOME_BYTES = 4096
MAX_RESULT_BYTES = 3500  # leaves room for the outcome's own fields


@dataclass(frozen=True)
class TaskEnv:
    """The container contract, read from the environment."""

    job_id: str
    kind: str
    params_inline: str
    params_file: Path | None
    redis_url: str | None
    artifacts_root: Path
    termination_log: Path
    index: int | None  # the completion index of an Indexed Job, else None
    completions: int = 1  # how many workers the job has

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], kind: str) -> TaskEnv:
        return cls(
            job_id=environ.get(env.JOB_ID, "local"),
            kind=environ.get(env.KIND, kind),
            params_inline=environ.get(env.PARAMS) or "{}",
            params_file=Path(environ[env.PARAMS_FILE]) if environ.get(env.PARAMS_FILE) else None,
            redis_url=environ.get(env.REDIS_URL) or None,
            artifacts_root=Path(environ.get(env.ARTIFACTS, "artifacts")),
            termination_log=Path(environ.get(env.TERMINATION_LOG, env.DEFAULT_TERMINATION_LOG)),
            index=int(environ[env.COMPLETION_INDEX]) if env.COMPLETION_INDEX in environ else None,
            completions=int(environ.get(env.COMPLETIONS) or 1),
        )

    def params_json(self) -> str:
        """Params from `KUBETASK_PARAMS_FILE` (large params, mounted) or `KUBETASK_PARAMS`."""
        return self.params_file.read_text() if self.params_file else self.params_inline


def invalid_params(kind: str, message: str) -> tuple[int, Outcome]:
    error = ErrorInfo(
        type="InvalidParams",
        message=message,
        suggestion=f"Fix the params; GET /v1/kinds shows the schema of {kind!r}.",
        exit_code=env.EXIT_INVALID_PARAMS,
    )
    return env.EXIT_INVALID_PARAMS, Outcome(ok=False, error=error)


def _clip(text: str | None, max_bytes: int) -> str | None:
    """At most `max_bytes` of UTF-8, cut on a character boundary."""
    return None if text is None else text.encode()[:max_bytes].decode(errors="ignore")


def fit_outcome(outcome: Outcome) -> str:
    """The outcome as JSON within the termination-message limit (bytes), trimming the error's
    message, suggestion and traceback as far as needed. (Results are kept small by
    `spill_result`.)"""
    text = outcome.model_dump_json(exclude_none=True)
    budget = 2048
    while len(text.encode()) > MAX_OUTCOME_BYTES and outcome.error is not None and budget:
        error = outcome.error
        trimmed = error.model_copy(
            update={
                "message": _clip(error.message, budget),
                "suggestion": _clip(error.suggestion, budget // 2),
                "traceback": [_clip(f, budget // 8) for f in error.traceback[-2:]]
                if budget >= 512
                else [],
            }
        )
        text = Outcome(ok=False, error=trimmed).model_dump_json(exclude_none=True)
        budget //= 2
    return text


def spill_result(
    result: dict[str, JsonValue], context: TaskContext, keep: tuple[str, ...] = ()
) -> dict[str, JsonValue]:
    """A result too large for the termination message goes to `result-N.json` in the job's
    artifacts; the small result names that file and keeps the kind's outputs (`keep`: what
    later jobs' `job:<id>` resolve to), then each other top-level entry that is a number, a
    boolean, a short text or a list of those (a job's figures, its classes) while it fits,
    in order."""
    text = json.dumps(result, separators=(",", ":"))
    if len(text.encode()) <= MAX_RESULT_BYTES:
        return result
    path = context.artifact(f"result-{context.index}.json")
    path.write_text(text)
    keys: list[JsonValue] = list(sorted(result)[:20])
    small: dict[str, JsonValue] = {"result_file": context.relative(path), "keys": keys}
    small |= {name: result[name] for name in keep if name in result}
    for name, value in result.items():
        if name in small or not _a_figure(value):
            continue
        if len(json.dumps({**small, name: value}, separators=(",", ":")).encode()) <= (
            MAX_RESULT_BYTES
        ):
            small[name] = value
    return small


def _a_figure(value: JsonValue) -> bool:
    """A number, a boolean, a short text, or a list of those (a job's `classes`)."""
    if isinstance(value, list):
        return all(_a_figure(item) and not isinstance(item, list) for item in value)
    return isinstance(value, bool | int | float) or (isinstance(value, str) and len(value) <= 200)


def check_paths(params: Params, context: TaskContext) -> None:
    """Every artifact path in the params (not globs: the kind checks each file they match)
    resolved under the store and kept inside the folder it names, before the kind opens
    any: the second line behind the API's check at submit. `InvalidParams` naming the
    field otherwise."""
    for item in path_values(type(params), params.model_dump(mode="json")):
        if not item.glob:
            try:
                context.resolve(item.value)
            except InvalidParams as exc:
                where = ".".join(str(part) for part in item.loc)
                raise InvalidParams(f"{where}: {exc}") from None


def run_kind(spec: KindSpec, params: Params, context: TaskContext) -> dict[str, JsonValue]:
    """The kind's runner (checked against its spec: `KindError`) on `params`; a `TaskError`
    when its result lacks an output the kind declares, which later jobs would name."""
    result = load_runner(spec)(params, context)
    missing = missing_outputs(spec, result)
    if missing:
        raise TaskError(
            f"the {spec.name} runner's result lacks the output(s) its kind declares: "
            f"{', '.join(missing)} (result keys: {', '.join(sorted(result)) or 'none'})",
            suggestion="A bug in the kind: its runner must return an artifact path for each "
            "of its KindSpec's outputs.",
            permanent=True,
        )
    return result


def format_validation_errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}" for e in exc.errors()
    )


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """The first SIGTERM stops the task's work; any later one (a deadline and a cancel at
    once: its supervisor and the controller each send one) changes nothing."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise TaskTerminated("received SIGTERM")


def _winding_down() -> None:
    """The task's outcome is decided: from here on a SIGTERM would only lose it (raised in
    the middle of writing it); the SIGKILL after the grace still ends a task that hangs."""
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def run_task(
    kind: str,
    task_env: TaskEnv,
    publisher: RedisPublisher | None,
    kinds: Mapping[str, KindSpec] | None = None,
    store: ArtifactStore | None = None,
) -> tuple[int, Outcome]:
    """Validate, run, and describe how it went; never raises. `kinds`: the installed ones
    (entry points: only `kind`'s own is loaded) unless given; `store`: the object store to
    stage through, if any."""
    try:
        spec = load_kind(kind) if kinds is None else kinds.get(kind)
    except KindError as exc:  # the installed kind does not load: it cannot run
        return env.EXIT_FAILED, Outcome(
            ok=False, error=describe_failure(exc, exit_code=env.EXIT_FAILED)
        )
    if spec is None:
        known = installed_kind_names() if kinds is None else sorted(kinds)
        error = ErrorInfo(
            type="UnknownKind",
            message=f"unknown kind {kind!r}; known: {', '.join(known)}",
            exit_code=env.EXIT_INVALID_PARAMS,
        )
        return env.EXIT_INVALID_PARAMS, Outcome(ok=False, error=error)
    try:
        params = spec.params.model_validate_json(task_env.params_json())
    except OSError as exc:
        return invalid_params(kind, f"cannot read the params file: {exc}")
    except ValidationError as exc:
        return invalid_params(kind, format_validation_errors(exc))

    with scratch_root(task_env, store) as root:
        staging = None if store is None else _staging(store, root, task_env.job_id)
        return run_staged(spec, params, task_env, publisher, root=root, staging=staging)


@contextlib.contextmanager
def scratch_root(task_env: TaskEnv, store: ArtifactStore | None) -> Iterator[Path]:
    """The artifacts root the kind works in: `KUBETASK_ARTIFACTS` itself, or with an object
    store, a scratch folder removed afterwards (on Kubernetes /tmp is the pod's emptyDir)."""
    if store is None:
        yield task_env.artifacts_root
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="kubetask-artifacts-") as folder:
        yield Path(folder)


def _staging(store: ArtifactStore, root: Path, job_id: str) -> Staging:
    from kubetask.jobs.staging import Staging

    return Staging(store, root, job_id)


def run_staged(
    spec: KindSpec,
    params: Params,
    task_env: TaskEnv,
    publisher: RedisPublisher | None,
    *,
    root: Path,
    staging: Staging | None,
) -> tuple[int, Outcome]:
    """Stage in, run, stage out (see jobs/staging.py; all but the run skipped without a
    store), and describe how it went; never raises. Outputs go up whether the task succeeded
    or not (a failed attempt's checkpoint is the next one's start); a failed upload fails a
    task that had succeeded (exit 1, naming the file and the store's reason)."""
    kind = spec.name
    reporter = ProgressReporter(
        publisher, job_id=task_env.job_id, index=task_env.index, stages=spec.stages
    )
    context = TaskContext(
        job_id=task_env.job_id,
        index=task_env.index or 0,
        artifacts_root=root,
        reporter=reporter,
        redis_url=task_env.redis_url,
    )
    started = time.monotonic()
    staged_out = False
    log.info("%s task of job %s (index %s) starting", kind, context.job_id, context.index)
    try:
        if staging is not None:
            inputs = path_values(type(params), params.model_dump(mode="json"))
            staged_in = time.monotonic()
            count = len(staging.stage_in(inputs))
            took = time.monotonic() - staged_in
            log.info("staged in %d file(s) from %r in %.2f s", count, staging.store, took)
        check_paths(params, context)
        result = run_kind(spec, params, context)
        outcome = Outcome(ok=True, result=spill_result(result, context, spec.outputs))
        if staging is not None:
            staged_out = True
            keep_outputs(staging, strict=True)
        code = env.EXIT_OK
        reporter.complete()
        log.info("%s task succeeded in %.1f s", kind, time.monotonic() - started)
    except InvalidParams as exc:
        code, outcome = invalid_params(kind, str(exc))
    except SystemExit as exc:  # the task (or a library) called sys.exit
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        outcome = Outcome(ok=True, result={})
        if code != env.EXIT_OK:
            error = describe_failure(exc, exit_code=code)
            message = f"the task exited with code {code}"
            outcome = Outcome(ok=False, error=error.model_copy(update={"message": message}))
    except TaskTerminated as exc:
        code = env.EXIT_TERMINATED
        outcome = Outcome(ok=False, error=describe_failure(exc, exit_code=code))
    except TaskError as exc:
        code = env.EXIT_INVALID_PARAMS if exc.permanent else env.EXIT_FAILED
        log.exception("task failed" if not exc.permanent else "task failed; not retried")
        outcome = Outcome(ok=False, error=describe_failure(exc, exit_code=code))
    except Exception as exc:
        code = env.EXIT_FAILED
        log.exception("task failed")
        outcome = Outcome(ok=False, error=describe_failure(exc, exit_code=code))
    finally:
        _winding_down()
        reporter.close()
    if staging is not None and not staged_out:
        keep_outputs(staging)
    return code, outcome


def keep_outputs(staging: Staging, *, strict: bool = False) -> None:
    """Upload the task's outputs. `strict` (a task that succeeded): `StagingFailed` when one
    fails; else (a task that did not succeed, whose checkpoint is still worth keeping) its
    own failure is the one it reports, so a failed upload is only logged."""
    from kubetask.jobs.staging import StagingFailed

    started = time.monotonic()
    try:
        count = len(staging.stage_out())
    except (StagingFailed, TaskTerminated) as exc:
        if strict:
            raise
        log.error("the outputs of this failed task are not all kept: %s", exc)
        return
    log.info(
        "staged out %d file(s) to %r in %.2f s", count, staging.store, time.monotonic() - started
    )


def run_through_store(
    kind: str, task_env: TaskEnv, publisher: RedisPublisher | None, environ: Mapping[str, str]
) -> tuple[int, Outcome]:
    """`run_task` with the store `KUBETASK_ARTIFACTS_URL` names (staged through when it is
    object storage); exit 1 when that store cannot be opened."""
    from kubetask.jobs.staging import remote_store
    from kubetask.storage import InvalidStoreUrl

    try:
        store = remote_store(environ)
    except InvalidStoreUrl as exc:  # e.g. no credentials: retried, in case a Secret lags
        code = env.EXIT_FAILED
        return code, Outcome(ok=False, error=describe_failure(exc, exit_code=code))
    return run_task(kind, task_env, publisher, store=store)


def write_outcome(outcome_json: str, task_env: TaskEnv, publisher: RedisPublisher | None) -> None:
    try:
        task_env.termination_log.write_text(outcome_json)
    except OSError as exc:
        log.warning("cannot write the termination log %s: %s", task_env.termination_log, exc)
    if publisher is not None and not publisher.put_outcome(outcome_json, index=task_env.index or 0):
        log.warning("outcome not stored in redis; the termination log holds it")


def main(argv: list[str]) -> int:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s")
    if logging.root.level != logging.INFO:  # setting it clears every logger's cache (torch
        logging.root.setLevel(logging.INFO)  # has ~300): a zygote's task has it set already
    if len(argv) != 1:
        print("usage: python -m kubetask.jobs <kind>", file=sys.stderr)
        return env.EXIT_INVALID_PARAMS
    signal.signal(signal.SIGTERM, _on_sigterm)
    task_env = TaskEnv.from_environ(os.environ, argv[0])
    publisher = None
    if task_env.redis_url:
        worker = WorkerRun(
            run=os.urandom(16).hex(), started=time.time(), completions=task_env.completions
        )
        publisher = RedisPublisher(task_env.redis_url, job_id=task_env.job_id, worker=worker)
    if os.environ.get(env.ARTIFACTS_URL):
        code, outcome = run_through_store(argv[0], task_env, publisher, os.environ)
    else:  # a folder store: the storage and staging modules are never imported
        code, outcome = run_task(argv[0], task_env, publisher)
    if outcome.error is not None:  # the log's last line says how it ended (not a repeat of
        # the traceback's last line: the exit code is what decides a retry)
        error = outcome.error
        print(f"task failed, exit code {code}: {error.type}: {error.message}", file=sys.stderr)
    write_outcome(fit_outcome(outcome), task_env, publisher)
    if publisher is not None:
        publisher.close()
    return code
