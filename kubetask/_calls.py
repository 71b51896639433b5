"""The REST calls, without I/O: what to send for each operation and how to read the answer.

A `Call` names the method, path, query, body and headers, and carries the parser of the
response; the sync and async clients send it and hand the response back. Listing pages
(`Pager`) and following logs (`LogFollower`) are small pure state machines.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, time
from typing import Generic, TypedDict, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, JsonValue, TypeAdapter

from kubetask.errors import (
    ApiError,
    FieldError,
    InvalidRequest,
    InvalidServerUrl,
    InvalidToken,
    NotKubetaskApi,
    error_from,
    retry_after_seconds,
)
from kubetask.models import (
    RECEIVED,
    Artifact,
    ArtifactList,
    JobPage,
    JobState,
    JobView,
    KindInfo,
    Notify,
    Resources,
    Upload,
)
from kubetask.params.paths import OutsideTheStore, store_parts

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "KUBETASK_URL"
TOKEN_ENV = "KUBETASK_TOKEN"
PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
API_PREFIX = "/v1"
EXCERPT_CHARS = 60

_KINDS: TypeAdapter[list[KindInfo]] = TypeAdapter(list[KindInfo])
_OBJECT: TypeAdapter[dict[str, JsonValue]] = TypeAdapter(dict[str, JsonValue])


class JobOptions(TypedDict, total=False):
    """The fields of a job request besides `kind` and `params` (see `JobRequest`)."""

    name: str | None
    resources: Resources | Mapping[str, object]
    retries: int
    timeout_s: int | None
    start_timeout_s: int | None
    parallelism: int
    completions: int
    priority: str | None
    queue: str | None
    labels: Mapping[str, str]
    notify: Notify | Mapping[str, object] | None


def base_url(explicit: str | None) -> str:
    """The server: as given, else `KUBETASK_URL`, else the embedded default; the API's own
    address as the server prints it (`http://host:8000/v1`) names the server too.
    `InvalidServerUrl`, before anything is sent, for one that is not an http(s) URL."""
    source = "the server URL" if explicit else URL_ENV
    given = explicit or os.environ.get(URL_ENV) or DEFAULT_URL
    url = given.rstrip("/").removesuffix(API_PREFIX).rstrip("/")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise InvalidServerUrl(source, given, str(exc)) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidServerUrl(source, given, "it needs http:// or https:// and a host")
    return url


def is_header_token(token: str) -> bool:
    """Whether `token` can be sent as a header's value as it is (a bearer token, an
    Idempotency-Key): visible ASCII, no spaces."""
    return all("!" <= char <= "~" for char in token)


def auth_headers(token: str | None) -> dict[str, str]:
    """A bearer token (given, else `KUBETASK_TOKEN`), when there is one; `InvalidToken` for
    one that cannot be sent (non-ASCII, a space, a newline)."""
    source = "the token" if token is not None else TOKEN_ENV
    token = token if token is not None else os.environ.get(TOKEN_ENV)
    if not token:
        return {}
    if not is_header_token(token):
        raise InvalidToken(source)
    return {"Authorization": f"Bearer {token}"}


def unreachable_reason(exc: httpx.TransportError) -> str:
    """A few words on why a connection failed."""
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    text = str(exc)
    if "refused" in text.lower() or "errno 111" in text.lower():
        return "connection refused"
    return text or type(exc).__name__


def jsonable(value: object, at: str = "") -> JsonValue:
    """Options as JSON: pydantic models dumped, mappings and sequences walked, dates and times
    as ISO 8601 strings. `InvalidRequest` naming the field (`at`, dotted), before anything is
    sent, for NaN or infinity (JSON has neither) and for a value of no JSON type."""
    if isinstance(value, BaseModel):
        dumped: JsonValue = value.model_dump(mode="json", exclude_unset=True)
        return dumped
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, _field(at, k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v, _field(at, i)) for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        raise _not_json(at, f"{value} is not a finite number (JSON has no NaN or Infinity)")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, date | time):  # a datetime is a date
        return value.isoformat()
    raise _not_json(at, f"a {type(value).__name__} is not a JSON value")


def _field(at: str, key: object) -> str:
    return f"{at}.{key}" if at else str(key)


def _not_json(at: str, why: str) -> InvalidRequest:
    error = FieldError(at, why, "value_error")
    return InvalidRequest(422, "Invalid request", why, errors=(error,))


def request_json(request: BaseModel | Mapping[str, object]) -> dict[str, JsonValue]:
    """A whole job request (a `JobRequest`, or its JSON as a mapping) as a JSON object."""
    body = jsonable(request)
    if not isinstance(body, dict):
        raise TypeError("a job request is a JSON object")
    return body


def request_body(
    kind: str, params: Mapping[str, object] | None, options: JobOptions
) -> dict[str, JsonValue]:
    """The JSON of a job request; fields left out get the server's defaults."""
    body: dict[str, JsonValue] = {"kind": kind, "params": jsonable(params or {}, "params")}
    body.update({key: jsonable(value, key) for key, value in options.items()})
    return body


