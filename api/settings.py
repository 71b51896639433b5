"""Server settings, from `KUBETASK_*` environment variables, read when asked (never at import)."""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import (
    AnyHttpUrl,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from kubetask import env
from kubetask.api.limits import JobCaps, parse_quantity
from kubetask.controller.leader import ElectionSettings, default_identity
from kubetask.controller.manifests import ARTIFACTS_DIR, ClusterSettings, SecretKeyRef
from kubetask.controller.notify import Backoff, NotifySettings
from kubetask.controller.outbox import SmtpSettings
from kubetask.controller.redaction import url_password
from kubetask.controller.store import TenantCaps
from kubetask.models import MAX_DEADLINE_S, SecretKey, is_dns_label
from kubetask.storage.url import FileLocation, S3Location, parse_store_url

ENV_PREFIX = "KUBETASK_"


class Settings(BaseSettings):
    # Secrets are never shown: SecretStr, repr=False on URLs that may hold a password, and
    # no input values in validation errors.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", hide_input_in_errors=True
    )

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    backend: Literal["auto", "local", "kubernetes"] = Field(
        "auto", description="auto: kubernetes when running in a cluster, else local."
    )
    redis_url: str | None = Field(
        None, description="Redis to use; unset: start the embedded server in data_dir.", repr=False
    )
    redis_max_connections: int = Field(
        128, ge=4, description="Redis connections per replica; requests wait for a free one."
    )
    redis_pool_timeout_s: float = Field(
        10.0, gt=0, description="Longest wait for a free Redis connection; then 503."
    )
    fsync_timeout_s: float = Field(
        3.0, gt=0, description="Longest wait for a new job to be on disk (WAITAOF); then 503."
    )
    redis_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Longest wait for Redis to answer a command (a server that hangs, or a "
        "network that drops everything); then 503. Above fsync_timeout_s.",
    )
    data_dir: Path = Path(".kubetask")
    artifacts_dir: Path | None = Field(None, description="Default: data_dir/artifacts.")
    artifacts_url: str | None = Field(
        None,
        description="The artifact store the API reads and uploads to: a folder "
        "(file:///path or a path) or s3://bucket[/prefix]; default: the artifacts folder.",
    )
    s3_endpoint: str | None = Field(
        None, description="The S3 endpoint (API and tasks); default: $AWS_ENDPOINT_URL."
    )
    s3_region: str | None = Field(None, description="The S3 region; default: $AWS_REGION.")
    s3_timeout_s: float = Field(
        30.0,
        gt=0,
        allow_inf_nan=False,
        description="Longest an S3 request may take whole: a listing, a file's metadata, each "
        "8 MiB part of an upload (API and tasks); then the store counts as unavailable.",
    )
    s3_read_idle_s: float = Field(
        30.0,
        gt=0,
        allow_inf_nan=False,
        description="Longest an S3 download may stay silent (API and tasks); it may take "
        "as long as it goes on.",
    )
    max_upload_bytes: int = Field(1 << 30, ge=1, description="Largest PUT /v1/uploads body.")
    artifacts_retention_s: int = Field(
        0,
        ge=0,
        description="Finished jobs' artifacts are deleted this long after their last file "
        "was written (a periodic sweep, logged per job); 0: kept until purged.",
    )
    slots: int = Field(default_factory=lambda: max(os.cpu_count() or 1, 1), ge=1)
    retry_backoff_s: float = Field(1.0, ge=0)
    zygotes: bool = Field(
        True, description="Local backend: fork tasks from a warm process per image role."
    )
    grace_s: float = Field(10.0, ge=0)
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    # Who may call, and how much anyone may consume (api/auth.py, api/limits.py)
    tokens_file: Path | None = Field(
        None, description="Bearer tokens (JSON); unset: local mode, loopback only."
    )
    tenant_namespaces: dict[str, str] = Field(
        default_factory=dict, description="Tenant -> namespace of its Jobs; else `namespace`."
    )
    max_active_jobs_per_tenant: int = Field(1000, ge=1, description="Queued + running.")
    max_stored_jobs_per_tenant: int = Field(
        100_000, ge=1, description="Job records kept, in any state, until purged or expired."
    )
    max_submits_per_minute: int = Field(600, ge=1, description="Per tenant, POST /v1/jobs.")
    max_streams_per_tenant: int = Field(100, ge=1, description="Open SSE/WebSocket streams.")
    max_timeout_s: int | None = Field(
        7 * 24 * 3600,
        ge=1,
        le=MAX_DEADLINE_S,
        description="Largest timeout_s, and the default deadline (7 days, as the chart's).",
    )
    max_cpu: str = Field("64", description="Largest resources.cpu (a Kubernetes quantity).")
    max_memory: str = Field("512Gi", description="Largest resources.memory.")
    max_gpu: int = Field(8, ge=0, description="Largest resources.gpu.")
    max_page_size: int = Field(200, ge=1, le=200, description="Largest `limit` of a listing.")
    retention_s: int = Field(7 * 24 * 3600, ge=60)
    idempotency_ttl_s: int = Field(24 * 3600, ge=60)
    keepalive_s: float = Field(15.0, gt=0)
    resync_s: float = Field(30.0, gt=0)
    task_images: dict[str, str] = Field(
        default_factory=lambda: {
            "trainer": "kubetask/trainer:latest",
            "gan": "kubetask/gan:latest",
        },
        description="Image role -> task image (JSON); every installed kind's role needs one.",
    )
    priority_classes: dict[str, str] = Field(
        default_factory=lambda: {
            "low": "kubetask-low",
            "normal": "kubetask-normal",
            "high": "kubetask-high",
        },
        description="Request priority -> PriorityClass; other priorities are refused.",
    )
    # Notifications (see controller/notify.py)
    public_url: str | None = Field(
        None, description="Base URL of the API in links sent out; default http://host:port."
    )
    webhooks: list[AnyHttpUrl] = Field(
        default_factory=list,
        description="Webhooks told about every job's end (JSON list of http(s) URLs).",
        repr=False,  # a webhook URL's path is often its secret
    )
    webhook_secret: SecretStr | None = Field(None, description="HMAC-SHA256 key signing webhooks.")
    webhook_timeout_s: float = Field(5.0, gt=0)
    webhook_allow_private: bool = Field(
        False,
        description="Let webhooks and SMTP reach loopback, link-local and private addresses.",
    )
    notify_backoff_s: float = Field(2.0, gt=0, description="First retry delay; doubles.")
    notify_backoff_cap_s: float = Field(600.0, gt=0)
    notify_max_attempts: int = Field(10, ge=1, description="Then dead-lettered.")
    notify_poll_s: float = Field(1.0, gt=0)
    smtp_host: str | None = Field(None, description="Set to email job ends to smtp_to.")
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_from: str = "kubetask@localhost"
    smtp_to: list[str] = Field(default_factory=list)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    # The kubernetes backend
    kubeconfig: str | None = Field(None, description="Outside a cluster: the kubeconfig.")
    namespace: str = "default"
    instance: str = Field("kubetask", description="Label value telling installations apart.")
    ttl_after_finished_s: int | None = Field(3600, ge=0)
    gpu_node_label: str = "nvidia.com/gpu.product"
    gpu_taint_key: str = "nvidia.com/gpu"
    artifacts_claim: str | None = "kubetask-artifacts"
    task_service_account: str | None = None
    task_redis_url: str | None = Field(None, description="Redis as task pods reach it.", repr=False)
    # Credentials of the tasks (kubernetes backend): Secret references in each Job, never values
    task_redis_url_secret: SecretKey | None = Field(
        None, description="A Secret key holding the task Redis URL (JSON: {name, key})."
    )
    task_redis_password_secret: SecretKey | None = Field(
        None,
        description="A Secret key holding the Redis password, as $(KUBETASK_REDIS_PASSWORD) "
        "in task_redis_url (JSON: {name, key}).",
    )
    task_s3_credentials_secret: str | None = Field(
        None,
        description="A Secret whose keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY the "
        "tasks read when the artifact store is object storage.",
    )
    # Several replicas (controller/leader.py): each serves the API, the Lease holder reconciles
    leader_election: bool = Field(
        False, description="Elect the one replica that reconciles (kubernetes backend only)."
    )
    leader_identity: str | None = Field(None, description="Default: $POD_NAME, else host_pid.")
    lease_name: str | None = Field(None, description="Default: <instance>-leader.")
    lease_namespace: str | None = Field(None, description="Default: namespace.")
    lease_duration_s: int = Field(15, ge=1, description="A Lease not renewed this long is free.")
    renew_deadline_s: float = Field(10.0, gt=0, description="The leader gives up after this.")
    retry_period_s: float = Field(2.0, gt=0, description="How often replicas look and renew.")

    @model_validator(mode="after")
    def _no_password_in_jobs(self) -> Settings:
        """On Kubernetes every Job carries the task Redis URL: a password must come from a
        Secret, or every Job (and `kubectl describe`) would show it."""
        if self.resolved_backend != "kubernetes" or self.task_redis_url_secret is not None:
            return self
        password = url_password(self.task_redis_url or self.redis_url or "")
        reference = f"$({env.REDIS_PASSWORD})"
        if password and password != reference:
            raise ValueError(
                "the task Redis URL holds a password that every Job would show: set "
                "KUBETASK_TASK_REDIS_URL_SECRET (a Secret key holding the URL), or "
                "KUBETASK_TASK_REDIS_PASSWORD_SECRET with KUBETASK_TASK_REDIS_URL="
                f"redis://:{reference}@HOST:PORT/DB"
            )
        if password == reference and self.task_redis_password_secret is None:
            raise ValueError(
                f"the task Redis URL names {reference}: set KUBETASK_TASK_REDIS_PASSWORD_SECRET"
            )
        return self

    @model_validator(mode="after")
    def _redis_answers_after_its_fsync(self) -> Settings:
        if self.redis_timeout_s <= self.fsync_timeout_s:  # WAITAOF itself waits that long
            raise ValueError("redis_timeout_s must be above fsync_timeout_s")
        return self

    @model_validator(mode="after")
    def _election_timing(self) -> Settings:
        timing = self.retry_period_s < self.renew_deadline_s < self.lease_duration_s
        if self.leader_election and not timing:
            raise ValueError(
                "leader election needs retry_period_s < renew_deadline_s < lease_duration_s"
            )
        return self

    def election(self) -> ElectionSettings | None:
        """Leader election, when on (the local backend runs in one process: never)."""
        if not self.leader_election or self.resolved_backend != "kubernetes":
            return None
        return ElectionSettings(
            name=self.lease_name or f"{self.instance}-leader",
            namespace=self.lease_namespace or self.namespace,
            identity=self.leader_identity or default_identity(),
            duration_s=self.lease_duration_s,
            renew_deadline_s=self.renew_deadline_s,
            retry_period_s=self.retry_period_s,
        )

    @field_validator("tenant_namespaces")
    @classmethod
    def _dns_labels(cls, value: dict[str, str]) -> dict[str, str]:
        for tenant, namespace in value.items():
            for name in (tenant, namespace):
                if not is_dns_label(name):
                    raise ValueError(f"{name!r} is not a DNS label")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError("empty: webhooks would go out unsigned (unset it for that)")
        return value

    @field_validator("max_cpu", "max_memory")
    @classmethod
    def _quantity(cls, value: str) -> str:
        parse_quantity(value)  # ValueError when it is not one
        return value

    def namespace_for(self, tenant: str) -> str:
        """Where a tenant's Jobs go on Kubernetes."""
        return self.tenant_namespaces.get(tenant, self.namespace)

    def tenant_caps(self) -> TenantCaps:
        return TenantCaps(
            active=self.max_active_jobs_per_tenant, stored=self.max_stored_jobs_per_tenant
        )

    def job_caps(self) -> JobCaps:
        return JobCaps(
            max_timeout_s=self.max_timeout_s,
            max_cpu=self.max_cpu,
            max_memory=self.max_memory,
            max_gpu=self.max_gpu,
        )

    @property
    def resolved_backend(self) -> Literal["local", "kubernetes"]:
        if self.backend != "auto":
            return self.backend
        return "kubernetes" if os.environ.get("KUBERNETES_SERVICE_HOST") else "local"

    def cluster(self) -> ClusterSettings:
        return ClusterSettings(
            namespace=self.namespace,
            instance=self.instance,
            ttl_after_finished_s=self.ttl_after_finished_s,
            priority_classes=self.priority_classes,
            gpu_node_label=self.gpu_node_label,
            gpu_taint_key=self.gpu_taint_key,
            artifacts_claim=self.artifacts_claim,
            service_account=self.task_service_account,
            secret_env=self.task_secret_env(),
        )

    def task_secret_env(self) -> dict[str, SecretKeyRef]:
        """The task variables read from Secrets (kubernetes backend)."""
        refs = {
            env.REDIS_URL: self.task_redis_url_secret,
            env.REDIS_PASSWORD: self.task_redis_password_secret,
        }
        found = {name: SecretKeyRef(r.name, r.key) for name, r in refs.items() if r is not None}
        if self.task_s3_credentials_secret and self.task_artifacts_url():
            for name in env.S3_CREDENTIALS[:2]:  # the key id and the secret key
                found[name] = SecretKeyRef(self.task_s3_credentials_secret, name)
        return found

    def notify(self) -> NotifySettings:
        return NotifySettings(
            public_url=self.public_url or f"http://{self.host}:{self.port}",
            webhooks=tuple(str(url) for url in self.webhooks),  # as a job's own is written
            email_to=tuple(self.smtp_to) if self.smtp_host else (),
        )

    def smtp(self) -> SmtpSettings | None:
        if not self.smtp_host:
            return None
        return SmtpSettings(
            host=self.smtp_host,
            port=self.smtp_port,
            sender=self.smtp_from,
            username=self.smtp_username,
            password=self.smtp_password.get_secret_value() if self.smtp_password else None,
            starttls=self.smtp_starttls,
        )

    def backoff(self) -> Backoff:
        return Backoff(
            base_s=self.notify_backoff_s,
            cap_s=self.notify_backoff_cap_s,
            max_attempts=self.notify_max_attempts,
        )

    @property
    def artifacts(self) -> Path:
        return (self.artifacts_dir or self.data_dir / "artifacts").resolve()

    @property
    def artifacts_location(self) -> str:
        """`KUBETASK_ARTIFACTS_URL`, or the artifacts folder when it is not set."""
        return self.artifacts_url or str(self.artifacts)

    def task_artifacts_url(self) -> str | None:
        """The object store tasks stage through (`s3://…`); None for a folder store."""
        url = self.artifacts_location
        return url if isinstance(parse_store_url(url), S3Location) else None

    def store_endpoint(self) -> str | None:
        return (
            self.s3_endpoint
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
        )

    def store_region(self) -> str | None:
        return (
            self.s3_region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        )

    def task_artifacts(self) -> str:
        """The artifact store as tasks see it: the mounted volume on Kubernetes."""
        if self.resolved_backend == "kubernetes":
            return ARTIFACTS_DIR
        location = parse_store_url(self.artifacts_location)  # a folder URL: its folder
        return str(
            location.root.resolve() if isinstance(location, FileLocation) else self.artifacts
        )


@lru_cache
def get_settings() -> Settings:
    return Settings()


def invalid_settings(exc: ValidationError | SettingsError) -> str:
    """What is wrong with the settings, in one line: each bad one named by its environment
    variable, with why (never its value, which may be a secret)."""
    if isinstance(exc, SettingsError):  # a JSON setting that does not parse
        field = re.search(r'field "(\w+)"', str(exc))
        name = f"{ENV_PREFIX}{field.group(1).upper()}" if field else "a setting"
        return f"{name}: not valid JSON"
    clauses = []
    for error in exc.errors():
        head, *rest = error["loc"] or ("",)
        name = f"{ENV_PREFIX}{str(head).upper()}" if head else "the settings"
        where = f" ({'.'.join(str(part) for part in rest)})" if rest else ""
        clauses.append(f"{name}{where}: {error['msg']}")
    return "; ".join(clauses)
