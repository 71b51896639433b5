"""Server settings, from `KUBETASK_*` environment variables, read when asked (never at import)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KUBETASK_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    backend: Literal["local"] = "local"
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

    @property
    def artifacts(self) -> Path:
        return (self.artifacts_dir or self.data_dir / "artifacts").resolve()


@lru_cache
def get_settings() -> Settings:
    return Settings()
