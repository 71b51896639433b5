"""Who is asking: bearer tokens from a JSON file, each naming a tenant and a role.

`KUBETASK_TOKENS_FILE` holds `[{"token": "...", "tenant": "team-a", "role": "user"}]`
(on Kubernetes, mounted from a Secret). A presented token is compared in constant time with
every entry (SHA-256 digests through `hmac.compare_digest`, all of them, whatever matches),
so neither the answer's timing nor its length tells how much of a token was right. The file
is read again when it changes (a rotated Secret needs no restart); a file that fails to
load keeps the last good table in service. Without a tokens file every caller is an admin
of the tenant "default": the zero-config local mode, served on loopback only.

Pure but for `TokenFile`, which reads the file. `document_bearer` puts the token in the
OpenAPI spec (its Authorize button in /docs, and generated clients, need it there).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from pydantic_core import ErrorDetails

from kubetask.models import DEFAULT_TENANT, is_dns_label

log = logging.getLogger("kubetask.auth")

REALM = "kubetask"
MIN_TOKEN_LENGTH = 16


class Role(StrEnum):
    USER = "user"  # sees, streams, cancels and reads logs of its own tenant's jobs
    ADMIN = "admin"  # every tenant's jobs


@dataclass(frozen=True)
class Principal:
    """The caller: a tenant and a role."""

    tenant: str
    role: Role

    @property
    def scope(self) -> str | None:
        """The tenant whose jobs this caller may see; None: every tenant's (an admin)."""
        return None if self.role is Role.ADMIN else self.tenant


LOCAL_PRINCIPAL = Principal(tenant=DEFAULT_TENANT, role=Role.ADMIN)


class TokenEntry(BaseModel):
    """One line of the tokens file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    token: str = Field(min_length=MIN_TOKEN_LENGTH, max_length=4096)
    tenant: str = Field(description="A DNS label: the tenant maps to a namespace.")
    role: Role = Role.USER

    @field_validator("token")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.isascii() or not value.isprintable() or " " in value:
            raise ValueError("a token is printable ASCII without spaces")
        return value

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, value: str) -> str:
        if not is_dns_label(value):
            raise ValueError(f"{value!r} is not a DNS label (lowercase letters, digits, '-')")
        return value


_ENTRIES: TypeAdapter[list[TokenEntry]] = TypeAdapter(list[TokenEntry])


class TokensFileError(Exception):
    """The tokens file cannot be read or is not a valid list of entries."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _problem(error: ErrorDetails) -> str:
    """'entry 2 tenant: ...', or what is wrong with the whole file; never the value."""
    if error["type"] == "json_invalid":
        return "not valid JSON"
    if not error["loc"]:
        return 'not a JSON list of {"token", "tenant", "role"} entries'
    index, *field = error["loc"]
    where = " ".join([f"entry {index}", *map(str, field)])
    return f"{where}: {error['msg']}"


class TokenTable:
    """Token -> Principal, looked up in constant time over all entries."""

    def __init__(self, entries: list[TokenEntry]) -> None:
        digests = [_digest(e.token) for e in entries]
        if len(set(digests)) != len(digests):
            raise TokensFileError("the same token appears twice")
        self._entries = [
            (digest, Principal(tenant=e.tenant, role=e.role))
            for digest, e in zip(digests, entries, strict=True)
        ]

    @classmethod
    def parse(cls, text: str) -> TokenTable:
        try:
            return cls(_ENTRIES.validate_json(text))
        except ValidationError as exc:
            raise TokensFileError("; ".join(map(_problem, exc.errors()))) from None

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def tenants(self) -> frozenset[str]:
        return frozenset(p.tenant for _, p in self._entries)

    def lookup(self, token: str) -> Principal | None:
        """The principal of `token`, or None. Every entry is compared, match or not."""
        presented = _digest(token)
        found: Principal | None = None
        for digest, principal in self._entries:
            if hmac.compare_digest(presented, digest):
                found = principal
        return found


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive)."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def challenge(*, token_given: bool) -> str:
    """The `WWW-Authenticate` header of a 401 (RFC 6750)."""
    if token_given:
        return f'Bearer realm="{REALM}", error="invalid_token"'
    return f'Bearer realm="{REALM}"'


BEARER_SCHEME = "bearer"  # its name in the OpenAPI spec's securitySchemes


def document_bearer(spec: dict[str, Any], operations: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """`spec` with the bearer token as a security scheme and on each of `operations` (path,
    method), optional there: one spec serves both modes, and without a tokens file no
    token is read."""
    schemes = spec.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes[BEARER_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "A token of the server's tokens file (KUBETASK_TOKENS_FILE). "
        "A server without one (the local mode) reads none: every caller is its admin.",
    }
    for path, method in operations:
        spec["paths"][path][method]["security"] = [{BEARER_SCHEME: []}, {}]
    return spec


class TokenFile:
    """The table from a tokens file, read again when the file changes (size, mtime, inode)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._table = self._read()

    def _read(self) -> TokenTable:
        try:
            stat = self.path.stat()
            table = TokenTable.parse(self.path.read_text())
        except OSError as exc:
            raise TokensFileError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        except TokensFileError as exc:
            raise TokensFileError(f"{self.path}: {exc}") from None
        self._stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        return table

    def table(self) -> TokenTable:
        """The current table; a file that changed is read again (if it loads)."""
        try:
            stat = self.path.stat()
            stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        except OSError:
            return self._table
        if stamp == self._stamp:
            return self._table
        with self._lock:
            if stamp != self._stamp:
                try:
                    self._table = self._read()
                    log.info("tokens reloaded from %s (%d entries)", self.path, len(self._table))
                except TokensFileError as exc:
                    self._stamp = stamp  # do not retry until it changes again
                    log.error("keeping the previous tokens: %s", exc)
        return self._table
