"""Job ids: lowercase, DNS-label safe, and sortable by creation time (newest = largest)."""

from __future__ import annotations

import secrets
import string
from datetime import datetime

_ALPHABET = string.digits + string.ascii_lowercase
_TIME_WIDTH = 9  # base36 milliseconds: enough until the year 5188
_RANDOM_WIDTH = 7


def _base36(value: int, width: int) -> str:
    digits = []
    while value:
        value, digit = divmod(value, 36)
        digits.append(_ALPHABET[digit])
    return "".join(reversed(digits)).rjust(width, "0")


def new_job_id(now: datetime) -> str:
    millis = int(now.timestamp() * 1000)
    random_part = "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_WIDTH))
    return _base36(millis, _TIME_WIDTH) + random_part


def is_job_id(value: str) -> bool:
    return len(value) == _TIME_WIDTH + _RANDOM_WIDTH and all(c in _ALPHABET for c in value)
