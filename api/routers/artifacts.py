"""Artifacts over REST: a job's files (`/v1/jobs/{id}/artifacts`), listed and downloaded
(streamed, with Range, ETag and If-None-Match: api/downloads.py decides), and the tenant's
uploads (`/v1/uploads`), put and listed. A job another tenant owns answers 404 as a missing
one does; uploads are always the caller's own tenant's (`uploads/<tenant>/`). Every path
is relative to its folder and checked (no '..', not absolute): 422 naming it otherwise.

The store is sync: each call runs in a worker thread, a download streams from one, and an
upload is written in one while the body is read from the event loop, piece by piece and
counted against `KUBETASK_MAX_UPLOAD_BYTES` (the app's body limit spares this route). Bodies
go through the API on both stores: a presigned URL could name an address inside the
cluster that a user cannot reach.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from typing import Annotated, Any, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.convertors import PathConvertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import Scope, Send

from kubetask.api.body import refuse_encoded
from kubetask.api.deps import ArtifactsDep, LimitsDep, PrincipalDep, RuntimeDep, ServiceDep
from kubetask.api.downloads import headers, plan, quoted, unsatisfiable_headers, validators
from kubetask.api.problems import RETRY_AFTER, RETRY_AFTER_S, problem
from kubetask.params.paths import OutsideTheStore, uploads_area
from kubetask.storage import (
    ArtifactStore,
    Entry,
    NotFound,
    RangeNotSatisfiable,
    Reader,
    StoreError,
    UploadFailed,
)
from kubetask.storage.base import PARTIAL_SUFFIX, store_key

UPLOADS = "/v1/uploads/"
log = logging.getLogger("kubetask.api")


class AnyPathConvertor(PathConvertor):
    """Starlette's `path`, newlines too (its `.*` stops at one: such a path was a plain 404,
    never reaching the check that answers 422 naming it)."""

    regex = r"[\s\S]*"


register_url_convertor("anypath", AnyPathConvertor())
MAX_SEGMENT_BYTES = 255  # a file name's limit on common filesystems
MAX_PATH_BYTES = 1000  # as params' artifact paths (S3 keys: 1024 with the prefix)
IN_THE_WAY = (NotADirectoryError, IsADirectoryError, FileExistsError)
UPLOAD_IDLE_S = 60.0  # an upload whose body sends nothing for this long is cut off (408)
T = TypeVar("T")

router = APIRouter(
    tags=["artifacts"],
    responses={
        401: {"description": "No valid bearer token (WWW-Authenticate says why)."},
        503: {
            "description": "The job store or the artifact store is unavailable; try again "
            "after Retry-After.",
            "headers": RETRY_AFTER,
        },
    },
)


class ArtifactEntry(BaseModel):
    path: str = Field(description="Relative to the job's folder (or to your uploads).")
    size: int = Field(ge=0, description="Bytes.")
    content_type: str
    etag: str = Field(description="The ETag a download of it carries (quoted, as HTTP's).")
    modified: datetime


class ArtifactList(BaseModel):
    items: list[ArtifactEntry]


class Uploaded(BaseModel):
    path: str = Field(description="In the artifact store: uploads/<tenant>/<path>.")
    size: int = Field(ge=0)
    etag: str


class UploadTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"upload over {limit} bytes (KUBETASK_MAX_UPLOAD_BYTES)")


class _OverTheLimit(Exception):
    """The streamed body passed the upload limit (raised inside the store's write)."""


def is_upload(scope: Scope) -> bool:
    """The requests with a body limit of their own (`BodySizeLimit` spares them)."""
    return scope.get("method") == "PUT" and str(scope.get("path", "")).startswith(UPLOADS)


def checked(path: str, loc: tuple[str, str]) -> str:
    """`path` in normal form; a 422 naming `loc` when it leads outside its folder."""
    try:
        key = store_key(path)
    except OutsideTheStore as exc:
        raise _invalid(loc, str(exc)) from None
    if any(len(part.encode()) > MAX_SEGMENT_BYTES for part in key.split("/")):
        raise _invalid(loc, f"each segment at most {MAX_SEGMENT_BYTES} bytes")
    if len(key.encode()) > MAX_PATH_BYTES:
        raise _invalid(loc, f"at most {MAX_PATH_BYTES} bytes")
    return key


def _invalid(loc: tuple[str, str], msg: str) -> RequestValidationError:
    return RequestValidationError([{"loc": loc, "msg": msg, "type": "artifact_path"}])


def listed(entry: Entry, *, under: str) -> ArtifactEntry:
    return ArtifactEntry(
        path=entry.path.removeprefix(f"{under}/"),
        size=entry.size,
        content_type=entry.content_type,
        etag=quoted(entry.etag),
        modified=entry.modified,
    )


def store_unavailable(request: Request, exc: Exception) -> Response:
    """A store failure anywhere (a submit's `upload:<path>` check too): 503, try again."""
    if isinstance(exc, NotFound):
        return problem(404, "Not Found", str(exc))
    return problem(
        503,
        "Service Unavailable",
        f"the artifact store is unavailable: {exc}",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def in_thread(call: Callable[[], T], *, threads: anyio.CapacityLimiter | None = None) -> T:
    """`call()` in a worker thread (of `threads`; else the shared ones) (a `StoreError` it
    raises: `store_unavailable`). A path the store finds leads out of its root (a symlink a
    task left) is answered as missing."""
    try:
        return await anyio.to_thread.run_sync(call, limiter=threads)
    except OutsideTheStore:
        raise NotFound("(a path that leads outside the store)") from None


async def list_under(store: ArtifactStore, folder: str) -> ArtifactList:
    entries = await in_thread(lambda: list(store.list(folder)))
    return ArtifactList(items=[listed(entry, under=folder) for entry in entries])


@router.get(
    "/v1/jobs/{job_id}/artifacts",
    operation_id="list_artifacts",
    response_model=ArtifactList,
    responses={404: {"description": "No such job."}},
)
async def list_artifacts(
    job_id: str, service: ServiceDep, principal: PrincipalDep, store: ArtifactsDep
) -> ArtifactList:
    """The job's files, by path (none yet: an empty list)."""
    await service.get(job_id, tenant=principal.scope)
    return await list_under(store, job_id)


FILE = {"schema": {"type": "string", "format": "binary"}}
FILE_REFUSALS: dict[int | str, dict[str, Any]] = {  # what a GET or HEAD of a file answers but it
    304: {"description": "Not modified: If-None-Match names its ETag."},
    404: {"description": "No such job, or no such file in it."},
    416: {"description": "The range starts past the end (Content-Range: bytes */SIZE)."},
    422: {"description": "The path leads outside the job's folder."},
}
VALIDATOR_HEADERS = {
    name: {"schema": {"type": "string"}} for name in ("ETag", "Last-Modified", "Accept-Ranges")
}


@router.head(
    "/v1/jobs/{job_id}/artifacts/{path:anypath}",
    operation_id="head_artifact",
    description="What a GET of the file would answer (its size, ETag, type), without it.",
    response_class=Response,
    responses={
        200: {"description": "The file's headers (Content-Length, ETag, Content-Type)."},
        206: {"description": "The range's headers (Content-Range)."},
        **FILE_REFUSALS,
    },
)
@router.get(
    "/v1/jobs/{job_id}/artifacts/{path:anypath}",
    operation_id="download_artifact",
    response_class=StreamingResponse,
    responses={
        200: {"description": "The file.", "content": {"*/*": FILE}},
        206: {
            "description": "The byte range asked for (Content-Range says which).",
            "content": {"*/*": FILE},
        },
        **FILE_REFUSALS,
    },
)
async def download_artifact(
    job_id: str,
    path: str,
    request: Request,
    service: ServiceDep,
    principal: PrincipalDep,
    store: ArtifactsDep,
    range_: Annotated[
        str | None, Header(alias="range", description="bytes=A-B, bytes=A- or bytes=-N")
    ] = None,
    if_none_match: Annotated[str | None, Header()] = None,
    if_range: Annotated[
        str | None, Header(description="The ETag or Last-Modified the Range applies to.")
    ] = None,
) -> Response:
    """One file of the job, streamed (HEAD: its headers, nothing read)."""
    await service.get(job_id, tenant=principal.scope)
    key = f"{job_id}/{checked(path, ('path', 'path'))}"
    try:
        entry = await in_thread(lambda: store.stat(key))
        decided = plan(entry, range_header=range_, if_none_match=if_none_match, if_range=if_range)
        if decided.status == 304:
            return Response(status_code=304, headers=validators(entry))
        if decided.status == 416:
            return unsatisfiable(entry, range_)
        if request.method == "HEAD":
            start, stop = (
                decided.byte_range.resolve(key, entry.size)
                if decided.byte_range
                else (0, entry.size)
            )
            head = headers(entry, start=start, stop=stop, status=decided.status)
            return Response(status_code=decided.status, headers=head)
        reader = await in_thread(lambda: store.open(key, byte_range=decided.byte_range))
    except NotFound:
        return problem(404, "Not Found", f"no file {path!r} in job {job_id}")
    except RangeNotSatisfiable:  # the file shrank since
        return unsatisfiable(entry, range_)
    return FileStream(
        _stream(reader),
        status_code=decided.status,
        headers=headers(reader.entry, start=reader.start, stop=reader.stop, status=decided.status),
    )


def unsatisfiable(entry: Entry, range_header: str | None) -> JSONResponse:
    detail = f"{range_header} starts past the end of a file of {entry.size} bytes"
    return problem(416, "Range Not Satisfiable", detail, headers=unsatisfiable_headers(entry))


def _stream(reader: Reader) -> Iterator[bytes]:
    with reader:
        yield from reader


class FileStream(StreamingResponse):
    """A download's body. A store failing partway through it (silent past its read limit,
    its connection cut) ends it short, as a proxy cutting it would: the client gets fewer
    bytes than Content-Length and the connection closed, and the log one line naming the
    file and why (uvicorn's own line says the response was not completed), no traceback."""

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        except StoreError as exc:
            log.warning("a download was cut short: %s", exc)


@router.get("/v1/uploads", operation_id="list_uploads", response_model=ArtifactList)
async def list_uploads(
    principal: PrincipalDep,
    store: ArtifactsDep,
    prefix: Annotated[
        str | None, Query(max_length=1000, description="A folder within your uploads.")
    ] = None,
) -> ArtifactList:
    """Your tenant's uploads, by path (relative to `uploads/<tenant>/`)."""
    area = "/".join(uploads_area(principal.tenant))
    folder = f"{area}/{checked(prefix, ('query', 'prefix'))}" if prefix else area
    listing = await list_under(store, folder)
    if folder == area:
        return listing
    under = folder.removeprefix(f"{area}/")
    items = [item.model_copy(update={"path": f"{under}/{item.path}"}) for item in listing.items]
    return ArtifactList(items=items)


@router.put(
    "/v1/uploads/{path:anypath}",
    operation_id="upload",
    status_code=201,
    response_model=Uploaded,
    responses={
        200: {"description": "An upload at that path was replaced.", "model": Uploaded},
        408: {"description": "The body stopped coming (nothing for 60 s): nothing stored."},
        409: {"description": "The path runs through, or onto a folder of, another upload."},
        413: {"description": "Over KUBETASK_MAX_UPLOAD_BYTES."},
        415: {"description": "A compressed body (Content-Encoding): send the file as it is."},
        422: {"description": "The path leads outside your uploads."},
        429: {"description": "Your tenant has 4 uploads under way here: after Retry-After."},
    },
    openapi_extra={
        "requestBody": {
            "required": False,  # no body: an empty file
            "description": "The file's bytes, any content type (none: an empty file).",
            "content": {"application/octet-stream": FILE},
        }
    },
)
async def upload(
    path: str,
    request: Request,
    principal: PrincipalDep,
    store: ArtifactsDep,
    runtime: RuntimeDep,
    limits: LimitsDep,
) -> JSONResponse:
    """Put a file in your uploads (usable in params as `upload:<path>`), streamed."""
    refuse_encoded(request.headers)  # it would be stored compressed
    limit = runtime.settings.max_upload_bytes
    key = "/".join((*uploads_area(principal.tenant), checked(path, ("path", "path"))))
    if key.endswith(PARTIAL_SUFFIX):
        raise _invalid(
            ("path", "path"),
            f"a name ending in {PARTIAL_SUFFIX} is a file being "
            "written, which no listing shows: choose another",
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise UploadTooLarge(limit)
    blocking = await in_thread(lambda: in_the_way(store, key))
    if blocking is not None:
        raise HTTPException(409, f"another upload is in the way of {key!r}: {blocking!r}")
    existed = await in_thread(lambda: store.exists(key))
    async with limits.uploads.admit(principal.tenant) as threads:
        entry = await write(store, key, request.stream(), limit=limit, threads=threads)
    body = Uploaded(path=entry.path, size=entry.size, etag=quoted(entry.etag))
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if existed else 201)


def in_the_way(store: ArtifactStore, key: str) -> str | None:
    """What an upload at `key` (`uploads/<tenant>/...`) would collide with: a file where one
    of its folders goes, or files under it (it is a folder); None when nothing is. A folder
    store cannot hold both; object storage can, and then lists neither well (MinIO)."""
    parts = key.split("/")
    for end in range(3, len(parts)):  # the folders below the tenant's own
        above = "/".join(parts[:end])
        if store.exists(above):
            return above
    under = next(iter(store.list(key)), None)
    return None if under is None else under.path


async def write(
    store: ArtifactStore,
    key: str,
    body: AsyncIterator[bytes],
    *,
    limit: int,
    threads: anyio.CapacityLimiter | None = None,
) -> Entry:
    """Store `body` at `key` from a worker thread (of `threads`), each piece read from the
    event loop as the store asks for it, the count checked against `limit` (413) as it goes;
    a body that sends nothing for UPLOAD_IDLE_S is cut off (408)."""

    async def next_piece() -> bytes:
        with anyio.fail_after(UPLOAD_IDLE_S):
            return await body.__anext__()

    def pieces() -> Iterator[bytes]:
        seen = 0
        while True:
            try:
                piece = anyio.from_thread.run(next_piece)
            except StopAsyncIteration:
                return
            seen += len(piece)
            if seen > limit:
                raise _OverTheLimit
            yield piece

    try:
        return await in_thread(lambda: store.write(key, pieces()), threads=threads)
    except UploadFailed as exc:
        cause = exc.__cause__
        if isinstance(cause, _OverTheLimit):
            raise UploadTooLarge(limit) from None
        if isinstance(cause, TimeoutError):
            raise HTTPException(408, f"no byte of the body came for {UPLOAD_IDLE_S:g} s") from None
        if isinstance(cause, ClientDisconnect):
            raise HTTPException(400, "the client went away before the body ended") from None
        if isinstance(cause, IN_THE_WAY):
            raise HTTPException(409, f"another upload is in the way of {key!r}") from None
        raise  # the store failed: 503 (store_unavailable)
