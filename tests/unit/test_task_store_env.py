"""How a task learns of an object store: `KUBETASK_ARTIFACTS_URL` with the endpoint and region
in its spec (controller/taskspec.py), the credentials by Secret reference on Kubernetes and from
the controller's own environment on the local backend; never by value in a manifest."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kubetask import env
from kubetask.api.runtime import compose
from kubetask.api.settings import Settings
from kubetask.controller.backends.local_supervisor import task_env
from kubetask.controller.manifests import build_job
from kubetask.controller.records import JobRecord
from kubetask.kinds import load_kinds
from kubetask.models import JobRequest

KINDS = load_kinds()
KEYS = {"AWS_ACCESS_KEY_ID": "AKIA-the-key", "AWS_SECRET_ACCESS_KEY": "the-secret"}


@pytest.fixture(autouse=True)
def no_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)


RECORD = JobRecord(
    id="0000000000abcdef",
    request=JobRequest(kind="noop", params={}),
    created_at=datetime(2026, 1, 1, tzinfo=UTC),
)


def task_env_of(settings: Settings) -> dict[str, str]:
    return dict(compose(settings, redis_url="redis://r", kinds=KINDS).spec_for(RECORD).env)


def test_an_object_store_reaches_the_task_with_its_endpoint_and_region() -> None:
    settings = Settings(
        artifacts_url="s3://bucket/prefix", s3_endpoint="http://minio:9000", s3_region="eu-1"
    )
    environ = task_env_of(settings)
    assert {k: environ[k] for k in (env.ARTIFACTS_URL, env.S3_ENDPOINT, env.S3_REGION)} == {
        env.ARTIFACTS_URL: "s3://bucket/prefix",
        env.S3_ENDPOINT: "http://minio:9000",
        env.S3_REGION: "eu-1",
    }


def test_the_stores_time_limits_reach_the_task_as_set() -> None:
    settings = Settings(artifacts_url="s3://bucket", s3_timeout_s=120, s3_read_idle_s=2.5)
    environ = task_env_of(settings)
    assert (environ[env.S3_TIMEOUT], environ[env.S3_READ_IDLE]) == ("120.0", "2.5")
    defaults = task_env_of(Settings(artifacts_url="s3://bucket"))
    assert (defaults[env.S3_TIMEOUT], defaults[env.S3_READ_IDLE]) == ("30.0", "30.0")
    assert env.S3_TIMEOUT not in task_env_of(Settings(artifacts_url="/srv/artifacts"))


def test_the_endpoint_defaults_to_the_controllers_aws_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://s3.local:9000")
    environ = task_env_of(Settings(artifacts_url="s3://bucket"))
    assert environ[env.S3_ENDPOINT] == "http://s3.local:9000"
    assert env.S3_REGION not in environ


@pytest.mark.parametrize("url", [None, "file:///srv/artifacts", "/srv/artifacts"])
def test_a_folder_store_adds_nothing_and_tasks_use_its_folder(url: str | None) -> None:
    settings = Settings(artifacts_url=url, backend="local", data_dir=Path("/data"))
    environ = task_env_of(settings)
    assert env.ARTIFACTS_URL not in environ
    assert env.S3_ENDPOINT not in environ
    assert environ[env.ARTIFACTS] == ("/srv/artifacts" if url else "/data/artifacts")


def test_on_kubernetes_the_credentials_are_secret_references_never_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)  # the controller's own: never copied into a Job
    settings = Settings(
        backend="kubernetes",
        artifacts_url="s3://bucket/prefix",
        s3_endpoint="http://minio:9000",
        task_s3_credentials_secret="kubetask-s3",
    )
    spec = compose(settings, redis_url="redis://r", kinds=KINDS).spec_for(RECORD)
    job = build_job(spec, settings.cluster())
    container = job["spec"]["template"]["spec"]["containers"][0]
    variables = {e["name"]: e for e in container["env"]}
    for name in KEYS:
        assert variables[name] == {
            "name": name,
            "valueFrom": {"secretKeyRef": {"name": "kubetask-s3", "key": name}},
        }
    assert variables[env.ARTIFACTS_URL]["value"] == "s3://bucket/prefix"
    assert not any(value in json.dumps(job) for value in KEYS.values())


def test_without_an_object_store_no_credentials_secret_is_referenced() -> None:
    settings = Settings(backend="kubernetes", task_s3_credentials_secret="kubetask-s3")
    assert set(settings.task_secret_env()) & set(KEYS) == set()


def test_the_local_backend_gives_a_task_on_object_storage_the_controllers_credentials(
    tmp_path: Path,
) -> None:
    settings = Settings(artifacts_url="s3://bucket/prefix", s3_endpoint="http://127.0.0.1:9")
    spec = compose(settings, redis_url="redis://r", kinds=KINDS).spec_for(RECORD)
    system = {"PATH": "/bin", "AWS_ENDPOINT_URL": "http://elsewhere", "OTHER": "x", **KEYS}
    environ, _ = task_env(spec, tmp_path, 0, system=system)
    assert {k: environ[k] for k in KEYS} == KEYS
    assert environ[env.S3_ENDPOINT] == "http://127.0.0.1:9"  # the settings' own wins
    assert "OTHER" not in environ

    folder_spec = compose(Settings(), redis_url="redis://r", kinds=KINDS).spec_for(RECORD)
    environ, _ = task_env(folder_spec, tmp_path, 0, system=system)
    assert not set(KEYS) & set(environ)  # a folder store: no credentials handed out
