"""Secrets stay secret: credentials reach tasks only through Kubernetes Secret references, and
no password, signing key or token ever shows in a Job (its annotations, its env values), a
Kubernetes Event, the API's or the controller's log, or any API answer.

The end-to-end tests run the real API process against a real Redis-protocol server whose
ACL user needs a password (so a job that succeeds has used it), with the kubernetes backend
against the real control plane (the Secrets created in the installation's namespace through
the API; the node agent resolves `secretKeyRef` by reading them from the API server, and
`$(VAR)` references), and with the local backend.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes.client as k8s
import kubernetes_validate
import pytest
import redis
from pydantic import ValidationError

from kubetask.api.settings import Settings
from kubetask.controller.clock import utcnow
from kubetask.controller.ids import new_job_id
from kubetask.controller.manifests import build_job
from kubetask.controller.records import JobRecord
from kubetask.controller.redaction import redact_url, url_origin
from kubetask.controller.redis_server import RedisServer, free_port
from kubetask.controller.service import validate_request
from kubetask.controller.taskspec import TaskDefaults, build_task_spec
from kubetask.kinds import load_kinds
from kubetask.models import JobRequest
from tests.cluster.control_plane import ControlPlane
from tests.conftest import KubeStack, kubernetes_stack
from tests.servers import ApiServer

PASSWORD_REF = "$(KUBETASK_REDIS_PASSWORD)"


@dataclass(frozen=True)
class Credentials:
    """Every secret of one installation, each a distinct random string."""

    redis_user: str
    redis_password: str
    webhook_secret: str
    webhook_token: str  # in a webhook URL's path, as Slack's are
    smtp_password: str
    hf_token: str  # a user's own credential, passed to a task as a Secret reference

    def values(self) -> dict[str, str]:
        return {
            "redis password": self.redis_password,
            "webhook signing key": self.webhook_secret,
            "webhook token": self.webhook_token,
            "smtp password": self.smtp_password,
            "user token": self.hf_token,
        }


def leaks(text: str, credentials: Credentials) -> list[str]:
    return [name for name, value in credentials.values().items() if value in text]


@pytest.fixture(scope="module")
def credentials(redis_server: RedisServer) -> Iterator[Credentials]:
    """A Redis ACL user that needs its password (and the other secrets, made up)."""
    made = Credentials(
        redis_user=f"kt-{secrets.token_hex(4)}",
        **{
            name: secrets.token_hex(16)
            for name in (
                "redis_password",
                "webhook_secret",
                "webhook_token",
                "smtp_password",
                "hf_token",
            )
        },
    )
    with redis.Redis.from_url(redis_server.url) as admin:
        admin.execute_command(
            "ACL", "SETUSER", made.redis_user, "on", f">{made.redis_password}", "~*", "&*", "+@all"
        )
        yield made
        admin.execute_command("ACL", "DELUSER", made.redis_user)


def private_url(redis_server: RedisServer, credentials: Credentials, db: int) -> str:
    """The URL of a database of its own, as the ACL user (with the password in it)."""
    host_port = redis_server.url.split("://", 1)[1].rsplit("/", 1)[0]
    url = f"redis://{credentials.redis_user}:{credentials.redis_password}@{host_port}/{db}"
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    return url


def notification_settings(credentials: Credentials, port: int) -> dict[str, Any]:
    """Webhooks and email to a port where nothing listens: each delivery fails and is
    logged, which is what the log check wants to see."""
    return {
        "webhooks": json.dumps([f"http://127.0.0.1:{port}/hooks/{credentials.webhook_token}"]),
        "webhook_secret": credentials.webhook_secret,
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_to": json.dumps(["ops@example.com"]),
        "smtp_username": "kubetask",
        "smtp_password": credentials.smtp_password,
        "notify_poll_s": 0.2,
        "notify_backoff_s": 0.2,
        "webhook_allow_private": True,  # to 127.0.0.1: refused by default, never attempted
    }


def wait_for_log(server: ApiServer, *needles: str, timeout_s: float = 20) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        text = (server.data_dir / "api.log").read_text()
        if all(needle in text for needle in needles):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"log never said {needles}:\n{text[-3000:]}")
        time.sleep(0.1)


def api_answers(server: ApiServer, job_id: str, request: dict[str, Any]) -> list[str]:
    """Every kind of answer the API gives, as text: job view, list, logs, events, dry run,
    kinds, the spec, and problem details (404, 422)."""
    client = server.client
    answers = [
        client.get(f"/v1/jobs/{job_id}"),
        client.get("/v1/jobs"),
        client.get(f"/v1/jobs/{job_id}/logs"),
        client.get(f"/v1/jobs/{job_id}/events"),
        client.post("/v1/jobs", params={"dry_run": "true"}, json=request),
        client.get("/v1/kinds"),
        client.get("/openapi.json"),
        client.get("/v1/jobs/0000000000000000"),
        client.post("/v1/jobs", json={**request, "params": {"steps": -1}}),
    ]
    assert [r.status_code for r in answers[-2:]] == [404, 422]
    return [r.text for r in answers]


# -- the kubernetes backend ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["url-secret", "password-secret"])
def test_tasks_get_credentials_through_secret_references_only(
    control_plane: ControlPlane,
    redis_server: RedisServer,
    credentials: Credentials,
    tmp_path: Path,
    mode: str,
) -> None:
    """url-secret: the whole task Redis URL in a Secret (an external Redis); password-secret:
    the password in a Secret and $(KUBETASK_REDIS_PASSWORD) in the URL (the chart's Redis)."""
    url = private_url(redis_server, credentials, db=13)
    user = credentials.redis_user
    task_redis: dict[str, Any] = (
        {"task_redis_url_secret": json.dumps({"name": "kubetask-redis", "key": "url"})}
        if mode == "url-secret"
        else {
            "task_redis_password_secret": json.dumps({"name": "kubetask-redis", "key": "pw"}),
            "task_redis_url": url.replace(credentials.redis_password, PASSWORD_REF),
        }
    )
    settings = {**task_redis, **notification_settings(credentials, free_port())}
    with kubernetes_stack(control_plane, url, tmp_path, **settings) as stack, stack.client() as api:
        core = k8s.CoreV1Api(api)
        for name, data in (
            ("kubetask-redis", {"url": url, "pw": credentials.redis_password}),
            ("hf", {"token": credentials.hf_token}),
        ):
            body = k8s.V1Secret(metadata=k8s.V1ObjectMeta(name=name), string_data=data)
            core.create_namespaced_secret(stack.namespace, body)
        request = {
            "kind": "noop",
            "params": {"steps": 3},
            "secrets": [{"name": "hf", "key": "token", "env": "HF_TOKEN"}],
        }
        job_id = stack.api.submit("noop", {"steps": 3}, secrets=request["secrets"])
        view = stack.api.wait(job_id, timeout_s=60)
        # it ran, and its progress came through Redis as the ACL user: the URL (or the
        # password) reached the task from the Secret
        assert view["state"] == "succeeded", view
        assert view["progress"]["current"] == 3
        missing = stack.api.submit(
            "noop", secrets=[{"name": "hf", "key": "nothing-here", "env": "HF_TOKEN"}]
        )
        waiting = stack.api.wait(missing, {"pending"}, timeout_s=30)
        own = {"name": "kubetask-redis", "key": "pw", "env": "TORCH_LOGS"}  # printed by torch
        taken = stack.api.client.post("/v1/jobs", json={"kind": "noop", "secrets": [own]})
        assert taken.status_code == 422, taken.text
        assert [e["field"] for e in taken.json()["errors"]] == ["secrets.0.name"]
        answers = api_answers(stack.api, job_id, request)
        log = wait_for_log(stack.api, "127.0.0.1", "ops@example.com")
        assert "failed (attempt" in log
        stored = stored_objects(stack, api)

    job = next(j for j in stored["jobs"] if j["metadata"]["name"] == f"kt-{job_id}")
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["HF_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "hf", "key": "token"}}
    if mode == "url-secret":
        assert env["KUBETASK_REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"] == "kubetask-redis"
    else:
        assert env["KUBETASK_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "pw"
        assert env["KUBETASK_REDIS_URL"]["value"].startswith(f"redis://{user}:{PASSWORD_REF}@")
    assert json.loads(job["metadata"]["annotations"]["kubetask.io/request"])["secrets"] == [
        {"name": "hf", "key": "token", "env": "HF_TOKEN"}
    ]
    assert "nothing-here" in json.dumps(waiting)  # the missing key is named, not a value
    assert "Succeeded" in {e["reason"] for e in stored["events"]}  # the controller's, too
    everything = {
        **{f"{kind} objects": json.dumps(objects) for kind, objects in stored.items()},
        "API and controller log": log,
        **{f"API answer {i}": text for i, text in enumerate(answers)},
    }
    found = {where: leaks(text, credentials) for where, text in everything.items()}
    assert not any(found.values()), {k: v for k, v in found.items() if v}


def stored_objects(stack: KubeStack, api: k8s.ApiClient) -> dict[str, list[dict[str, Any]]]:
    """What the API server holds in the installation's namespace, Secrets aside: Jobs, Pods,
    Events (the controller's, the Job controller's, the scheduler's, the node agent's), ..."""
    core: Any = k8s.CoreV1Api(api)
    lists = {
        "jobs": k8s.BatchV1Api(api).list_namespaced_job,
        "pods": core.list_namespaced_pod,
        "events": core.list_namespaced_event,
        "configmaps": core.list_namespaced_config_map,
        "leases": k8s.CoordinationV1Api(api).list_namespaced_lease,
    }
    stored: dict[str, list[dict[str, Any]]] = {}
    for kind, list_fn in lists.items():
        response: Any = list_fn(stack.namespace, _preload_content=False)
        stored[kind] = json.loads(response.data)["items"]
    return stored


# -- the local backend ----------------------------------------------------------------------------


def test_the_local_backend_shows_no_password_and_refuses_secret_references(
    redis_server: RedisServer, credentials: Credentials, tmp_path: Path
) -> None:
    url = private_url(redis_server, credentials, db=12)
    server = ApiServer(
        redis_url=url, data_dir=tmp_path / "api", **notification_settings(credentials, free_port())
    )
    server.start()
    try:
        request = {"kind": "noop", "params": {"steps": 2}}
        dry = server.client.post("/v1/jobs", params={"dry_run": "true"}, json=request).json()
        shown = dry["object"]["spec"]["env"]["KUBETASK_REDIS_URL"]
        assert shown == redact_url(url) != url
        job_id = server.submit("noop", {"steps": 2})
        view = server.wait(job_id, timeout_s=60)
        assert view["state"] == "succeeded"
        assert view["progress"]["current"] == 2  # the task reached Redis with the password
        refused = server.client.post(
            "/v1/jobs", json={**request, "secrets": [{"name": "hf", "key": "t", "env": "HF"}]}
        )
        assert refused.status_code == 422
        assert [e["field"] for e in refused.json()["errors"]] == ["secrets"]
        assert "local backend" in refused.json()["detail"]
        answers = api_answers(server, job_id, request)
        log = wait_for_log(server, "127.0.0.1", "ops@example.com")
    finally:
        server.close()
    for where, text in {"log": log, **{str(i): a for i, a in enumerate(answers)}}.items():
        assert not leaks(text, credentials), where


# -- settings, requests and manifests (pure) ------------------------------------------------------


def test_settings_never_show_their_secrets(credentials: Credentials) -> None:
    url = f"redis://u:{credentials.redis_password}@redis:6379/0"
    settings = Settings(
        backend="local",
        redis_url=url,
        task_redis_url=url,
        webhooks=[f"https://hooks.example/{credentials.webhook_token}"],
        webhook_secret=credentials.webhook_secret,
        smtp_password=credentials.smtp_password,
    )
    for text in (repr(settings), str(settings)):  # what an accidental log line would show
        assert not leaks(text, credentials), text
    dumped = settings.model_dump_json()  # asked for: the URLs, but never the keys
    assert credentials.webhook_secret not in dumped
    assert credentials.smtp_password not in dumped
    smtp = settings.smtp()
    assert smtp is None or credentials.smtp_password not in repr(smtp)


def test_a_password_in_the_task_redis_url_is_refused_on_kubernetes(
    credentials: Credentials,
) -> None:
    url = f"redis://:{credentials.redis_password}@redis:6379/0"
    with pytest.raises(ValidationError) as refused:
        Settings(backend="kubernetes", redis_url=url)
    assert "KUBETASK_TASK_REDIS_URL_SECRET" in str(refused.value)
    assert not leaks(str(refused.value), credentials)
    with pytest.raises(ValidationError, match="KUBETASK_TASK_REDIS_PASSWORD_SECRET"):
        Settings(backend="kubernetes", redis_url=url, task_redis_url=f"redis://:{PASSWORD_REF}@r/0")


@pytest.mark.parametrize(
    ("task_redis", "names"),
    [
        ({"task_redis_url_secret": {"name": "redis-url", "key": "url"}}, ["KUBETASK_REDIS_URL"]),
        (
            {
                "task_redis_password_secret": {"name": "redis", "key": "password"},
                "task_redis_url": f"redis://:{PASSWORD_REF}@redis:6379/0",
            },
            ["KUBETASK_REDIS_PASSWORD"],
        ),
    ],
)
def test_jobs_reference_secrets_and_pass_strict_validation(
    credentials: Credentials, task_redis: dict[str, Any], names: list[str]
) -> None:
    settings = Settings(
        backend="kubernetes",
        redis_url=f"redis://:{credentials.redis_password}@redis:6379/0",
        **task_redis,
    )
    request = validate_request(
        JobRequest(kind="noop", secrets=[{"name": "hf", "key": "token", "env": "HF_TOKEN"}]),
        kinds=load_kinds(),
    )
    record = JobRecord(id=new_job_id(utcnow()), request=request, created_at=utcnow())
    defaults = TaskDefaults(
        redis_url=settings.task_redis_url or settings.redis_url or "",
        artifacts="/artifacts",
        images={"trainer": "t", "gan": "g"},
    )
    job = build_job(build_task_spec(record, defaults, load_kinds()), settings.cluster())
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    # the references first (in name order), so that values may name them as $(VAR)
    assert [e["name"] for e in env if "secretKeyRef" in e.get("valueFrom", {})] == sorted(
        ["HF_TOKEN", *names]
    )
    assert env[0]["name"] == "HF_TOKEN"
    assert not leaks(json.dumps(job), credentials)
    for version in ("1.30.0", "1.37.0"):
        kubernetes_validate.validate(job, version, strict=True)


@pytest.mark.parametrize(
    ("secret", "field"),
    [
        ({"name": "hf", "key": "token", "env": "KUBETASK_REDIS_URL"}, "secrets.0.env"),
        ({"name": "hf", "key": "token", "env": "HOME"}, "secrets.0.env"),
        ({"name": "hf", "key": "token", "env": "PATH"}, "secrets.0.env"),
        ({"name": "hf", "key": "token", "env": "PYTHONPATH"}, "secrets.0.env"),
        ({"name": "hf", "key": "token", "env": "LD_PRELOAD"}, "secrets.0.env"),
        ({"name": "hf", "key": "token", "env": "NVIDIA_VISIBLE_DEVICES"}, "secrets.0.env"),
        ({"name": "hf", "key": "token", "env": "CUDA_VISIBLE_DEVICES"}, "secrets.0.env"),
        ({"name": "hf", "key": "token", "env": "1TOKEN"}, "secrets.0.env"),
        ({"name": "Not_A_Name", "key": "token", "env": "T"}, "secrets.0.name"),
        ({"name": "hf", "key": "a/b", "env": "T"}, "secrets.0.key"),
        ({"name": "hf", "key": "token"}, "secrets.0.env"),
    ],
)
def test_secret_references_are_checked_as_kubernetes_checks_them(
    secret: dict[str, str], field: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        JobRequest.model_validate({"kind": "noop", "secrets": [secret]})
    assert field in [".".join(map(str, e["loc"])) for e in refused.value.errors()]


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("PYTHONSTARTUP", "would change which code the task runs"),
        ("LD_LIBRARY_PATH", "would change which code the task runs"),
        ("NVIDIA_VISIBLE_DEVICES", "would change which GPUs the task sees"),
        ("KUBETASK_ARTIFACTS", "is set by kubetask itself"),
    ],
)
def test_a_secret_cannot_set_what_decides_the_tasks_code_or_gpus(name: str, why: str) -> None:
    secret = {"name": "hf", "key": "token", "env": name}
    with pytest.raises(ValidationError, match=f"'{name}' {why}"):
        JobRequest.model_validate({"kind": "noop", "secrets": [secret]})
    ordinary = {"name": "hf", "key": "token", "env": "MY_PATH"}  # only the names themselves
    JobRequest.model_validate({"kind": "noop", "secrets": [ordinary]})


def test_one_secret_per_variable() -> None:
    twice = [{"name": "a", "key": "k", "env": "TOKEN"}, {"name": "b", "key": "k", "env": "TOKEN"}]
    with pytest.raises(ValidationError, match="TOKEN named twice"):
        JobRequest.model_validate({"kind": "noop", "secrets": twice})


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@redis:6379/0", "redis://:***@redis:6379/0"),
        ("redis://user:pw@redis/0", "redis://user:***@redis/0"),
        ("rediss://redis:6379/0", "rediss://redis:6379/0"),
        ("redis://user@redis/0", "redis://user@redis/0"),
    ],
)
def test_urls_are_shown_without_their_passwords(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_webhooks_are_logged_by_their_origin_only() -> None:
    assert url_origin("https://hooks.slack.com/services/T0/B0/secret?x=1") == (
        "https://hooks.slack.com"
    )
    assert url_origin("http://u:p@127.0.0.1:9/h") == "http://127.0.0.1:9"
    assert url_origin("not a url") == "***"
    assert url_origin("http://[::1]:18452/x?token=t") == "http://[::1]:18452"
