"""Bearer tokens: the tokens file, the constant-time lookup, the header, the challenge, and
reloading a rotated file."""

from __future__ import annotations

import hmac
import json
import os
from pathlib import Path

import pytest

from kubetask.api.auth import (
    LOCAL_PRINCIPAL,
    Principal,
    Role,
    TokenFile,
    TokensFileError,
    TokenTable,
    bearer_token,
    challenge,
)

A = "a" * 24
B = "b-token-0123456789abcdef"
ROOT = "root-token-0123456789abc"
ENTRIES = [
    {"token": A, "tenant": "team-a", "role": "user"},
    {"token": B, "tenant": "team-b"},
    {"token": ROOT, "tenant": "ops", "role": "admin"},
]


def table(entries: list[dict[str, str]] = ENTRIES) -> TokenTable:
    return TokenTable.parse(json.dumps(entries))


def test_each_token_names_its_tenant_and_role() -> None:
    tokens = table()
    assert tokens.lookup(A) == Principal("team-a", Role.USER)
    assert tokens.lookup(B) == Principal("team-b", Role.USER)  # user unless said otherwise
    assert tokens.lookup(ROOT) == Principal("ops", Role.ADMIN)
    assert tokens.tenants == {"team-a", "team-b", "ops"}
    assert len(tokens) == 3


@pytest.mark.parametrize("token", ["", "a" * 23, "a" * 25, A.upper(), B[:-1] + "x"])
def test_anything_but_an_exact_token_is_nobody(token: str) -> None:
    assert table().lookup(token) is None


def test_a_user_is_scoped_to_its_tenant_and_an_admin_to_none() -> None:
    assert Principal("team-a", Role.USER).scope == "team-a"
    assert Principal("ops", Role.ADMIN).scope is None
    assert Principal("default", Role.ADMIN) == LOCAL_PRINCIPAL


def test_every_entry_is_compared_whichever_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lookup's work does not depend on where (or whether) the token is in the table:
    one equal-length digest comparison per entry, every time."""
    compared: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append((len(a), len(b)))
        return bool(real(a, b))

    monkeypatch.setattr(hmac, "compare_digest", counting)
    tokens = table()
    for token in (A, ROOT, "not-a-token-at-all-xxxxxx", "short"):
        compared.clear()
        tokens.lookup(token)
        assert compared == [(32, 32)] * 3, token


@pytest.mark.parametrize(
    ("entries", "named"),
    [
        ([{"token": "short", "tenant": "a"}], "entry 0 token"),
        ([{"token": A, "tenant": "Team_A"}], "entry 0 tenant"),
        ([{"token": A, "tenant": "a", "role": "root"}], "entry 0 role"),
        ([{"token": A, "tenant": "a", "scopes": []}], "entry 0 scopes"),
        ([{"token": "has a space in it!!", "tenant": "a"}], "entry 0 token"),
        ([{"token": A, "tenant": "a"}, {"token": A, "tenant": "b"}], "twice"),
        ({"token": A, "tenant": "a"}, "JSON list"),
    ],
)
def test_a_bad_tokens_file_is_refused_naming_the_entry(entries: object, named: str) -> None:
    with pytest.raises(TokensFileError) as caught:
        TokenTable.parse(json.dumps(entries))
    assert named in str(caught.value)


def test_a_file_that_is_not_json_is_refused() -> None:
    with pytest.raises(TokensFileError, match="not valid JSON"):
        TokenTable.parse("token: abc")


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (f"Bearer {A}", A),
        (f"bearer   {A} ", A),
        (f"Basic {A}", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("", None),
        (None, None),
    ],
)
def test_the_bearer_token_of_an_authorization_header(header: str | None, token: str) -> None:
    assert bearer_token(header) == token


def test_the_challenge_says_whether_the_token_was_wrong() -> None:
    assert challenge(token_given=False) == 'Bearer realm="kubetask"'
    assert challenge(token_given=True) == 'Bearer realm="kubetask", error="invalid_token"'


def test_a_rotated_file_is_read_again_and_a_broken_one_keeps_the_last(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps(ENTRIES[:1]))
    tokens = TokenFile(path)
    assert tokens.table().lookup(A) is not None
    assert tokens.table().lookup(B) is None
    _write(path, json.dumps(ENTRIES[1:]))
    assert tokens.table().lookup(A) is None  # revoked
    assert tokens.table().lookup(B) == Principal("team-b", Role.USER)
    _write(path, "[{half written")
    assert tokens.table().lookup(B) is not None  # the last good table stays
    path.unlink()
    assert tokens.table().lookup(B) is not None


def test_an_unreadable_file_at_start_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TokensFileError, match="cannot read"):
        TokenFile(tmp_path / "missing.json")


def _write(path: Path, text: str) -> None:
    """Replace the file as a Secret volume does (a new inode), with a later mtime."""
    fresh = path.with_suffix(".new")
    fresh.write_text(text)
    stat = path.stat()
    os.utime(fresh, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    fresh.replace(path)
