"""Server settings, from `KUBETASK_*` environment variables, read when asked (never at import)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from controller.manifests import ARTIFACTS_DIR, ClusterSettings
from controller.notify import Backoff, NotifySettings
from controller.outbox import SmtpSettings


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KUBETASK_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    backend: Literal["auto", "local", "kubernetes"] = Field(
        "auto", description="auto: kubernetes when running in a cluster, else local."
    )
    redis_url: str | None = Field(
        None, description="Redis to use; unset: start the embedded server in data_dir."
    )
    data_dir: Path = Path(".kubetask")
    artifacts_dir: Path | None = Field(None, description="Default: data_dir/artifacts.")
    slots: int = Field(default_factory=lambda: max(os.cpu_count() or 1, 1), ge=1)
    retry_backoff_s: float = Field(1.0, ge=0)
    grace_s: float = Field(10.0, ge=0)
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    retention_s: int = Field(7 * 24 * 3600, ge=60)
    idempotency_ttl_s: int = Field(24 * 3600, ge=60)
    keepalive_s: float = Field(15.0, gt=0)
    resync_s: float = Field(30.0, gt=0)
    trainer_image: str = "kubetask/trainer:latest"
    gan_image: str = "kubetask/gan:latest"
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
    webhooks: list[str] = Field(
        default_factory=list, description="Webhooks told about every job's end (JSON list)."
    )
    webhook_secret: str | None = Field(None, description="HMAC-SHA256 key signing webhooks.")
    webhook_timeout_s: float = Field(5.0, gt=0)
    notify_backoff_s: float = Field(2.0, gt=0, description="First retry delay; doubles.")
    notify_backoff_cap_s: float = Field(600.0, gt=0)
    notify_max_attempts: int = Field(10, ge=1, description="Then dead-lettered.")
    notify_poll_s: float = Field(1.0, gt=0)
    smtp_host: str | None = Field(None, description="Set to email job ends to smtp_to.")
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_from: str = "kubetask@localhost"
    smtp_to: list[str] = Field(default_factory=list)
    smtp_username: str | None = None
    smtp_password: str | None = None
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
    task_redis_url: str | None = Field(None, description="Redis as task pods reach it.")

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
        )

    def notify(self) -> NotifySettings:
        return NotifySettings(
            public_url=self.public_url or f"http://{self.host}:{self.port}",
            webhooks=tuple(self.webhooks),
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
            password=self.smtp_password,
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

    def task_artifacts(self) -> str:
        """The artifact store as tasks see it: the mounted volume on Kubernetes."""
        return ARTIFACTS_DIR if self.resolved_backend == "kubernetes" else str(self.artifacts)


@lru_cache
def get_settings() -> Settings:
    return Settings()