@dataclass(frozen=True)
class Call(Generic[T]):
    """One HTTP exchange: what to send and how to read a successful answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: tuple[tuple[str, str], ...] = ()
    body: JsonValue | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


def answer(response: httpx.Response, parse: Callable[[httpx.Response], T]) -> T:
    """What `parse` reads from a successful answer; the matching `ApiError` for an error
    answer, and `NotKubetaskApi` for one that is not kubetask's API (a proxy's page, a
    redirect, another server's JSON)."""
    if response.is_error:
        raise api_error(response)
    try:
        return parse(response)
    except ValueError:  # pydantic's ValidationError is one
        raise not_kubetask(response) from None


def api_error(response: httpx.Response) -> ApiError:
    """The error for an error answer (its body must have been read): typed from its problem
    document, or `NotKubetaskApi` when the body is not JSON."""
    try:
        body: JsonValue = response.json()
    except ValueError:
        return not_kubetask(response)
    return error_from(
        response.status_code,
        body,
        text=response.text,
        retry_after=response.headers.get("retry-after"),
    )


def refused(response: httpx.Response) -> ApiError:
    """Why a streamed answer is not what was asked for (its body read): the API's error, or
    `NotKubetaskApi` for a success that is not the API's."""
    return api_error(response) if response.is_error else not_kubetask(response)


def not_kubetask(response: httpx.Response) -> NotKubetaskApi:
    """An answer that is not kubetask's, told in one line: who answered which request, with
    what status, and what came."""
    url = response.request.url
    return NotKubetaskApi(
        response.status_code,
        response.reason_phrase,
        _what_came(response),
        server=f"{url.scheme}://{url.netloc.decode('ascii')}",
        request_line=f"{response.request.method} {url.raw_path.decode('ascii')}",
        retry_after_s=retry_after_seconds(response.headers.get("retry-after")),
    )


def _what_came(response: httpx.Response) -> str:
    """Where a redirect leads, else the content type and the start of the body."""
    location = response.headers.get("location")
    if response.is_redirect and location is not None:
        return f"a redirect to {location}"
    content_type = response.headers.get("content-type", "no content type")
    excerpt = " ".join(response.text.split())  # one line
    if not excerpt:
        return f"{content_type}, an empty body"
    if len(excerpt) > EXCERPT_CHARS:
        excerpt = excerpt[: EXCERPT_CHARS - 1] + "…"
    return f"{content_type}: {excerpt}"


def _job_path(job_id: str, suffix: str = "") -> str:
    return f"/v1/jobs/{quote(job_id, safe='')}{suffix}"


def _page(response: httpx.Response) -> JobPage:
    return JobPage.model_validate_json(response.content, context=RECEIVED)


def _view(response: httpx.Response) -> JobView:
    return JobView.model_validate_json(response.content, context=RECEIVED)


def submit(body: dict[str, JsonValue], *, idempotency_key: str | None) -> Call[JobView]:
    """`InvalidRequest` naming the key, before anything is sent, for one that cannot go in a
    header (printable ASCII, no spaces, at most 255 characters, as the server takes)."""
    if idempotency_key and not (is_header_token(idempotency_key) and len(idempotency_key) <= 255):
        why = "an Idempotency-Key is printable ASCII without spaces, at most 255 characters"
        error = FieldError("idempotency_key", why, "value_error")
        raise InvalidRequest(422, "Invalid request", why, errors=(error,))
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    return Call("POST", "/v1/jobs", _view, body=body, headers=headers)


def dry_run(body: dict[str, JsonValue]) -> Call[dict[str, JsonValue]]:
    return Call(
        "POST",
        "/v1/jobs",
        lambda r: _OBJECT.validate_json(r.content),
        params=(("dry_run", "true"),),
        body=body,
    )


def get(job_id: str) -> Call[JobView]:
    return Call("GET", _job_path(job_id), _view)


def cancel(job_id: str) -> Call[JobView]:
    return Call("DELETE", _job_path(job_id), _view)


def logs(job_id: str, *, tail: int | None) -> Call[str]:
    params = (("tail", str(tail)),) if tail is not None else ()
    return Call("GET", _job_path(job_id, "/logs"), _log_text, params=params)


def _log_text(response: httpx.Response) -> str:
    """A log as the API serves it: plain text (a login page or a redirect is not a log)."""
    if response.status_code != 200 or not _media(response).startswith("text/plain"):
        raise ValueError("not a log")
    return response.text


def _media(response: httpx.Response) -> str:
    media: str = response.headers.get("content-type", "")
    return media.lower()


def is_event_stream(response: httpx.Response) -> bool:
    """Whether a 2xx is the API's event stream (a proxy's page or a redirect is not)."""
    return response.status_code == 200 and _media(response).startswith("text/event-stream")


