"""The `kubetask` CLI against the real API process: in-process with typer's runner, and as a
real subprocess where what a shell sees (stderr, no traceback, exit code) is the point."""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner, Result

from kubetask.cli import ExitCode, app
from kubetask.controller.redis_server import free_port
from tests.component.flaky_proxy import FlakyProxy
from tests.servers import ApiServer

runner = CliRunner()


def kt(server: str, *args: str) -> Result:
    return runner.invoke(app, ["--server", server, *args], catch_exceptions=False)


def kt_process(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubetask", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_submit_prints_the_id_and_get_shows_the_job(api: ApiServer) -> None:
    submitted = kt(api.base_url, "submit", "noop", "-p", "steps=2", "--name", "cli-get")
    assert submitted.exit_code == 0, submitted.output
    job_id = submitted.stdout.strip()
    api.wait(job_id)
    shown = kt(api.base_url, "get", job_id)
    assert shown.exit_code == 0
    for text in (job_id, "noop", "cli-get", "succeeded", "100% steps 2/2", '"steps": 2'):
        assert text in shown.stdout
    as_json = json.loads(kt(api.base_url, "get", job_id, "-o", "json").stdout)
    assert as_json["id"] == job_id
    assert as_json["result"]["steps"] == 2


def test_submit_wait_exits_0_on_success_and_1_on_failure(api: ApiServer) -> None:
    ok = kt(api.base_url, "submit", "noop", "-p", "steps=3", "--wait")
    assert ok.exit_code == 0, ok.output
    assert "succeeded" in ok.stdout
    assert "3/3" in ok.stdout  # the progress bar's count
    failed = kt(
        api.base_url, "submit", "noop", "-p", "fail=exception", "-p", "fail_message=boom", "-w"
    )
    assert failed.exit_code == 1, failed.output
    assert "failed" in failed.stdout
    assert "RuntimeError: boom" in failed.stdout


def test_watch_shows_states_progress_and_the_end(api: ApiServer) -> None:
    job_id = api.submit("noop", {"steps": 4, "step_s": 0.05})
    watched = kt(api.base_url, "watch", job_id)
    assert watched.exit_code == 0, watched.output
    header, lines = watched.stdout.split("\n", 1)
    assert header.startswith(f"job {job_id} (noop): ")
    for text in ("queued", "running", "steps", "4/4", "step 4", "succeeded"):
        assert text in lines
    assert lines.index("queued") < lines.index("running") < lines.index("succeeded")


def test_watch_resumes_when_the_connection_drops(api: ApiServer) -> None:
    job_id = api.submit("noop", {"steps": 12, "step_s": 0.1})
    with FlakyProxy(api.port) as proxy:
        cutter = proxy.drop_once_streaming(within_s=10)
        watched = kt(proxy.base_url, "watch", job_id)
        cutter.join()
    assert watched.exit_code == 0, watched.output
    assert "connection lost" in watched.stderr
    assert "resuming after event" in watched.stderr
    assert "succeeded" in watched.stdout
    assert any("last-event-id" in r.headers for r in proxy.requests)


def test_cancel_then_watch_exits_3(api: ApiServer) -> None:
    job_id = api.submit("noop", {"steps": 100, "step_s": 0.1})
    api.wait(job_id, {"running"})
    cancelled = kt(api.base_url, "cancel", job_id)
    assert cancelled.exit_code == 0, cancelled.output
    assert f"cancelling {job_id}" in cancelled.stdout
    watched = kt(api.base_url, "watch", job_id, "--timeout", "30")
    assert watched.exit_code == 3, watched.output
    assert "cancelled" in watched.stdout
    again = kt(api.base_url, "cancel", job_id)
    assert again.exit_code == ExitCode.ERROR
    assert again.stderr.startswith("error: 409 ")


def test_list_is_a_table_with_filters(api: ApiServer) -> None:
    tag = uuid.uuid4().hex[:12]
    job_id = api.submit("noop", {"steps": 1}, labels={"test": tag}, name="listed")
    api.wait(job_id)
    table = kt(api.base_url, "list", "--label", f"test={tag}")
    assert table.exit_code == 0, table.output
    header, row = table.stdout.strip().splitlines()
    assert header.split() == [
        "ID", "KIND", "NAME", "STATE", "REASON", "PROGRESS", "AGE", "DURATION"
    ]  # fmt: skip
    assert row.split()[:4] == [job_id, "noop", "listed", "succeeded"]
    none = kt(api.base_url, "list", "--label", f"test={tag}", "--state", "failed")
    assert job_id not in none.stdout
    by_kind = kt(api.base_url, "list", "--kind", "noop", "--limit", "1", "-o", "json")
    assert len(json.loads(by_kind.stdout)) == 1


def test_list_piped_is_one_line_per_job_with_the_reason(api: ApiServer) -> None:
    """Piped (not a terminal), each job is one plain line however long its cells: no
    wrapping at 80 columns, no cut cells; the reason a job ended has a column, and `-o wide`
    adds attempts, labels, backend object and message."""
    tag = uuid.uuid4().hex[:12]
    long_name = "a-rather-long-name-that-people-gave-this-job-" + tag[:6]
    failed = api.submit(
        "noop",
        {"fail": "exception", "fail_message": "boom"},
        labels={"test": tag, "team": "machine-learning-research"},
        name=long_name,
    )
    ok = api.submit("noop", {"steps": 1}, labels={"test": tag})
    reason = api.wait(failed)["reason"]
    api.wait(ok)
    assert reason
    listed = kt_process("--server", api.base_url, "list", "-l", f"test={tag}")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 3  # the header and one line per job
    assert lines[0].split()[4] == "REASON"
    failed_row = next(line for line in lines if line.startswith(failed))
    assert long_name in failed_row  # whole, never cut with "…"
    assert failed_row.split()[3:5] == ["failed", reason]
    ok_row = next(line for line in lines if line.startswith(ok))
    assert ok_row.split()[2:5] == ["-", "succeeded", "Completed"]  # "-": an empty name
    wide = kt_process("--server", api.base_url, "list", "-l", f"test={tag}", "-o", "wide")
    header, *rows = wide.stdout.splitlines()
    assert header.split()[-4:] == ["ATTEMPTS", "LABELS", "BACKEND", "MESSAGE"]
    assert len(rows) == 2
    row = next(line for line in rows if line.startswith(failed))
    assert "team=machine-learning-research" in row
    assert api.job(failed)["message"] in row
    as_yaml = yaml.safe_load(kt(api.base_url, "list", "-l", f"test={tag}", "-o", "yaml").stdout)
    assert {job["id"] for job in as_yaml} == {failed, ok}


def test_logs_tail_and_follow(api: ApiServer) -> None:
    job_id = api.submit("noop", {"steps": 3, "step_s": 0.1, "fail": "exit", "fail_message": "bye"})
    followed = kt(api.base_url, "logs", job_id, "-f")
    assert followed.exit_code == 0, followed.output
    assert "bye" in followed.stdout
    assert api.job(job_id)["state"] == "failed"  # -f ended with the job
    assert kt(api.base_url, "logs", job_id).stdout == followed.stdout
    last = followed.stdout.splitlines()[-1]
    assert kt(api.base_url, "logs", job_id, "--tail", "1").stdout.splitlines() == [last]


def test_kinds_and_render(api: ApiServer, tmp_path: Path) -> None:
    kinds = kt(api.base_url, "kinds")
    assert kinds.exit_code == 0
    assert {"datagen", "noop", "train"} <= {line.split()[0] for line in kinds.stdout.splitlines()}
    assert (
        "properties"
        in json.loads(kt(api.base_url, "kinds", "-o", "json").stdout)[0]["params_schema"]
    )
    request = tmp_path / "request.yaml"
    request.write_text("kind: train\nparams:\n  epochs: 2\n  datagen: {length: 256}\n")
    rendered = kt(
        api.base_url, "render", "-f", str(request), "-p", "datagen.n_per_class=5", "--full"
    )
    assert rendered.exit_code == 0, rendered.output
    document = yaml.safe_load(rendered.stdout)
    params = document["request"]["params"]
    assert params["epochs"] == 2
    assert params["datagen"]["n_per_class"] == 5  # a dotted key, nested
    assert params["datagen"]["length"] == 256  # merged with the file's
    manifest = yaml.safe_load(kt(api.base_url, "render", "noop").stdout)
    assert manifest["backend"] == "local"  # what the local backend would run: the manifest
    assert manifest.keys() == document["object"].keys()


def test_submit_from_a_file_with_overrides(api: ApiServer, tmp_path: Path) -> None:
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"kind": "noop", "params": {"steps": 1}, "retries": 2}))
    submitted = kt(
        api.base_url, "submit", "-f", str(request), "-p", "steps=2", "-l", "a=b", "--wait"
    )
    assert submitted.exit_code == 0, submitted.output
    job = api.client.get("/v1/jobs", params={"label": "a=b", "limit": 1}).json()["items"][0]
    assert job["request"]["params"]["steps"] == 2
    assert job["request"]["retries"] == 2


