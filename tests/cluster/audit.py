"""The API server's audit log, read back: who sent what, and what came back. Tests use it as
the witness of what the controller sent (its verbs against the chart's Role, each Job
created once, each 429 and the call after it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class AuditRecord:
    """One request as the API server's audit log has it."""

    verb: str
    group: str
    resource: str  # with its subresource: pods/log
    namespace: str
    name: str
    user: str
    user_agent: str
    code: int
    at: float  # when the server received it (seconds since the epoch)

    @classmethod
    def parse(cls, event: dict[str, Any]) -> AuditRecord:
        ref = event.get("objectRef") or {}
        resource = ref.get("resource", "")
        if ref.get("subresource"):
            resource += "/" + ref["subresource"]
        return cls(
            verb=event.get("verb", ""),
            group=ref.get("apiGroup", ""),
            resource=resource,
            namespace=ref.get("namespace", ""),
            name=ref.get("name", ""),
            user=event.get("user", {}).get("username", ""),
            user_agent=event.get("userAgent", ""),
            code=int(event.get("responseStatus", {}).get("code", 0)),
            at=datetime.fromisoformat(event["requestReceivedTimestamp"]).timestamp(),
        )
