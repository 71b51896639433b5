"""Reading the API server's audit log while the server is still writing it."""

import json
from pathlib import Path

from tests.cluster.control_plane import ControlPlane


def _event(audit_id: str, code: int) -> str:
    return json.dumps(
        {
            "auditID": audit_id,
            "verb": "update",
            "objectRef": {"resource": "leases", "apiGroup": "coordination.k8s.io"},
            "user": {"username": "elector"},
            "responseStatus": {"code": code},
            "requestReceivedTimestamp": "2026-12-04T10:00:00.000000Z",
        }
    )


def test_a_line_the_server_is_halfway_through_is_left_for_the_next_read(tmp_path: Path) -> None:
    plane = ControlPlane(tmp_path)
    plane.logs.mkdir()
    whole = _event("a", 429)
    plane.audit_log.write_text(whole + "\n" + _event("b", 200)[:40])
    assert [r.code for r in plane.requests(user="elector")] == [429]
    plane.audit_log.write_text(whole + "\n" + _event("b", 200) + "\n")
    assert [r.code for r in plane.requests(user="elector")] == [429, 200]
