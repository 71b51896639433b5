"""The keys a control plane on 127.0.0.1 needs, made with the system's `openssl`: one
self-signed serving certificate (the API server's and the node agent's), the service-account
signing key pair, and a static token file (admin and the node agent)."""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

ADMIN_USER = "kubetask-admin"


@dataclass(frozen=True)
class Pki:
    folder: Path

    @property
    def cert(self) -> Path:
        return self.folder / "serving.crt"

    @property
    def key(self) -> Path:
        return self.folder / "serving.key"

    @property
    def sa_key(self) -> Path:
        return self.folder / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.folder / "sa.pub"

    @property
    def tokens(self) -> Path:
        return self.folder / "tokens.csv"

    @property
    def admin_token(self) -> str:
        return self.tokens.read_text().split(",", 1)[0]


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_pki(folder: Path) -> Pki:
    """Create the keys once; a folder that has them is reused as it is."""
    pki = Pki(folder)
    if pki.tokens.exists():
        return pki
    folder.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
        "-keyout", str(pki.key), "-out", str(pki.cert), "-subj", "/CN=127.0.0.1",
        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc",
    )  # fmt: skip
    _openssl("genrsa", "-out", str(pki.sa_key), "2048")
    _openssl("rsa", "-in", str(pki.sa_key), "-pubout", "-out", str(pki.sa_pub))
    admin = secrets.token_hex(16)
    pki.tokens.write_text(f'{admin},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
    return pki