def test_bad_arguments_are_usage_errors(api: ApiServer) -> None:
    assert kt(api.base_url, "submit").exit_code == ExitCode.USAGE
    assert kt(api.base_url, "submit", "noop", "-p", "steps").exit_code == ExitCode.USAGE


def test_an_api_error_is_one_line_without_a_traceback(api: ApiServer) -> None:
    done = kt_process("--server", api.base_url, "submit", "datagen", "-p", "n_per_class=0")
    assert done.returncode == ExitCode.ERROR
    assert done.stderr == (
        "error: 422 params.n_per_class: Input should be greater than or equal to 1\n"
    )
    assert done.stdout == ""
    missing = kt(api.base_url, "get", "0000000000000000")
    assert missing.exit_code == ExitCode.ERROR
    assert missing.stderr == "error: 404 no job with id 0000000000000000\n"


def test_an_unreachable_server_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("KUBETASK_URL", url)
    done = kt_process("list")
    assert done.returncode == ExitCode.ERROR
    assert done.stderr == f"error: cannot reach the kubetask server at {url} (connection refused)\n"
    assert "Traceback" not in done.stdout + done.stderr


def test_secret_references_reach_the_api(api: ApiServer) -> None:
    result = kt(api.base_url, "submit", "noop", "--secret", "HF_TOKEN=hf-creds/token")
    assert result.exit_code == ExitCode.ERROR
    assert "secrets: the local backend cannot read Kubernetes Secrets" in result.output


