"""The chart takes its credentials from existing Secrets: the Redis password (in-chart
Redis), an external Redis's URLs, the webhooks, the webhook signing key and the SMTP
password. They reach the controller and the task pods through `secretKeyRef` only, so no
rendered object holds one; and the environment the kubelet composes from those references
(the Kubernetes API test server's own logic) gives the controller, and the Jobs it builds,
exactly the credentials they need."""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest

from kubetask.api.runtime import compose
from kubetask.api.settings import Settings
from kubetask.controller.ids import new_job_id
from kubetask.controller.manifests import build_job
from kubetask.controller.records import JobRecord
from kubetask.controller.service import validate_request
from kubetask.kinds import load_kinds
from kubetask.models import JobRequest
from tests.cluster.containers import container_env
from tests.component.chart import KUBE_VERSIONS, NAMESPACE, Obj, controller, find, one, render
from tests.component.test_chart import S3_STORE

PASSWORD = "0123456789abcdef0123456789abcdef"  # what the Secrets hold; never in the chart
EXTERNAL_URL = f"redis://app:{PASSWORD}@redis.data.svc:6379/2"
TASK_URL = f"redis://app:{PASSWORD}@redis.data.svc.cluster.local:6379/2"
KEY_ID = "AKIAKUBETASKTEST0001"
SECRETS = {
    "kt-redis": {"redis-password": PASSWORD},
    "ml-artifacts-s3": {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": PASSWORD},
    "kt-external": {"redis-url": EXTERNAL_URL, "task-url": TASK_URL},
    "kt-notify": {
        "hooks": json.dumps([f"https://hooks.example/{PASSWORD}"]),
        "signing": PASSWORD,
        "smtp": PASSWORD,
    },
}
IN_CHART_AUTH = {"redis": {"auth": {"existingSecret": "kt-redis"}}}
EXTERNAL = {
    "redis": {
        "enabled": False,
        "external": {"existingSecret": "kt-external", "existingSecretTaskUrlKey": "task-url"},
    }
}
NOTIFY = {
    "notifications": {
        "webhooksFrom": {"existingSecret": "kt-notify", "existingSecretKey": "hooks"},
        "signing": {"existingSecret": "kt-notify", "existingSecretKey": "signing"},
        "smtp": {
            "host": "smtp.example",
            "port": 587,
            "to": ["ops@example.com"],
            "username": "kubetask",
            "starttls": True,
            "password": {"existingSecret": "kt-notify", "existingSecretKey": "smtp"},
        },
    }
}
VALUE_SETS: dict[str, Obj] = {
    "in-chart-auth": IN_CHART_AUTH,
    "external": EXTERNAL,
    "notify": NOTIFY,
    "s3-store": S3_STORE,
}


def secret(namespace: str, name: str) -> Obj | None:
    """SECRETS as the Kubernetes API would hold them."""
    data = SECRETS.get(name)
    if data is None:
        return None
    return {"data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def environment(objects: list[Obj], spec: Obj, name: str) -> dict[str, str]:
    """The first container's environment as the kubelet composes it (envFrom, secretKeyRef,
    $(VAR) references), from the rendered objects (the chart's own Secrets, e.g. the
    generated MinIO credentials) and SECRETS."""

    def configmap(namespace: str, name: str) -> Obj | None:
        found = find(objects, "ConfigMap", name)
        return found[0] if found else None

    def any_secret(namespace: str, name: str) -> Obj | None:
        rendered = [
            o for o in find(objects, "Secret", name) if o["metadata"]["namespace"] == namespace
        ]
        return rendered[0] if rendered else secret(namespace, name)

    pod = {"metadata": {"namespace": NAMESPACE, "name": name}, "spec": spec}
    return container_env(pod, spec["containers"][0], configmaps=configmap, secrets=any_secret)


def controller_settings(objects: list[Obj], monkeypatch: pytest.MonkeyPatch) -> Settings:
    deployment = controller(objects)
    env = environment(objects, deployment["spec"]["template"]["spec"], "kubetask-0")
    for key in list(os.environ):
        if key.startswith("KUBETASK_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("KUBETASK_"):
            monkeypatch.setenv(key, value)
    return Settings()


def task_environment(settings: Settings, objects: list[Obj]) -> dict[str, str]:
    """What a task pod of a Job the controller builds with these settings gets."""
    now = datetime.now(UTC)
    wiring = compose(settings, redis_url=settings.redis_url or "", kinds=load_kinds())
    request = validate_request(JobRequest(kind="noop"), kinds=wiring.kinds)
    record = JobRecord(id=new_job_id(now), request=request, created_at=now)
    job = build_job(wiring.spec_for(record), settings.cluster())
    assert PASSWORD not in json.dumps(job)
    return environment(objects, job["spec"]["template"]["spec"], "kt-task-0")


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_no_rendered_object_holds_a_credential(name: str) -> None:
    objects = render(VALUE_SETS[name])
    assert PASSWORD not in json.dumps(objects)
    assert not find(objects, "Secret", "kt-redis")  # referenced, never made or copied
    for obj in objects:
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_the_in_chart_redis_requires_the_password_from_the_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    objects = render(IN_CHART_AUTH)
    redis = one(objects, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    assert redis["args"][-2:] == ["--requirepass", "$(REDIS_PASSWORD)"]
    server_env = environment(objects, one(objects, "StatefulSet")["spec"]["template"]["spec"], "r")
    assert server_env["REDIS_PASSWORD"] == server_env["VALKEYCLI_AUTH"] == PASSWORD
    settings = controller_settings(objects, monkeypatch)
    url = f"redis://:{PASSWORD}@kubetask-redis.{NAMESPACE}.svc:6379/0"
    assert settings.redis_url == url
    assert task_environment(settings, objects)["KUBETASK_REDIS_URL"] == url


def test_an_external_redis_url_comes_from_its_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    objects = render(EXTERNAL)
    assert "KUBETASK_REDIS_URL" not in one(objects, "ConfigMap", "kubetask")["data"]
    settings = controller_settings(objects, monkeypatch)
    assert settings.redis_url == EXTERNAL_URL
    assert task_environment(settings, objects)["KUBETASK_REDIS_URL"] == TASK_URL


def test_notifications_get_their_secrets_by_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = controller_settings(render(NOTIFY), monkeypatch)
    assert [str(url) for url in settings.webhooks] == [f"https://hooks.example/{PASSWORD}"]
    assert settings.webhook_secret is not None
    assert settings.webhook_secret.get_secret_value() == PASSWORD
    smtp = settings.smtp()
    assert smtp is not None
    assert (smtp.host, smtp.port, smtp.username, smtp.password) == (
        "smtp.example",
        587,
        "kubetask",
        PASSWORD,
    )
    assert settings.notify().email_to == ("ops@example.com",)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"redis": {"enabled": False, "external": {"url": EXTERNAL_URL}}},
            "belongs in a Secret",
        ),
        (
            {
                "notifications": {
                    "webhooks": ["https://hooks.example/a"],
                    "webhooksFrom": {"existingSecret": "kt-notify"},
                }
            },
            "not both",
        ),
        ({"redis": {"auth": {"existingSecret": "Not_A_Secret"}}}, "existingSecret"),
        ({"notifications": {"signing": {"existingSecret": "s", "key": "k"}}}, "key"),
    ],
)
def test_credentials_in_values_and_bad_references_are_refused(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmError, match=message):
        render(values)


