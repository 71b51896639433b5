"""The pure parts of notifications: payloads, signatures, backoff and outbox entries."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from kubetask.api.settings import Settings, invalid_settings
from kubetask.controller.notify import (
    Backoff,
    Channel,
    NotifySettings,
    email_text,
    entries_for,
    sign,
    verify,
    webhook_headers,
)
from kubetask.controller.outbox import Outbox, SmtpSettings
from kubetask.controller.records import JobRecord, JobStatus
from kubetask.models import ErrorInfo, JobRequest, JobState

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SETTINGS = NotifySettings(public_url="https://kt.example/", webhooks=("http://hooks/all",))


def record(**request: object) -> JobRecord:
    req = JobRequest.model_validate({"kind": "noop", "name": "nightly", **request})
    return JobRecord(id="0000000000abcdef", request=req, created_at=T0)


def ended(state: JobState, **fields: object) -> JobStatus:
    return JobStatus(
        state=state,
        reason=fields.pop("reason", "Completed"),
        message="done",
        started_at=T0 + timedelta(seconds=1),
        finished_at=T0 + timedelta(seconds=3.5),
        **fields,
    )


def test_no_entries_until_terminal() -> None:
    running = JobStatus(state=JobState.RUNNING, reason="Running", message="m")
    assert entries_for(record(), running, SETTINGS) == []


def test_success_payload_with_own_and_global_webhooks() -> None:
    rec = record(notify={"webhook": "http://hooks/mine"})
    status = ended(JobState.SUCCEEDED, result={"accuracy": 0.9})
    entries = entries_for(rec, status, SETTINGS)
    assert [(e.channel, e.target) for e in entries] == [
        (Channel.WEBHOOK, "http://hooks/mine"),
        (Channel.WEBHOOK, "http://hooks/all"),
    ]
    body = json.loads(entries[0].body)
    assert body["idempotency_id"] == entries[0].id
    assert body["job_id"] == rec.id
    assert body["kind"] == "noop"
    assert body["name"] == "nightly"
    assert body["state"] == "succeeded"
    assert body["duration_s"] == 2.5
    assert body["result"] == {"accuracy": 0.9}
    assert body["error"] is None
    assert body["links"] == {
        "api": f"https://kt.example/v1/jobs/{rec.id}",
        "dashboard": f"https://kt.example/#/jobs/{rec.id}",
    }
    assert len({e.id for e in entries}) == 2


def test_idempotency_id_is_stable_per_job_and_target() -> None:
    status = ended(JobState.SUCCEEDED)
    first = entries_for(record(), status, SETTINGS)
    again = entries_for(record(), ended(JobState.SUCCEEDED, reason="Other"), SETTINGS)
    assert [e.id for e in first] == [e.id for e in again]
    other = record().model_copy(update={"id": "0000000000abcdee"})
    assert entries_for(other, status, SETTINGS)[0].id != first[0].id


def test_the_same_webhook_twice_is_told_once() -> None:
    rec = record(notify={"webhook": "http://hooks/all"})
    assert len(entries_for(rec, ended(JobState.SUCCEEDED), SETTINGS)) == 1


@pytest.mark.parametrize(
    ("own", "everyone"),
    [
        ("http://127.0.0.1:18412", "http://127.0.0.1:18412/"),
        ("HTTP://Hooks.Example:80/all", "http://hooks.example/all"),
        ("https://hooks.example/all", "https://HOOKS.example:443/all"),
        ("http://hooks.example/all#x", "http://hooks.example/all"),  # a fragment is not sent
        ("http://hooks.example/%61ll?", "http://hooks.example/all"),
        ("http://hooks.example/a%2fb?k=%7e", "http://hooks.example/a%2Fb?k=~"),
    ],
)
def test_a_job_s_own_webhook_written_otherwise_than_the_setting_is_told_once(
    own: str, everyone: str
) -> None:
    settings = Settings(webhooks=[everyone]).notify()
    rec = record(notify={"webhook": own})
    assert len(entries_for(rec, ended(JobState.SUCCEEDED), settings)) == 1


@pytest.mark.parametrize("webhooks", ['["not-a-url"]', '["ftp://127.0.0.1/x"]', '["/hook"]'])
def test_webhooks_that_are_no_http_urls_are_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, webhooks: str
) -> None:
    monkeypatch.setenv("KUBETASK_WEBHOOKS", webhooks)
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert invalid_settings(refused.value).startswith("KUBETASK_WEBHOOKS (0): ")


def test_an_empty_signing_key_is_refused_not_taken_for_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KUBETASK_WEBHOOK_SECRET", "")
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert "KUBETASK_WEBHOOK_SECRET: Value error, empty: webhooks would go out unsigned" in (
        invalid_settings(refused.value)
    )


def test_failure_payload_carries_the_suggestion() -> None:
    error = ErrorInfo(type="MemoryError", message="oom", suggestion="Ask for more memory.")
    status = ended(JobState.FAILED, reason="TaskError", error=error)
    [entry] = entries_for(record(), status, SETTINGS)
    body = json.loads(entry.body)
    assert body["state"] == "failed"
    assert body["error"]["suggestion"] == "Ask for more memory."
    subject, text = email_text(body)
    assert "failed" in subject
    assert "Suggestion: Ask for more memory." in text


def test_cancel_payload_without_start() -> None:
    status = JobStatus(
        state=JobState.CANCELLED, reason="Cancelled", message="by user", finished_at=T0
    )
    [entry] = entries_for(record(), status, SETTINGS)
    body = json.loads(entry.body)
    assert body["state"] == "cancelled"
    assert body["duration_s"] is None
    assert body["result"] is None
    assert body["error"] is None


def test_email_entries_one_per_recipient() -> None:
    settings = NotifySettings(email_to=("a@x", "b@x"))
    entries = entries_for(record(), ended(JobState.SUCCEEDED), settings)
    assert [(e.channel, e.target) for e in entries] == [
        (Channel.EMAIL, "a@x"),
        (Channel.EMAIL, "b@x"),
    ]


def test_signature_is_verifiable_by_a_receiver() -> None:
    [entry] = entries_for(record(), ended(JobState.SUCCEEDED), SETTINGS)
    headers = webhook_headers(entry, secret="s3cret", timestamp=1700000000)
    # What a receiver does, with nothing but the standard library:
    material = headers["X-Kubetask-Timestamp"].encode() + b"." + entry.body.encode()
    expected = "sha256=" + hmac.new(b"s3cret", material, hashlib.sha256).hexdigest()
    assert headers["X-Kubetask-Signature"] == expected
    assert headers["X-Kubetask-Idempotency-Id"] == entry.id
    body = entry.body.encode()
    at = 1700000010  # the receiver's clock, 10 s after the message was signed

    def check(body: bytes, secret: str = "s3cret", timestamp: int = 1700000000) -> bool:
        return verify(body, secret=secret, timestamp=timestamp, signature=expected, now=at)

    assert check(body)
    assert not check(body + b" ")
    assert not check(body, secret="other")
    assert not check(body, timestamp=1700000001)
    at = 1700003600  # recorded once, sent again an hour later: a replay
    assert not check(body)
    assert verify(body, secret="s3cret", timestamp=1700000000, signature=expected, tolerance_s=None)
    assert sign(body, secret="s3cret", timestamp=1) != sign(body, secret="s3cret", timestamp=2)


def test_a_receiver_may_pass_the_headers_as_they_arrive_and_malformed_ones_are_false() -> None:
    body, at = b'{"job_id": "x"}', 1700000000
    signature = sign(body, secret="s3cret", timestamp=at)

    def check(timestamp: int | str | bytes | None, signature: str | bytes | None) -> bool:
        return verify(body, secret="s3cret", timestamp=timestamp, signature=signature, now=at)

    assert check(str(at), signature)  # the header's text
    assert check(str(at).encode(), signature.encode())  # raw, as ASGI gives headers
    for timestamp in (None, "", "soon", "1.5e9"):
        assert check(timestamp, signature) is False
    for forged in (None, "", "sha256=\u00e9", signature + "\u00e9", signature.upper()):
        assert check(at, forged) is False


def test_no_secret_no_signature() -> None:
    [entry] = entries_for(record(), ended(JobState.SUCCEEDED), SETTINGS)
    assert "X-Kubetask-Signature" not in webhook_headers(entry, secret=None, timestamp=1)


def test_backoff_grows_then_caps_and_is_bounded() -> None:
    backoff = Backoff(base_s=1, factor=2, cap_s=10, max_attempts=5)
    assert [backoff.delay_s(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert not backoff.exhausted(4)
    assert backoff.exhausted(5)


def test_a_claim_lasts_as_long_as_an_attempt_can_and_no_longer() -> None:
    """A sender that died mid-send leaves its claim; the entry is tried again once the claim
    lapses, which is soon after the longest an attempt may take."""
    client = Redis()  # no connection is made
    assert Outbox(client, timeout_s=5).claim_lease_s() == 21
    assert Outbox(client, timeout_s=5).attempt_s() == 20  # cut there: ends before the claim
    smtp = SmtpSettings(host="mail", timeout_s=10)
    assert Outbox(client, timeout_s=5, smtp=smtp).claim_lease_s() == 41
    assert Outbox(client, timeout_s=5, lease_s=3).claim_lease_s() == 3
