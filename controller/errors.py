"""The failures a caller of the controller can act on, one type each."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    loc: tuple[str | int, ...]
    msg: str
    type: str


class InvalidRequest(Exception):
    """The request cannot run as given (422); `errors` name the fields."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in errors))
        self.errors = errors


class JobNotFound(Exception):
    """No job with this id (404)."""


class JobFinished(Exception):
    """The job already reached a terminal state, so it cannot be changed (409)."""

    def __init__(self, job_id: str, state: str) -> None:
        super().__init__(f"job {job_id} is already {state}")
        self.state = state


class IdempotencyKeyReused(Exception):
    """The Idempotency-Key was used before with a different request (409)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"Idempotency-Key already used for job {job_id} with another request")
        self.job_id = job_id


class NotDurable(Exception):
    """The job store did not confirm that a new job is on disk, so it was taken back out:
    nothing was accepted, and the same request may be sent again (503)."""