def is_file(response: httpx.Response) -> bool:
    """Whether a 2xx is one of the API's downloads: each carries its file's ETag (a login
    page or a redirect, saved as the file, would not)."""
    return response.status_code in (200, 206) and "etag" in response.headers


def kinds() -> Call[list[KindInfo]]:
    return Call("GET", "/v1/kinds", lambda r: _KINDS.validate_json(r.content))


def remote_path(path: str) -> str:
    """A file's path as the API takes it (`a//b/./c` is `a/b/c`); `InvalidRequest` naming
    `path`, before anything is sent, for one that is absolute, has a '..' or is empty."""
    try:
        return "/".join(store_parts(path))
    except OutsideTheStore as exc:
        error = FieldError("path", str(exc), "value_error")
        raise InvalidRequest(422, "Invalid path", str(exc), errors=(error,)) from None


def _items(response: httpx.Response) -> list[Artifact]:
    return ArtifactList.model_validate_json(response.content).items


def artifacts(job_id: str) -> Call[list[Artifact]]:
    """A job's files, paths relative to its folder, sorted."""
    return Call("GET", _job_path(job_id, "/artifacts"), _items)


def artifact_url(job_id: str, path: str) -> str:
    """Where one of a job's files is downloaded from (`GET`, streamed)."""
    return _job_path(job_id, "/artifacts/" + quote(remote_path(path), safe="/"))


def uploads(prefix: str | None = None) -> Call[list[Artifact]]:
    """The caller's uploads, paths relative to their area (only those under `prefix`)."""
    params = (("prefix", prefix),) if prefix else ()
    return Call("GET", "/v1/uploads", _items, params=params)


def upload_url(path: str) -> str:
    """Where a file is uploaded to (`PUT`, the raw bytes as the body)."""
    return "/v1/uploads/" + quote(remote_path(path), safe="/")


def upload_headers(size: int) -> dict[str, str]:
    """The length first, so that the server turns an upload over its limit down at once."""
    return {"Content-Length": str(size), "Content-Type": "application/octet-stream"}


def uploaded(response: httpx.Response) -> Upload:
    return Upload.model_validate_json(response.content)


def content_length(response: httpx.Response) -> int | None:
    """The size a download announces, if it does."""
    value = response.headers.get("content-length")
    return int(value) if value is not None and value.isdigit() else None


def cut_short(announced: int | None, received: int) -> str | None:
    """Why a finished download is not whole (fewer or more bytes than announced), or None."""
    if announced is None or announced == received:
        return None
    return f"the download ended after {received} of {announced} bytes"


class Pager:
    """`GET /v1/jobs` page after page, following `next_cursor`, up to `limit` jobs."""

    def __init__(
        self,
        *,
        state: JobState | str | None = None,
        kind: str | None = None,
        labels: Mapping[str, str] | None = None,
        limit: int | None = None,
        page_size: int = PAGE_SIZE,
    ) -> None:
        query: list[tuple[str, str]] = []
        if state is not None:
            query.append(("state", JobState(state).value))
        if kind is not None:
            query.append(("kind", kind))
        query.extend(("label", f"{k}={v}") for k, v in (labels or {}).items())
        self._query = tuple(query)
        self._left = limit
        self._page_size = max(1, min(page_size, MAX_PAGE_SIZE))
        self._cursor: str | None = None
        self._done = limit is not None and limit <= 0

    def next_call(self) -> Call[JobPage] | None:
        """The next page to fetch, or None when done."""
        if self._done:
            return None
        size = self._page_size if self._left is None else min(self._page_size, self._left)
        params = (*self._query, ("limit", str(size)))
        if self._cursor is not None:
            params = (*params, ("cursor", self._cursor))
        return Call(
            "GET",
            "/v1/jobs",
            lambda r: JobPage.model_validate_json(r.content, context=RECEIVED),
            params,
        )

    def take(self, page: JobPage) -> Iterator[JobView]:
        """The jobs of a fetched page (no more than the limit left)."""
        items = page.items if self._left is None else page.items[: self._left]
        if self._left is not None:
            self._left -= len(items)
        self._cursor = page.next_cursor
        self._done = not page.next_cursor or not page.items or self._left == 0
        return iter(items)


class LogFollower:
    """The new part of a job's log each time it is read again (the first time: the tail)."""

    def __init__(self, *, tail: int | None = None) -> None:
        self._tail = tail
        self._seen: int | None = None

    def feed(self, text: str) -> str:
        seen, self._seen = self._seen, len(text)
        if seen is None:
            return text if self._tail is None else _last_lines(text, self._tail)
        return text[seen:] if len(text) >= seen else text  # shorter: the log began anew


def _last_lines(text: str, count: int) -> str:
    lines = text.splitlines(keepends=True)
    return "".join(lines[-count:]) if count > 0 else ""
