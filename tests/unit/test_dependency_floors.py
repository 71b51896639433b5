"""The floors pyproject.toml declares are what is tested: each direct dependency's `>=` is
the release series of the version constraints.txt pins (what `make install` and CI run).
A floor below it would promise versions nothing ran (`redis>=5.0` did not even import)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _name(raw: str) -> str:
    return re.sub(r"[-_.]+", "-", raw).lower()


def pinned() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", line.strip())
        if match:
            pins[_name(match.group(1))] = match.group(2)
    return pins


def floors() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        requirements += extra
    found = {}
    for requirement in requirements:
        match = re.match(r"^([A-Za-z0-9_.\-]+)>=([0-9][^,;\s]*)", requirement)
        if match:
            found[_name(match.group(1))] = match.group(2)
    return found


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def test_every_floor_is_the_tested_release_series() -> None:
    pins = pinned()
    declared = floors()
    assert declared, "no floors found"
    wrong = {}
    for name, floor in declared.items():
        tested = pins.get(name)
        assert tested is not None, f"{name} is declared but constraints.txt pins no version"
        series = _release(tested)[:2]
        if not series <= _release(floor) <= _release(tested):
            wrong[name] = (floor, tested)
    assert wrong == {}, "floor below the tested series, or above the tested version"