@pytest.mark.parametrize("where", ["before", "after"])
def test_an_explicit_server_wins_over_kubetask_url(
    api: ApiServer, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """`--server` before or after the command beats $KUBETASK_URL (which used to win when
    the flag came first: the command's own option read the variable)."""
    monkeypatch.setenv("KUBETASK_URL", f"http://127.0.0.1:{free_port()}")  # nothing there
    flag = ["--server", api.base_url]
    args = [*flag, "list"] if where == "before" else ["list", *flag]
    done = kt_process(*args)
    assert done.returncode == 0, done.stderr


def test_submit_options_set_the_request_fields(api: ApiServer) -> None:
    """Parallel work, resources and the rest from flags, without a request file."""
    submitted = kt(
        api.base_url,
        "submit", "noop", "-p", "steps=1",
        "--parallelism", "2", "--completions", "3",
        "--cpu", "250m", "--memory", "128Mi",
        "--retries", "1", "--timeout-s", "120", "--name", "flagged",
    )  # fmt: skip
    assert submitted.exit_code == 0, submitted.output
    request = api.job(submitted.stdout.strip())["request"]
    assert request["parallelism"] == 2
    assert request["completions"] == 3
    assert request["resources"]["cpu"] == "250m"
    assert request["resources"]["memory"] == "128Mi"
    assert request["retries"] == 1
    assert request["timeout_s"] == 120
    assert request["name"] == "flagged"
    placed = kt(
        api.base_url, "submit", "noop", "--queue", "team-a", "--priority", "high",
    )  # fmt: skip
    assert placed.exit_code == 0, placed.output
    request = api.job(placed.stdout.strip())["request"]
    assert (request["queue"], request["priority"]) == ("team-a", "high")
    model = kt(api.base_url, "submit", "noop", "--gpu-type", "a100")  # sent, and refused:
    assert model.exit_code == ExitCode.ERROR  # a GPU model without a GPU never schedules
    assert "resources.gpu_type: " in model.stderr
    gpu = kt(api.base_url, "submit", "noop", "--gpu", "1")
    assert gpu.exit_code == ExitCode.ERROR  # the local backend has none to give
    assert "resources.gpu: the local backend" in gpu.stderr


def test_render_takes_the_same_placement_options(api: ApiServer) -> None:
    rendered = kt(
        api.base_url, "render", "hpo", "--parallelism", "2", "--completions", "2",
        "--cpu", "500m", "--memory", "1Gi", "--full",
    )  # fmt: skip
    assert rendered.exit_code == 0, rendered.output
    request = yaml.safe_load(rendered.stdout)["request"]
    assert (request["parallelism"], request["completions"]) == (2, 2)
    assert (request["resources"]["cpu"], request["resources"]["memory"]) == ("500m", "1Gi")


def test_did_you_mean_for_kinds_and_params(api: ApiServer) -> None:
    kind = kt_process("--server", api.base_url, "submit", "noopp")
    assert kind.returncode == ExitCode.ERROR
    assert kind.stderr.startswith("error: 422 kind: unknown kind 'noopp'")
    assert kind.stderr.rstrip().endswith("(did you mean noop?)")
    param = kt(api.base_url, "submit", "noop", "-p", "stpes=2")
    assert param.exit_code == ExitCode.ERROR
    assert "params.stpes: did you mean steps?" in param.stderr
    nested = kt(api.base_url, "render", "train", "-p", "datagen.n_per_clas=5")
    assert "params.datagen.n_per_clas: did you mean datagen.n_per_class?" in nested.stderr
    nothing_close = kt(api.base_url, "submit", "noop", "-p", "zzzzzz=1")
    assert nothing_close.exit_code == ExitCode.ERROR
    assert "did you mean" not in nothing_close.stderr


def test_a_mistyped_command_gets_a_suggestion() -> None:
    done = kt_process("lsit")
    assert done.returncode == ExitCode.USAGE
    assert "Did you mean 'list'" in done.stderr


def test_help_shows_flags_as_flags() -> None:
    helped = runner.invoke(app, ["submit", "--help"], env={"COLUMNS": "120"})
    assert helped.exit_code == 0
    assert "--wait" in helped.stdout
    assert "--parallelism" in helped.stdout
    assert "<bool>" not in helped.stdout
    assert "<bool>" not in runner.invoke(app, ["logs", "--help"]).stdout


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_a_script_that_completes(shell: str) -> None:
    script = kt_process("completion", shell)
    assert script.returncode == 0, script.stderr
    assert "_KUBETASK_COMPLETE" in script.stdout
    assert "kubetask" in script.stdout
    if shell != "bash":
        return
    answered = subprocess.run(
        [sys.executable, "-m", "kubetask"],
        env={
            **os.environ,
            "_KUBETASK_COMPLETE": "complete_bash",
            "COMP_WORDS": "kubetask submit --para",
            "COMP_CWORD": "2",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert answered.stdout.split() == ["--param", "--parallelism"]


def test_watch_ends_on_a_line_with_the_outcome(api: ApiServer) -> None:
    job_id = api.submit("noop", {"steps": 4, "step_s": 0.05})
    watched = kt(api.base_url, "watch", job_id)
    assert watched.exit_code == 0, watched.output
    bar = next(line for line in watched.stdout.splitlines() if "4/4" in line)
    assert bar.startswith("✔ steps ")
    assert "100% 4/4  succeeded" in bar


@pytest.mark.parametrize("where", ["before", "after"])
def test_ctrl_c_leaves_the_job_running_and_says_how_to_come_back(
    api: ApiServer, where: str
) -> None:
    job_id = api.submit("noop", {"steps": 200, "step_s": 0.1})
    api.wait(job_id, {"running"})
    flag = ["--server", api.base_url]
    args = [*flag, "watch", job_id] if where == "before" else ["watch", job_id, *flag]
    watching = subprocess.Popen(
        [sys.executable, "-m", "kubetask", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert watching.stdout is not None
    ready, _, _ = select.select([watching.stdout], [], [], 30)
    assert ready, "the CLI printed nothing in 30 s"
    header = watching.stdout.readline()  # printed just before the live lines start
    assert header.startswith(f"job {job_id} (noop): running"), header
    time.sleep(0.5)
    watching.send_signal(signal.SIGINT)
    out, err = watching.communicate(timeout=30)
    assert watching.returncode == ExitCode.INTERRUPTED, err
    assert "Traceback" not in err
    assert f"job {job_id} goes on running" in err
    assert f"`kubetask --server {api.base_url} watch {job_id}`" in err
    assert f"`kubetask --server {api.base_url} cancel {job_id}`" in err
    assert api.job(job_id)["state"] == "running"
    assert kt(api.base_url, "cancel", job_id).exit_code == 0
    assert "⏸ steps" in out  # its last frame says it was interrupted, no frozen spinner


README = Path(__file__).parents[2] / "README.md"


def _readme_cli_lines() -> list[str]:
    """The `kubetask …` commands of the README's CLI block, without comments."""
    section = README.read_text().split("## CLI and SDK", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = []
    for line in block.splitlines():
        match = re.search(r"kubetask [^#)]*", line)
        if match:
            commands.append(match.group(0).strip())
    return commands


def test_the_readme_cli_lines_run_as_written(api: ApiServer) -> None:
    """The README lines for parallel work, `list` and completion, run as they are written
    (against this test's server)."""
    lines = _readme_cli_lines()
    parallel = next(line for line in lines if "--parallelism" in line)
    submitted = kt(api.base_url, *shlex.split(parallel)[1:])
    assert submitted.exit_code == 0, submitted.output
    job_id = submitted.stdout.strip()
    try:
        request = api.job(job_id)["request"]
        assert (request["parallelism"], request["completions"]) == (2, 2)
        assert request["resources"] == {"cpu": "2", "memory": "4Gi", "gpu": 0, "gpu_type": None}
        for line in lines:
            if line.startswith("kubetask list"):
                listed = kt(api.base_url, *shlex.split(line)[1:])
                assert listed.exit_code == 0, listed.output
                assert listed.stdout.split()[4] == "REASON"
    finally:
        kt(api.base_url, "cancel", job_id)
    completion = next(line for line in lines if line.startswith("kubetask completion"))
    assert "complete -o default -F" in kt_process(*shlex.split(completion)[1:]).stdout


@pytest.mark.parametrize(
    "command",
    [["list"], ["kinds", "-o", "json"], ["submit", "noop", "-p", "steps=2", "--wait"]],
    ids=" ".join,
)
def test_a_closed_stdout_ends_the_command_quietly_with_141(
    api: ApiServer, command: list[str]
) -> None:
    """`kubetask ... | head -1`: the reader has gone; neither a traceback nor an exit code
    that says the job failed (1) or the command was misused (2)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "kubetask", "--server", api.base_url, *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    process.stdout.close()  # before the command has written anything
    _, stderr = process.communicate(timeout=60)
    assert (process.returncode, stderr) == (ExitCode.CLOSED_OUTPUT, b"")


def test_uploading_a_file_whose_size_is_not_what_it_holds_is_one_clear_error(
    api: ApiServer,
) -> None:
    """/proc's files say they hold 0 bytes: reading gives more."""
    done = kt_process("--server", api.base_url, "upload", "/proc/self/status", "cli/status.txt")
    assert done.returncode == ExitCode.ERROR, done.stderr
    assert done.stderr.startswith("error: /proc/self/status changed while it was uploaded")
    assert "Traceback" not in done.stderr
    assert kt(api.base_url, "artifacts", "uploads", "-o", "json").stdout.count("status.txt") == 0
