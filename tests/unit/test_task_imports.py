"""A task loads only its own kind (`load_kind`) and opens the artifact store's modules only
when an object store is configured; the process-level check is
tests/integration/test_task_start.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib.metadata import EntryPoint, EntryPoints
from pathlib import Path

import pytest

from kubetask import env, kinds
from kubetask.jobs.params import NoopParams
from kubetask.jobs.runtime import main
from kubetask.kinds import GROUP, KindError, KindSpec, load_kind

HERE = __name__
OWN = KindSpec(name="own", description="", params=NoopParams, runner="x:y", image="trainer")
INSTALLED = EntryPoints(
    [
        EntryPoint(name="own", value=f"{HERE}:OWN", group=GROUP),
        EntryPoint(name="broken", value="no_such_module_here:SPEC", group=GROUP),
    ]
)


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """INSTALLED as the entry points, in a process where no `load_kinds` ran yet."""

    monkeypatch.setattr(kinds, "entry_points", INSTALLED.select)
    kinds.load_kinds.cache_clear()
    yield
    kinds.load_kinds.cache_clear()


@pytest.mark.usefixtures("installed")
def test_a_kind_is_loaded_without_loading_the_others() -> None:
    assert load_kind("own") == OWN  # "broken" would not load
    assert load_kind("nope") is None
    assert kinds.installed_kind_names() == ["broken", "own"]
    with pytest.raises(KindError, match=r"'broken'.*does not load: ModuleNotFoundError"):
        load_kind("broken")


@pytest.mark.usefixtures("installed")
def test_a_process_that_loaded_every_kind_answers_from_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    only_own = EntryPoints([INSTALLED["own"]])
    monkeypatch.setattr(kinds, "entry_points", only_own.select)
    assert set(kinds.load_kinds()) == {"own"}
    monkeypatch.setattr(kinds, "entry_points", INSTALLED.select)
    assert load_kind("own") == OWN
    assert load_kind("broken") is None  # from load_kinds' answer: no second look


def test_an_unusable_object_store_fails_the_task_with_exit_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    log = tmp_path / "termination-log"
    for name in (env.REDIS_URL, *env.S3_CREDENTIALS):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(env.ARTIFACTS_URL, "s3://bucket/prefix")  # no credentials
    monkeypatch.setenv(env.ARTIFACTS, str(tmp_path / "artifacts"))
    monkeypatch.setenv(env.TERMINATION_LOG, str(log))
    monkeypatch.setenv(env.PARAMS, "{}")
    assert main(["noop"]) == env.EXIT_FAILED
    outcome = json.loads(log.read_text())
    assert outcome["error"]["type"] == "InvalidStoreUrl"
    assert "AWS_ACCESS_KEY_ID" in outcome["error"]["message"]
