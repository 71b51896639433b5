"""What a WAITAOF reply says of the local fsync (controller/fsync.py)."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from kubetask.controller.fsync import local_fsync


@pytest.mark.parametrize(
    ("reply", "on_disk"),
    [
        ([1, 0], True),
        ([1, 2], True),
        ([0, 0], False),  # timed out: a slow or failing disk
        ([0, 3], False),  # replicas alone are not the local disk
        (
            ResponseError(
                "WAITAOF cannot be used when numlocal is set but appendonly is disabled."
            ),
            False,
        ),
        (RedisConnectionError("gone"), False),
        (ResponseError("unknown command 'WAITAOF', with args beginning with: '1'"), None),
    ],
)
def test_only_a_local_fsync_counts(reply: object, on_disk: bool | None) -> None:
    assert local_fsync(reply) is on_disk