def _store_secret_refs(container: Obj) -> dict[str, tuple[str, str]]:
    return {
        e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in container["env"]
        if e["name"].startswith("AWS_")
    }


@pytest.mark.parametrize("store", ["s3", "minio"])
def test_the_object_store_credentials_reach_the_controller_and_tasks_by_reference(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user's bucket: its existing Secret; the in-chart MinIO: the generated Secret that
    MinIO itself reads its root credentials from. The controller gets them in its env, the
    Jobs it builds reference the same Secret (KUBETASK_TASK_S3_CREDENTIALS_SECRET)."""
    objects = render(S3_STORE if store == "s3" else {})
    if store == "s3":
        name, key_id, secret_key = "ml-artifacts-s3", KEY_ID, PASSWORD
        url, endpoint = "s3://ml-artifacts/kubetask", "https://s3.eu-west-1.amazonaws.com"
        assert not find(objects, "Secret", name)  # referenced, never made
    else:
        name, url = "kubetask-minio", "s3://kubetask"
        endpoint = f"http://kubetask-minio.{NAMESPACE}.svc:9000"
        data = one(objects, "Secret", name)["data"]
        key_id, secret_key = (
            base64.b64decode(data[k]).decode()
            for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        )
        assert len(key_id) >= 20
        assert len(secret_key) >= 40
        minio = one(objects, "Deployment", name)["spec"]["template"]["spec"]
        server = environment(objects, minio, "minio-0")
        assert (server["MINIO_ROOT_USER"], server["MINIO_ROOT_PASSWORD"]) == (key_id, secret_key)
    spec = controller(objects)["spec"]["template"]["spec"]
    assert _store_secret_refs(spec["containers"][0]) == {
        "AWS_ACCESS_KEY_ID": (name, "AWS_ACCESS_KEY_ID"),
        "AWS_SECRET_ACCESS_KEY": (name, "AWS_SECRET_ACCESS_KEY"),
    }
    server_env = environment(objects, spec, "kubetask-0")
    assert (server_env["AWS_ACCESS_KEY_ID"], server_env["AWS_SECRET_ACCESS_KEY"]) == (
        key_id,
        secret_key,
    )
    settings = controller_settings(objects, monkeypatch)
    assert settings.task_s3_credentials_secret == name
    assert settings.cluster().artifacts_claim == ""
    task = task_environment(settings, objects)
    assert (task["AWS_ACCESS_KEY_ID"], task["AWS_SECRET_ACCESS_KEY"]) == (key_id, secret_key)
    assert (task["KUBETASK_ARTIFACTS_URL"], task["AWS_ENDPOINT_URL"]) == (url, endpoint)
