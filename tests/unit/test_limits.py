"""The arithmetic of the limits: quantities, per-job caps (422 naming the field), the
submissions window, and the server's refusal to serve a network without tokens."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from kubetask import env
from kubetask.api.__main__ import is_loopback, refusal
from kubetask.api.limits import JobCaps, apply_caps, parse_quantity, submit_window
from kubetask.api.settings import Settings
from kubetask.controller.errors import InvalidRequest
from kubetask.controller.ids import new_job_id
from kubetask.controller.records import JobRecord
from kubetask.controller.service import validate_request
from kubetask.controller.taskspec import TaskDefaults, build_task_spec
from kubetask.kinds import load_kinds
from kubetask.models import JobRequest

CAPS = JobCaps(max_timeout_s=3600, max_cpu="4", max_memory="8Gi", max_gpu=1)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2", Decimal(2)),
        ("500m", Decimal("0.5")),
        ("1.5", Decimal("1.5")),
        ("1Gi", Decimal(2**30)),
        ("1.5Gi", Decimal(3 * 2**29)),
        ("512Mi", Decimal(2**29)),
        ("1G", Decimal(10**9)),
        ("2k", Decimal(2000)),
        ("1e3", Decimal(1000)),
        ("1E3", Decimal(1000)),
        ("2E", Decimal(2 * 10**18)),
        (".5", Decimal("0.5")),  # as Kubernetes' grammar has them
        ("5.", Decimal(5)),
        ("1n", Decimal("1e-9")),
        ("250u", Decimal("0.00025")),
        (".5Gi", Decimal(2**29)),
    ],
)
def test_kubernetes_quantities(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["lots", "", "-1", "1Zi", "NaN", "inf"])
def test_what_is_not_a_quantity(text: str) -> None:
    with pytest.raises(ValueError, match="quantity"):
        parse_quantity(text)


def _fields(request: dict[str, object]) -> list[str]:
    with pytest.raises(InvalidRequest) as caught:
        apply_caps(JobRequest.model_validate(request), CAPS)
    return [".".join(map(str, e.loc)) for e in caught.value.errors]


def test_each_field_over_its_cap_is_named() -> None:
    over = {
        "kind": "noop",
        "timeout_s": 3601,
        "resources": {"cpu": "4001m", "memory": "9Gi", "gpu": 2},
    }
    assert _fields(over) == ["timeout_s", "resources.cpu", "resources.memory", "resources.gpu"]
    assert _fields({"kind": "noop", "resources": {"memory": "8589934593"}}) == ["resources.memory"]


def test_up_to_the_caps_passes_and_a_missing_deadline_gets_the_largest() -> None:
    at = JobRequest.model_validate(
        {"kind": "noop", "timeout_s": 3600, "resources": {"cpu": "4", "memory": "8Gi", "gpu": 1}}
    )
    assert apply_caps(at, CAPS) == at
    small = JobRequest.model_validate({"kind": "noop", "resources": {"cpu": "250m"}})
    assert apply_caps(small, CAPS).timeout_s == 3600
    uncapped = JobCaps(max_timeout_s=None, max_cpu="4", max_memory="8Gi", max_gpu=1)
    assert apply_caps(small, uncapped) == small  # the local default: no deadline added


@pytest.mark.parametrize(
    ("now", "window", "retry_after"),
    [(0.0, 0, 60), (59.0, 0, 1), (59.9, 0, 1), (60.0, 1, 60), (125.5, 2, 55)],
)
def test_the_submissions_window_and_when_it_ends(now: float, window: int, retry_after: int) -> None:
    assert submit_window(now) == (window, retry_after)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("example.com", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_no_tokens_means_loopback_only(tmp_path: Path) -> None:
    assert refusal(Settings(host="127.0.0.1")) is None
    why = refusal(Settings(host="0.0.0.0"))
    assert why is not None
    assert "KUBETASK_TOKENS_FILE" in why
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps([{"token": "t" * 32, "tenant": "a"}]))
    assert refusal(Settings(host="0.0.0.0", tokens_file=tokens)) is None
    tokens.write_text("[]")
    assert "no tokens" in (refusal(Settings(host="0.0.0.0", tokens_file=tokens)) or "")
    assert "cannot read" in (refusal(Settings(tokens_file=tmp_path / "nope.json")) or "")


def test_settings_check_the_tenant_namespaces_and_the_caps() -> None:
    settings = Settings(tenant_namespaces={"team-a": "ml-a"}, namespace="ml")
    assert settings.namespace_for("team-a") == "ml-a"
    assert settings.namespace_for("team-b") == "ml"
    with pytest.raises(ValueError, match="DNS label"):
        Settings(tenant_namespaces={"team-a": "ML_A"})
    with pytest.raises(ValueError, match="quantity"):
        Settings(max_memory="a lot")


def test_params_never_reach_a_shell() -> None:
    """A task is argv + environment: shell syntax in params stays an inert string."""
    nasty = "$(touch /tmp/pwned); `id` && rm -rf / ; echo ${HOME}"
    request = validate_request(
        JobRequest(kind="noop", params={"fail_message": nasty}), kinds=load_kinds()
    )
    now = datetime.now(UTC)
    record = JobRecord(id=new_job_id(now), request=request, created_at=now)
    spec = build_task_spec(
        record,
        TaskDefaults(redis_url="redis://r", artifacts="/a", images={"trainer": "t", "gan": "g"}),
        load_kinds(),
    )
    assert spec.command == ("python", "-m", "kubetask.jobs", "noop")
    assert json.loads(spec.env[env.PARAMS])["fail_message"] == nasty
