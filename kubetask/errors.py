"""The SDK's errors: one type per failure a caller can act on.

API errors come from RFC 9457 problem details (`application/problem+json`); `error_from`
turns a status and a decoded body into the matching type, and an answer that is not the API's
(a proxy's page) is `NotKubetaskApi`. Pure: no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import JsonValue

from kubetask.models import JobState, JobView


class KubetaskError(Exception):
    """Base of every error the SDK raises. Each can be pickled and copied (a worker process
    raising one hands it to its parent as it is), whatever its constructor takes."""

    def __reduce__(self) -> tuple[object, ...]:
        return _rebuild, (type(self), str(self), dict(self.__dict__))


def _rebuild(cls: type[KubetaskError], message: str, state: dict[str, object]) -> KubetaskError:
    """An error as `__reduce__` left it, without calling its constructor again."""
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class ServerUnreachable(KubetaskError):
    """No connection to the server (refused, DNS, TLS, timeout)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the kubetask server at {url} ({reason})")
        self.url = url
        self.reason = reason


class FileChanged(KubetaskError):
    """A file being uploaded changed size while it was read (or is not a plain file whose
    size says what it holds, as /proc's): the upload was abandoned and nothing stored."""

    def __init__(self, path: str, expected: int, read: int) -> None:
        more = "more" if read > expected else "fewer"
        super().__init__(
            f"{path} changed while it was uploaded: it had {expected} bytes, {more} were "
            "read; nothing was stored"
        )
        self.path = path


class ClientClosed(KubetaskError, RuntimeError):
    """The client was used after `close()` (or the end of its `with` block)."""

    def __init__(self) -> None:
        super().__init__(
            "this client is closed (close() or its `with` block ended): make a new one"
        )


class InvalidToken(KubetaskError, ValueError):
    """The bearer token cannot go in a header: it must be printable ASCII without spaces.
    `source` names where it came from (the message never shows the token itself)."""

    def __init__(self, source: str) -> None:
        super().__init__(
            f"{source} is not a valid bearer token (it must be printable ASCII, no spaces)"
        )
        self.source = source


class InvalidServerUrl(KubetaskError, ValueError):
    """The server's URL is not one to send requests to (it needs http:// or https:// and a
    host); `source` names where it came from. Nothing was sent."""

    def __init__(self, source: str, url: str, reason: str) -> None:
        super().__init__(
            f"{source} {url!r} is not a server URL: {reason} (e.g. http://127.0.0.1:8000)"
        )
        self.source = source
        self.url = url
        self.reason = reason


class StreamLost(KubetaskError):
    """The event stream broke and did not come back after several tries."""

    def __init__(self, job_id: str, last_seq: int, reason: str) -> None:
        super().__init__(f"event stream of job {job_id} lost after seq {last_seq}: {reason}")
        self.job_id = job_id
        self.last_seq = last_seq


@dataclass(frozen=True)
class FieldError:
    """One invalid field of a request: its dotted path (`params.n_per_class`) and why."""

    field: str
    msg: str
    type: str = ""


class ApiError(KubetaskError):
    """The API answered with an error (a problem details document)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        errors: tuple[FieldError, ...] = (),
        body: Mapping[str, JsonValue] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.retry_after_s = retry_after_s  # when the server said to try again (429, 503)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors
        self.body: Mapping[str, JsonValue] = body or {}
        super().__init__(self.summary())

    def summary(self) -> str:
        """One line: the status, then each field and its message (or the detail)."""
        if self.errors:
            return f"{self.status} " + "; ".join(
                f"{e.field or 'body'}: {e.msg}" for e in self.errors
            )
        return f"{self.status} {self.detail or self.title}"


class InvalidRequest(ApiError):
    """The request is invalid (400/422); `errors` name each field."""


class Unauthorized(ApiError):
    """Missing or wrong credentials (401/403); set KUBETASK_TOKEN."""


class NotFound(ApiError):
    """No such job (404)."""


class Conflict(ApiError):
    """The job is already finished, or an Idempotency-Key was reused (409)."""


class RequestTooLarge(ApiError):
    """The request body is over the server's limit (413)."""


class TooManyRequests(ApiError):
    """Over a limit of the caller's tenant (429): submissions per minute, unfinished jobs or
    open streams; `retry_after_s` is when the server says to try again."""

    def summary(self) -> str:
        later = f" (retry after {self.retry_after_s:g} s)" if self.retry_after_s else ""
        return super().summary() + later


class ServiceUnavailable(ApiError):
    """The server cannot serve now (503); try again later."""


class NotKubetaskApi(ApiError):
    """The server answered something that is not kubetask's API (a proxy's or another
    server's page, a redirect): most often a wrong server URL. `status` is the answer's, so
    a proxy's 502 or 503 is waited through as the API's own would be; `detail` says what came
    (its content type and a short excerpt)."""

    def __init__(
        self,
        status: int,
        reason: str,
        detail: str,
        *,
        server: str,
        request_line: str,
        retry_after_s: float | None = None,
    ) -> None:
        self.server = server
        self.request_line = request_line  # `GET /v1/jobs/abc`
        super().__init__(status, reason, detail, retry_after_s=retry_after_s)

    def summary(self) -> str:
        answer = f"{self.status} {self.title}".rstrip()
        return (
            f"the server at {self.server} answered {self.request_line} with {answer}, "
            f"not kubetask's API ({self.detail})"
        )


_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    409: Conflict,
    413: RequestTooLarge,
    422: InvalidRequest,
    429: TooManyRequests,
    503: ServiceUnavailable,
}


def error_from(
    status: int, body: JsonValue, *, text: str = "", retry_after: str | None = None
) -> ApiError:
    """The error for an API response: `body` is the decoded problem document (or None),
    `retry_after` its Retry-After header."""
    problem = body if isinstance(body, dict) else {}
    title = str(problem.get("title") or "")
    detail = problem.get("detail")
    errors = tuple(
        FieldError(str(e.get("field", "")), str(e.get("msg", "")), str(e.get("type", "")))
        for e in _list(problem.get("errors"))
        if isinstance(e, dict)
    )
    cls = _BY_STATUS.get(status, ApiError)
    message = detail if isinstance(detail, str) else text.strip()[:200]
    return cls(
        status,
        title,
        message,
        errors=errors,
        body=problem,
        retry_after_s=retry_after_seconds(retry_after),
    )


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header's seconds (None for none, or for an HTTP date)."""
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: not sent by kubetask


def _list(value: JsonValue) -> list[JsonValue]:
    return value if isinstance(value, list) else []


class JobError(KubetaskError):
    """A job ended other than succeeded; `view` is its final view."""

    def __init__(self, message: str, view: JobView) -> None:
        super().__init__(message)
        self.view = view


class JobFailed(JobError):
    """The job failed; `view.error` says why and what to do."""

    def __init__(self, view: JobView) -> None:
        error = view.error
        why = f"{error.type}: {error.message}" if error else view.message or view.reason or ""
        hint = f" ({error.suggestion})" if error and error.suggestion else ""
        super().__init__(f"job {view.id} failed: {why}{hint}", view)


class JobCancelled(JobError):
    """The job was cancelled."""

    def __init__(self, view: JobView) -> None:
        super().__init__(f"job {view.id} was cancelled", view)


class WaitTimeout(KubetaskError, TimeoutError):
    """The job did not finish within the time given to `wait`."""

    def __init__(self, job_id: str, timeout: float, state: JobState | None = None) -> None:
        where = f" (still {state})" if state else ""
        super().__init__(f"job {job_id} did not finish within {timeout:g}s{where}")
        self.job_id = job_id
        self.timeout = timeout
        self.state = state
