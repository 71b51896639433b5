"""A real S3-compatible server on 127.0.0.1 for the artifact store's tests: MinIO, built from
the Go module proxy by scripts/s3.sh (`make s3-build`). Test infrastructure, not product.

    server = S3Server(folder).start()   # returns when /minio/health/live answers
    server.endpoint, server.access_key, server.secret_key, server.region
    server.make_bucket("name")
    server.stop()
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from kubetask.controller.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
BINARY = ROOT / ".kubetask" / "s3" / "bin" / "minio"
ACCESS_KEY = "kubetask-test"
SECRET_KEY = "kubetask-test-secret"  # a throwaway server's root password
REGION = "us-east-1"


class S3ServerError(RuntimeError):
    """MinIO did not start; the message ends with its log's tail."""


@dataclass
class S3Server:
    folder: Path  # the data folder (a fresh temp folder) and the log
    binary: Path = BINARY
    port: int = field(default_factory=free_port)
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.folder / "minio.log"

    def start(self, timeout_s: float = 60) -> S3Server:
        data = self.folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "MINIO_ROOT_USER": self.access_key,
            "MINIO_ROOT_PASSWORD": self.secret_key,
            "MINIO_REGION": self.region,
            "MINIO_BROWSER": "off",
            "MINIO_UPDATE": "off",
            "MINIO_CI_CD": "on",  # no root-drive and update warnings from a test server
        }
        address = f"127.0.0.1:{self.port}"
        console = f"127.0.0.1:{free_port()}"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    *(str(self.binary), "server", str(data), "--address", address),
                    *("--console-address", console, "--quiet"),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_live(timeout_s)
        return self

    def make_bucket(self, name: str) -> str:
        """A new, empty bucket (MinIO serves each top-level folder of its drive as one)."""
        (self.folder / "data" / name).mkdir()
        return name

    def _wait_live(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise S3ServerError(f"minio exited ({self.process.returncode}):\n{self._tail()}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/minio/health/live", timeout=2):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise S3ServerError(f"minio not live after {timeout_s} s:\n{self._tail()}")

    def _tail(self, lines: int = 30) -> str:
        if not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
