"""`kubetask artifacts ls|get` and `kubetask upload` against the real API process: tables and
JSON, downloads to a file, a folder or stdout (a progress bar only for large files on a
terminal), uploads with the ref to use, "did you mean" and completion, and the README's
artifact lines run as written."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from kubetask.cli import ExitCode, app
from kubetask.models import DEFAULT_TENANT
from tests.component.job_files import JobFiles, job_with_files
from tests.servers import ApiServer, own_database

runner = CliRunner()
README = Path(__file__).parents[2] / "README.md"


def kt(server: str, *args: str, **env: str) -> Result:
    return runner.invoke(app, ["--server", server, *args], env=env, catch_exceptions=False)


@pytest.fixture(scope="module")
def done(api: ApiServer) -> JobFiles:
    return job_with_files(api)


def test_ls_piped_is_a_plain_table_with_human_sizes(api: ApiServer, done: JobFiles) -> None:
    listed = kt(api.base_url, "artifacts", "ls", done.job_id)
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["PATH", "SIZE", "MODIFIED"]
    paths = [line.split("   ")[0].strip() for line in lines[1:]]
    assert paths == sorted(done.files)
    model = next(line for line in lines if line.startswith("model.pt"))
    assert "3.0 MiB" in model
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$", model)


def test_ls_on_a_terminal_and_as_json(api: ApiServer, done: JobFiles) -> None:
    table = kt(api.base_url, "artifacts", "ls", done.job_id, TTY_COMPATIBLE="1", COLUMNS="120")
    assert table.exit_code == 0, table.output
    assert "PATH" in table.stdout
    assert "plots/confusion matrix.png" in table.stdout
    as_json = kt(api.base_url, "artifacts", "ls", done.job_id, "-o", "json")
    items = json.loads(as_json.stdout)
    assert {i["path"]: i["size"] for i in items} == {p: len(c) for p, c in done.files.items()}
    assert set(items[0]) == {"path", "size", "content_type", "etag", "modified"}


def test_ls_of_an_unknown_job_is_one_line_exit_4(api: ApiServer) -> None:
    missing = kt(api.base_url, "artifacts", "ls", "no-such-job")
    assert missing.exit_code == ExitCode.ERROR
    assert missing.stderr.startswith("error: 404")
    assert missing.stderr.count("\n") == 1


def test_get_saves_here_by_default_or_where_told(
    api: ApiServer, done: JobFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    here = kt(api.base_url, "artifacts", "get", done.job_id, "plots/confusion matrix.png")
    assert here.exit_code == 0, here.output
    assert here.stdout.strip() == "confusion matrix.png"
    saved = tmp_path / "confusion matrix.png"
    assert saved.read_bytes() == done.files["plots/confusion matrix.png"]
    named = kt(api.base_url, "artifacts", "get", done.job_id, "metrics.json", "-o", "m.json")
    assert named.exit_code == 0, named.output
    assert (tmp_path / "m.json").read_bytes() == done.files["metrics.json"]
    (tmp_path / "out").mkdir()
    into = kt(api.base_url, "artifacts", "get", done.job_id, "metrics.json", "-o", "out")
    assert into.stdout.strip() == str(Path("out") / "metrics.json")
    assert (tmp_path / "out" / "metrics.json").exists()


def test_get_into_a_missing_folder_is_a_usage_error(
    api: ApiServer, done: JobFiles, tmp_path: Path
) -> None:
    nowhere = tmp_path / "no" / "such" / "m.json"
    refused = kt(api.base_url, "artifacts", "get", done.job_id, "metrics.json", "-o", str(nowhere))
    assert refused.exit_code == ExitCode.USAGE
    assert "No such file or directory" in refused.stderr
    assert "Traceback" not in refused.output
    assert not (tmp_path / "no").exists()


def test_get_to_stdout_is_the_bytes_alone(api: ApiServer, done: JobFiles) -> None:
    piped = kt(api.base_url, "artifacts", "get", done.job_id, "model.pt", "-o", "-")
    assert piped.exit_code == 0, piped.stderr
    assert piped.stdout_bytes == done.files["model.pt"]


@pytest.mark.parametrize(("path", "bar"), [("model.pt", True), ("metrics.json", False)])
def test_a_progress_bar_for_large_files_on_a_terminal(
    api: ApiServer, done: JobFiles, tmp_path: Path, path: str, bar: bool
) -> None:
    args = ("artifacts", "get", done.job_id, path, "-o", str(tmp_path))
    on_terminal = kt(api.base_url, *args, TTY_COMPATIBLE="1", COLUMNS="100")
    assert on_terminal.exit_code == 0, on_terminal.output
    assert ("3.0/3.0 MiB" in on_terminal.stderr) is bar, on_terminal.stderr
    assert ("model.pt" in on_terminal.stderr) is bar
    piped = kt(api.base_url, *args, TTY_COMPATIBLE="0")
    assert piped.stderr == ""


def test_get_a_missing_file_suggests_a_close_one(api: ApiServer, done: JobFiles) -> None:
    typo = kt(api.base_url, "artifacts", "get", done.job_id, "mdoel.pt")
    assert typo.exit_code == ExitCode.ERROR
    assert "error: 404" in typo.stderr
    assert "did you mean model.pt?" in typo.stderr
    far = kt(api.base_url, "artifacts", "get", done.job_id, "zzz.bin")
    assert far.exit_code == ExitCode.ERROR
    assert "did you mean" not in far.stderr
    outside = kt(api.base_url, "artifacts", "get", done.job_id, "../x")
    assert outside.exit_code == ExitCode.USAGE  # refused here: nothing sent
    assert "PATH '../x'" in outside.output


def test_a_path_the_api_would_refuse_is_a_usage_error_before_anything_is_sent(
    tmp_path: Path,
) -> None:
    local = tmp_path / "rec.mat"
    local.write_bytes(b"x")
    for remote in ("../x", "/abs/x"):
        refused = kt("http://127.0.0.1:9", "upload", str(local), remote)  # nobody listens
        assert refused.exit_code == ExitCode.USAGE, refused.output
        assert f"REMOTE {remote!r}" in refused.output


def test_upload_prints_the_stored_path_and_the_ref(api: ApiServer, tmp_path: Path) -> None:
    local = tmp_path / "rec.mat"
    local.write_bytes(os.urandom(4096))
    remote = f"cli-{uuid.uuid4().hex[:8]}/rec.mat"
    sent = kt(api.base_url, "upload", str(local), remote)
    assert sent.exit_code == 0, sent.output
    assert sent.stdout == f"uploads/{DEFAULT_TENANT}/{remote}\n"
    assert f"upload:{remote}" in sent.stderr
    missing = kt(api.base_url, "upload", str(tmp_path / "nope.mat"))
    assert missing.exit_code == ExitCode.USAGE


def test_a_progress_bar_for_a_large_upload_on_a_terminal(api: ApiServer, tmp_path: Path) -> None:
    local = tmp_path / "big.bin"
    local.write_bytes(os.urandom(3 * 1024 * 1024))
    sent = kt(api.base_url, "upload", str(local), "bars/big.bin", TTY_COMPATIBLE="1")
    assert sent.exit_code == 0, sent.output
    assert "3.0/3.0 MiB" in sent.stderr
    piped = kt(api.base_url, "upload", str(local), "bars/big.bin", TTY_COMPATIBLE="0")
    assert "MiB" not in piped.stderr


def test_upload_over_the_limit_says_so(redis_url: str, tmp_path: Path) -> None:
    server = ApiServer(
        redis_url=own_database(redis_url), data_dir=tmp_path / "api", max_upload_bytes=1000
    )
    server.start()
    try:
        local = tmp_path / "big.bin"
        local.write_bytes(b"x" * 3000)
        refused = kt(server.base_url, "upload", str(local))
    finally:
        server.close()
    assert refused.exit_code == ExitCode.ERROR
    assert refused.stderr.startswith("error: 413")
    assert "big.bin is 2.9 KiB" in refused.stderr
    assert "KUBETASK_MAX_UPLOAD_BYTES" in refused.stderr


def _kubetask(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubetask", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_mistyped_artifact_commands_get_a_suggestion() -> None:
    group = _kubetask("artifact", "ls", "x")
    assert group.returncode == ExitCode.USAGE
    assert "Did you mean 'artifacts'" in group.stderr
    sub = _kubetask("artifacts", "lss", "x")
    assert sub.returncode == ExitCode.USAGE
    assert "Did you mean 'ls'" in sub.stderr


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("kubetask artif", ["artifacts"]),
        ("kubetask artifacts ", ["get", "ls"]),
        ("kubetask up", ["upload"]),
    ],
)
def test_shell_completion_knows_the_new_commands(words: str, expected: list[str]) -> None:
    answered = _kubetask(
        _KUBETASK_COMPLETE="complete_bash",
        COMP_WORDS=words,
        COMP_CWORD=str(len(words.split(" ")) - 1),
    )
    assert sorted(answered.stdout.split()) == expected, answered.stderr


def test_shell_completion_offers_the_jobs_files(api: ApiServer, done: JobFiles) -> None:
    def complete(words: str) -> list[str]:
        answered = _kubetask(
            _KUBETASK_COMPLETE="complete_bash",
            COMP_WORDS=words,
            COMP_CWORD=str(len(words.split(" ")) - 1),
            KUBETASK_URL=api.base_url,
        )
        return answered.stdout.splitlines()

    assert complete(f"kubetask artifacts get {done.job_id} pl") == ["plots/confusion matrix.png"]
    assert complete(f"kubetask artifacts get {done.job_id} m") == ["metrics.json", "model.pt"]
    assert complete("kubetask artifacts get no-such-job ") in ([], [""])


def _readme_lines(command: str) -> list[str]:
    """The README CLI block's `kubetask <command> …` lines, without their comments."""
    section = README.read_text().split("## CLI and SDK", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    found = (re.search(r"kubetask [^#)]*", line) for line in block.splitlines())
    return [m.group(0).strip() for m in found if m and m.group(0).startswith(command)]


def test_the_readme_artifact_lines_run_as_written(
    api: ApiServer, done: JobFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recording.mat").write_bytes(b"MATLAB 5.0 MAT-file")
    lines = _readme_lines("kubetask upload") + _readme_lines("kubetask artifacts")
    assert len(lines) >= 3, lines
    for line in lines:
        args = [done.job_id if arg == "$id" else arg for arg in shlex.split(line)[1:]]
        ran = kt(api.base_url, *args)
        assert ran.exit_code == 0, (line, ran.output)
    assert (tmp_path / "model.pt").read_bytes() == done.files["model.pt"]
