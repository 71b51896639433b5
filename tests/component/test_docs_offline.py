"""`/docs` and `/redoc` work offline, against the real API process: their pages name no other
host (FastAPI's own load Swagger UI and ReDoc from a CDN) and every script, style and icon
they reference answers 200 from this server."""

from __future__ import annotations

import re

import pytest

from tests.servers import ApiServer

REFERENCES = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_page_names_no_other_host(api: ApiServer, page: str) -> None:
    response = api.client.get(page)
    assert response.status_code == 200
    html = response.text
    assert "//" not in "".join(REFERENCES.findall(html))  # no http(s)://host/ nor //host/
    assert "http://" not in html
    assert "https://" not in html
    assert "fonts.googleapis" not in html


@pytest.mark.parametrize(
    ("page", "wanted"),
    [("/docs", {"javascript": 1, "css": 1, "png": 1}), ("/redoc", {"javascript": 1, "png": 1})],
)
def test_every_asset_the_page_references_answers_200(
    api: ApiServer, page: str, wanted: dict[str, int]
) -> None:
    references = REFERENCES.findall(api.client.get(page).text)
    found: dict[str, int] = {}
    for url in references:
        asset = api.client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000, url
        kind = asset.headers["content-type"].split(";")[0].split("/")[1]
        found[kind] = found.get(kind, 0) + 1
    assert found == wanted


def test_swagger_ui_reads_this_servers_spec(api: ApiServer) -> None:
    html = api.client.get("/docs").text
    assert "url: '/openapi.json'" in html
    bundle = api.client.get("/docs/assets/swagger-ui-bundle.js").text
    assert "SwaggerUIBundle" in bundle


def test_an_unknown_asset_is_404(api: ApiServer) -> None:
    assert api.client.get("/docs/assets/../../etc/passwd").status_code == 404
    assert api.client.get("/docs/assets/index.html").status_code == 404
