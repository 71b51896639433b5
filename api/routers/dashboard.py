"""The web dashboard: one static page and its assets, served from the package (no CDN,
works offline). The page holds no data; it reads everything from the API like any client."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

router = APIRouter(include_in_schema=False)

ASSETS = Path(__file__).resolve().parent.parent / "dashboard"
MEDIA_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "results.js": "text/javascript; charset=utf-8",
    "artifacts.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    # Everything comes from this server: no CDN, no inline script.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
}


def _asset(name: str) -> FileResponse:
    if name not in MEDIA_TYPES:
        raise HTTPException(status_code=404, detail="no such asset")
    return FileResponse(ASSETS / name, media_type=MEDIA_TYPES[name], headers=HEADERS)


@router.get("/")
async def dashboard() -> FileResponse:
    return _asset("index.html")


@router.get("/ui/{name}")
async def dashboard_asset(name: str) -> FileResponse:
    return _asset(name)
