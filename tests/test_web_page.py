"""The web view as HTTP sees it: `GET /` is the page and `/static/` its files, with headers that allow nothing but
the page's own script and style, no framing and no sniffing; the assets are cached for good under names that
carry their content's hash, the page is asked for again each time; anything else on these paths is refused in
JSON. (tests/test_web_view.py drives the page in a browser.)"""

from __future__ import annotations

import http.client
import re

import pytest
from support import Server

STRICT = {"default-src 'self'", "script-src 'self'", "style-src 'self'", "object-src 'none'", "base-uri 'none'",
          "form-action 'self'", "frame-ancestors 'none'", "require-trusted-types-for 'script'"}


def assert_guarded(headers: dict[str, str]) -> None:
    policy = {directive.strip() for directive in headers["Content-Security-Policy"].split(";")}
    assert STRICT <= policy
    assert not any("unsafe" in directive or "*" in directive or "data:" in directive for directive in policy)
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert "Server" not in headers


def get(server: Server, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=server.tls.client_context(),
                                             timeout=30)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def assets(page: bytes) -> list[str]:
    return re.findall(r'(?:src|href)="(/static/[^"]+)"', page.decode())


def test_get_slash_is_the_page_with_strict_headers(server):
    status, headers, page = get(server, "/")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Cache-Control"] == "no-cache"
    assert_guarded(headers)
    assert b"<script>" not in page and b"style=" not in page and b"<style" not in page  # nothing inline
    assert b'type="password"' in page
    assert sorted(path.split("?")[0] for path in assets(page)) == ["/static/app.js", "/static/icon.svg",
                                                                   "/static/style.css"]


def test_head_slash_has_the_pages_headers_and_no_body(server):
    _, page_headers, page = get(server, "/")
    status, headers, body = get(server, "/", "HEAD")
    assert status == 200 and body == b""
    assert headers["Content-Length"] == str(len(page))
    assert headers["Content-Security-Policy"] == page_headers["Content-Security-Policy"]


def test_the_pages_assets_are_cached_for_good_under_versioned_names(server):
    _, _, page = get(server, "/")
    types = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
    for path in assets(page):
        status, headers, body = get(server, path)
        assert status == 200 and body
        assert headers["Content-Type"] == types[re.search(r"\.\w+(?=\?)", path).group()]
        assert headers["Cache-Control"] == "max-age=31536000, immutable"
        assert_guarded(headers)
        unversioned = get(server, path.split("?")[0])
        assert unversioned[0] == 200 and unversioned[1]["Cache-Control"] == "no-cache"
        stale = get(server, path.split("?")[0] + "?v=0")
        assert stale[0] == 200 and stale[1]["Cache-Control"] == "no-cache"


@pytest.mark.parametrize("path", ["/static/index.html", "/static/missing.js", "/static/../page.py",
                                  "/static/%2e%2e/page.py", "/static/", "/index.html"])
def test_nothing_else_is_served(server, path):
    status, headers, body = get(server, path)
    assert status == 404 and headers["Content-Type"] == "application/json" and b'"error"' in body


def test_other_methods_on_the_pages_files_are_405_in_json(server):
    status, headers, body = get(server, "/static/app.js", "POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD" and headers["Content-Type"] == "application/json"
    assert b'"error"' in body
