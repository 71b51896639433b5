"""Every built-in kind declares the stages its runner reports, so its overall fraction moves
through them in order (kubetask/progress.py) instead of going back at each new stage."""

from __future__ import annotations

import importlib
import inspect
import re

import pytest

from kubetask.jobs import specs
from kubetask.kinds import KindSpec

SPECS = [value for value in vars(specs).values() if isinstance(value, KindSpec)]
REPORTED = re.compile(r'stage="([a-z-]+)"')


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
def test_the_stages_a_runner_reports_are_declared_in_its_spec(spec: KindSpec) -> None:
    module = importlib.import_module(spec.runner.partition(":")[0])
    reported = set(REPORTED.findall(inspect.getsource(module)))
    declared = {name for name, _ in spec.stages}
    if len(spec.stages) > 1 or len(reported) > 1:
        assert reported <= declared, f"{spec.name}: undeclared stages {reported - declared}"
    assert all(weight > 0 for _, weight in spec.stages)
