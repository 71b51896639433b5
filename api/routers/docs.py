"""`/docs` (Swagger UI) and `/redoc`, with their scripts, styles and icon served from this
server: FastAPI's own pages load them from a CDN, so they were blank offline (or wherever a
CDN cannot be reached). The assets come from the `fastapi-offline` wheel."""

from __future__ import annotations

import functools
from importlib import resources

from fastapi import APIRouter, HTTPException
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, Response

router = APIRouter(include_in_schema=False)

TITLE = "kubetask"
OPENAPI_URL = "/openapi.json"
ASSETS_URL = "/docs/assets"
MEDIA_TYPES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
CACHE = {"Cache-Control": "public, max-age=86400"}


@router.get("/docs")
async def swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=OPENAPI_URL,
        title=f"{TITLE} API",
        swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
        oauth2_redirect_url="/docs/oauth2-redirect",
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from swagger.io
    )


@router.get("/docs/oauth2-redirect")
async def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
async def redoc() -> HTMLResponse:
    return get_redoc_html(
        openapi_url=OPENAPI_URL,
        title=f"{TITLE} API",
        redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{ASSETS_URL}/favicon.png",
        with_google_fonts=False,
    )


@router.get(ASSETS_URL + "/{name}")
async def docs_asset(name: str) -> Response:
    if name not in MEDIA_TYPES:
        raise HTTPException(status_code=404, detail="no such asset")
    return Response(_read(name), media_type=MEDIA_TYPES[name], headers=CACHE)


@functools.cache
def _read(name: str) -> bytes:
    return (resources.files("fastapi_offline") / "static" / name).read_bytes()
