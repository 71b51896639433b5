"""The task entrypoint's pure parts: the environment, running a kind, and the outcome's size."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import pytest
from pydantic import JsonValue

from kubetask import env
from kubetask.jobs.context import TaskContext
from kubetask.jobs.errors import TaskError
from kubetask.jobs.params import NoopParams
from kubetask.jobs.publisher import RedisPublisher
from kubetask.jobs.reporter import ProgressReporter
from kubetask.jobs.runtime import MAX_OUTCOME_BYTES, TaskEnv, fit_outcome, run_task, spill_result
from kubetask.kinds import KindSpec, load_kinds
from kubetask.models import ErrorInfo, Outcome

KINDS = load_kinds()  # the installed kinds (entry points)


def task_env(tmp_path: Path, **environ: str) -> TaskEnv:
    base = {env.JOB_ID: "0000000000abcdef", env.ARTIFACTS: str(tmp_path / "artifacts")}
    return TaskEnv.from_environ({**base, **environ}, "noop")


def run_noop(tmp_path: Path, params: dict[str, object]) -> tuple[int, Outcome]:
    return run_task("noop", task_env(tmp_path, **{env.PARAMS: json.dumps(params)}), None)


# --- TaskEnv --------------------------------------------------------------------------------


def test_from_environ_reads_the_container_contract(tmp_path: Path) -> None:
    task = TaskEnv.from_environ(
        {
            env.JOB_ID: "0000000000abcdef",
            env.KIND: "datagen",
            env.PARAMS: '{"seed": 1}',
            env.REDIS_URL: "redis://redis:6379/0",
            env.ARTIFACTS: str(tmp_path),
            env.TERMINATION_LOG: str(tmp_path / "termination-log"),
        },
        "noop",
    )
    assert task.job_id == "0000000000abcdef"
    assert task.kind == "datagen"
    assert task.params_json() == '{"seed": 1}'
    assert task.redis_url == "redis://redis:6379/0"
    assert task.artifacts_root == tmp_path
    assert task.termination_log == tmp_path / "termination-log"


def test_from_environ_defaults() -> None:
    task = TaskEnv.from_environ({env.PARAMS: "", env.REDIS_URL: ""}, "noop")
    assert task.kind == "noop"
    assert task.params_json() == "{}"
    assert task.params_file is None
    assert task.redis_url is None
    assert task.termination_log == Path(env.DEFAULT_TERMINATION_LOG)
    assert task.index is None


@pytest.mark.parametrize(("raw", "index"), [("0", 0), ("7", 7)])
def test_completion_index_is_read_when_set(raw: str, index: int) -> None:
    assert TaskEnv.from_environ({env.COMPLETION_INDEX: raw}, "noop").index == index


def test_params_file_wins_over_inline_params(tmp_path: Path) -> None:
    params_file = tmp_path / "params.json"
    params_file.write_text('{"steps": 1}')
    task = task_env(tmp_path, **{env.PARAMS: '{"steps": -1}', env.PARAMS_FILE: str(params_file)})
    assert task.params_json() == '{"steps": 1}'
    code, outcome = run_task("noop", task, None)
    assert code == env.EXIT_OK
    assert outcome.result is not None
    assert outcome.result["steps"] == 1


# --- run_task -------------------------------------------------------------------------------


def test_a_successful_task_exits_0_with_its_result(tmp_path: Path) -> None:
    code, outcome = run_noop(tmp_path, {"steps": 3})
    assert code == env.EXIT_OK
    assert outcome.ok
    assert outcome.error is None
    assert outcome.result is not None
    assert (outcome.result["steps"], outcome.result["attempt"]) == (3, 1)


def test_the_task_writes_into_its_own_artifact_folder(tmp_path: Path) -> None:
    run_noop(tmp_path, {})
    assert (tmp_path / "artifacts" / "0000000000abcdef").is_dir()


def test_an_unknown_kind_exits_2_naming_the_known_kinds(tmp_path: Path) -> None:
    code, outcome = run_task("train-llm", task_env(tmp_path), None)
    assert code == env.EXIT_INVALID_PARAMS
    assert not outcome.ok
    assert outcome.error is not None
    assert outcome.error.type == "UnknownKind"
    assert outcome.error.exit_code == env.EXIT_INVALID_PARAMS
    for known in KINDS:
        assert known in outcome.error.message


@pytest.mark.parametrize(
    ("params", "field"),
    [({"steps": -1}, "steps"), ({"fail": "sometimes"}, "fail"), ({"epochs": 3}, "epochs")],
)
def test_invalid_params_exit_2_naming_the_field(
    tmp_path: Path, params: dict[str, object], field: str
) -> None:
    code, outcome = run_noop(tmp_path, params)
    assert code == env.EXIT_INVALID_PARAMS
    assert outcome.error is not None
    assert outcome.error.type == "InvalidParams"
    assert outcome.error.message.startswith(f"{field}:")
    assert outcome.error.suggestion is not None
    assert outcome.error.exit_code == env.EXIT_INVALID_PARAMS


def test_params_that_are_not_json_exit_2(tmp_path: Path) -> None:
    code, outcome = run_task("noop", task_env(tmp_path, **{env.PARAMS: "{steps: 1"}), None)
    assert code == env.EXIT_INVALID_PARAMS
    assert outcome.error is not None
    assert outcome.error.type == "InvalidParams"


def test_a_missing_params_file_exits_2(tmp_path: Path) -> None:
    task = task_env(tmp_path, **{env.PARAMS_FILE: str(tmp_path / "absent.json")})
    code, outcome = run_task("noop", task, None)
    assert code == env.EXIT_INVALID_PARAMS
    assert outcome.error is not None
    assert "params file" in outcome.error.message


def test_running_out_of_memory_exits_1_with_a_suggestion(tmp_path: Path) -> None:
    code, outcome = run_noop(tmp_path, {"fail": "memory", "fail_message": "no room"})
    assert code == env.EXIT_FAILED
    assert not outcome.ok
    error = outcome.error
    assert error is not None
    assert (error.type, error.message, error.exit_code) == ("MemoryError", "no room", 1)
    assert error.suggestion is not None
    assert "batch_size" in error.suggestion
    assert error.traceback[-1].endswith("in run")


@pytest.mark.parametrize(
    ("fail", "type_"), [("exception", "RuntimeError"), ("missing-file", "FileNotFoundError")]
)
def test_a_failing_task_exits_1_with_its_error(tmp_path: Path, fail: str, type_: str) -> None:
    code, outcome = run_noop(tmp_path, {"fail": fail})
    assert code == env.EXIT_FAILED
    assert outcome.error is not None
    assert outcome.error.type == type_


def refuse(params: NoopParams, context: TaskContext) -> dict[str, JsonValue]:
    """A kind that finds its data unusable: for good when its params ask for more than 1 step."""
    raise TaskError(
        "the data does not fit", suggestion="use other data", permanent=params.steps > 1
    )


REFUSING = KindSpec(
    name="refusing", description="", params=NoopParams, runner=f"{__name__}:refuse", image="x"
)


@pytest.mark.parametrize(("steps", "code"), [(2, env.EXIT_INVALID_PARAMS), (1, env.EXIT_FAILED)])
def test_a_permanent_task_error_exits_2_so_that_it_is_never_retried(
    tmp_path: Path, steps: int, code: int
) -> None:
    environ = task_env(tmp_path, **{env.PARAMS: json.dumps({"steps": steps})})
    exit_code, outcome = run_task("refusing", environ, None, kinds={"refusing": REFUSING})
    assert exit_code == code
    assert outcome.error is not None
    assert (outcome.error.type, outcome.error.message, outcome.error.exit_code) == (
        "TaskError",
        "the data does not fit",
        code,
    )
    assert outcome.error.suggestion == "use other data"


def test_a_retry_is_a_new_attempt_that_can_succeed(tmp_path: Path) -> None:
    params = {"fail": "exception", "fail_attempts": 1}
    assert run_noop(tmp_path, params)[0] == env.EXIT_FAILED
    code, outcome = run_noop(tmp_path, params)
    assert code == env.EXIT_OK
    assert outcome.result is not None
    assert outcome.result["attempt"] == 2


# --- fit_outcome ----------------------------------------------------------------------------


def huge_error(message: str) -> Outcome:
    frames = [
        f"/usr/lib/python3.11/site-packages/pkg/module_{i}.py:{i} in f{i}" for i in range(300)
    ]
    return Outcome(
        ok=False,
        error=ErrorInfo(
            type="RuntimeError",
            message=message,
            traceback=frames,
            suggestion="do something else",
            exit_code=1,
        ),
    )


def test_a_small_outcome_is_kept_whole() -> None:
    outcome = Outcome(ok=True, result={"steps": 3, "attempt": 1})
    assert Outcome.model_validate_json(fit_outcome(outcome)) == outcome


def test_a_small_error_is_kept_whole() -> None:
    outcome = Outcome(ok=False, error=ErrorInfo(type="X", message="y", traceback=["a:1 in b"]))
    assert Outcome.model_validate_json(fit_outcome(outcome)) == outcome


@pytest.mark.parametrize("message", ["x" * 100_000, "short", "line\n" * 5000, 'say "hi" ' * 5000])
def test_a_huge_error_is_trimmed_under_the_limit(message: str) -> None:
    outcome = huge_error(message)
    text = fit_outcome(outcome)
    assert len(text.encode()) <= MAX_OUTCOME_BYTES
    fitted = Outcome.model_validate_json(text)
    assert fitted.error is not None
    assert outcome.error is not None
    assert fitted.error.type == "RuntimeError"
    assert fitted.error.exit_code == 1
    assert fitted.error.suggestion == "do something else"
    assert fitted.error.traceback == outcome.error.traceback[-len(fitted.error.traceback) :]
    assert fitted.error.traceback[-1] == outcome.error.traceback[-1]  # innermost kept
    assert message.startswith(fitted.error.message)


@pytest.mark.parametrize("char", ["€", "数", "🔥"])
def test_a_huge_non_ascii_error_is_trimmed_under_the_limit(char: str) -> None:
    assert len(fit_outcome(huge_error(char * 10_000)).encode()) <= MAX_OUTCOME_BYTES


def test_a_task_calling_sys_exit_still_leaves_an_outcome(tmp_path: Path) -> None:
    code, outcome = run_noop(tmp_path, {"fail": "exit", "exit_code": 5})
    assert code == 5
    assert outcome.error is not None
    assert outcome.error.exit_code == 5
    assert outcome.error.message == "the task exited with code 5"


def test_a_large_result_is_spilled_to_an_artifact(tmp_path: Path) -> None:
    _, outcome = run_noop(tmp_path, {"payload": "x" * 10})
    assert outcome.result is not None
    assert "result_file" not in outcome.result  # small results stay inline
    context = TaskContext(
        job_id="0000000000abcdef",
        index=0,
        artifacts_root=tmp_path,
        reporter=ProgressReporter(None, job_id="0000000000abcdef"),
    )
    big: dict[str, JsonValue] = {"rows": ["r" * 100] * 100, "n": 100}
    small = spill_result(big, context)
    assert small["keys"] == ["n", "rows"]
    spilled = tmp_path / str(small["result_file"])
    assert json.loads(spilled.read_text()) == big
    assert len(fit_outcome(Outcome(ok=True, result=small))) < MAX_OUTCOME_BYTES


# --- progress -------------------------------------------------------------------------------


class RecordingPublisher:
    def __init__(self) -> None:
        self.events: list[dict[str, JsonValue]] = []

    def publish(self, events: Sequence[dict[str, JsonValue]]) -> bool:
        self.events.extend(events)
        return True


def test_the_number_of_workers_is_read_from_the_environment(tmp_path: Path) -> None:
    assert task_env(tmp_path).completions == 1
    assert task_env(tmp_path, **{env.COMPLETIONS: "4"}).completions == 4


def run_recorded(tmp_path: Path, params: dict[str, object]) -> list[dict[str, JsonValue]]:
    publisher = RecordingPublisher()
    environ = task_env(tmp_path, **{env.PARAMS: json.dumps(params)})
    run_task("noop", environ, cast(RedisPublisher, publisher))
    return publisher.events


def test_a_succeeded_task_reports_its_worker_done(tmp_path: Path) -> None:
    events = run_recorded(tmp_path, {"steps": 3})
    assert events[-1]["worker_fraction"] == 1.0


def test_a_failed_task_leaves_its_fraction_where_it_stopped(tmp_path: Path) -> None:
    events = run_recorded(tmp_path, {"steps": 4, "fail": "exception"})
    fractions = [event["worker_fraction"] for event in events]
    assert fractions
    assert all(isinstance(f, float) and f < 1.0 for f in fractions)


def test_a_spilled_result_keeps_the_kinds_outputs_and_its_figures(tmp_path: Path) -> None:
    """A later job's `job:<id>` resolves to the kind's output in the result: spilled (a
    mat-import of many long class names), the small result still holds it, and the figures
    (accuracy) that fit."""
    context = TaskContext(
        job_id="0000000000abcdef",
        index=0,
        artifacts_root=tmp_path,
        reporter=ProgressReporter(None, job_id="0000000000abcdef"),
    )
    big: dict[str, JsonValue] = {
        "class_counts": {f"class-{k:03d}-" + "x" * 40: k for k in range(100)},
        "accuracy": 0.75,
        "classes": [f"class-{k:03d}" for k in range(100)],
        "dataset": "0000000000abcdef/dataset.npz",
        "n_signals": 4950,
    }
    small = spill_result(big, context, ("dataset",))
    assert small["dataset"] == "0000000000abcdef/dataset.npz"
    assert (small["accuracy"], small["n_signals"]) == (0.75, 4950)
    assert small["classes"] == big["classes"]  # what the shapes of later jobs are checked by
    assert "class_counts" not in small
    assert json.loads((tmp_path / str(small["result_file"])).read_text()) == big
    assert len(fit_outcome(Outcome(ok=True, result=small))) < MAX_OUTCOME_BYTES
