"""The web view: `GET /` serves a page that signs in with a token and drives the API from the browser, and
`/static/` serves its script, style sheet and icon from web/static, as they are (no build step, nothing from
elsewhere).

Every answer here carries headers that let the page run only its own files: no inline script or style, nothing
fetched from another origin, no framing, no sniffing, no referrer. Trusted Types are required, so even a slip
in the script that handed job output to `innerHTML` would throw instead of making HTML of it. The page's assets
are named with a hash of their content, so they can be cached for good while the page itself is asked for again
each time (cheaply: it has an ETag).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any, ClassVar

import tornado.httputil
import tornado.routing
import tornado.template
import tornado.web
from workerctl.web.answers import JsonHandler

STATIC_DIRECTORY = Path(__file__).resolve().parent / "static"
ASSET_PATH = r"/static/([a-z][a-z0-9-]*\.(?:js|css|svg))"
"""What /static/ serves: a script, a style sheet or an image, by a plain name; anything else is a 404."""
PAGE_TEMPLATE = "index.html"

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "require-trusted-types-for 'script'",
    "trusted-types 'none'",
))
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # for browsers older than frame-ancestors
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}
PAGE_CACHE = "no-cache"  # asked for again each time (an ETag makes that a 304): it names the assets' versions
VERSIONED_ASSET_CACHE = "max-age=31536000, immutable"  # its name carries its content's hash


class ReadOnly(tornado.routing.PathMatches):
    """A path for GET and HEAD only: other methods go on to the rules after it (the API's, for `/`)."""

    def match(self, request: tornado.httputil.HTTPServerRequest) -> dict[str, Any] | None:
        return super().match(request) if request.method in ("GET", "HEAD") else None


@functools.cache
def asset_version(name: str) -> str:
    """A short hash of the asset's content: part of its URL, so a new version is a new URL."""
    return hashlib.sha256((STATIC_DIRECTORY / name).read_bytes()).hexdigest()[:16]


def asset_url(name: str) -> str:
    return f"/static/{name}?v={asset_version(name)}"


@functools.cache
def page_text() -> bytes:
    loader = tornado.template.Loader(str(STATIC_DIRECTORY), autoescape="xhtml_escape")
    return loader.load(PAGE_TEMPLATE).generate(asset_url=asset_url)


class ViewHandler(JsonHandler):
    """What the page and its assets share: the security headers, and JSON for any error."""

    ALLOWED_METHODS: ClassVar[str] = "GET, HEAD"

    def set_default_headers(self) -> None:
        super().set_default_headers()
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)


class PageHandler(ViewHandler):
    """`GET /`: the page."""

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", PAGE_CACHE)
        self.finish(page_text())

    def head(self) -> None:
        self.get()  # Tornado sends the headers of the GET answer and no body


class AssetHandler(ViewHandler, tornado.web.StaticFileHandler):
    """`GET /static/NAME`: a file of web/static."""

    def get_cache_time(self, path: str, modified: Any, mime_type: str) -> int:
        return 0  # set_extra_headers says what may be cached

    def set_extra_headers(self, path: str) -> None:
        versioned = self.get_query_argument("v", None) == asset_version(path)
        self.set_header("Cache-Control", VERSIONED_ASSET_CACHE if versioned else PAGE_CACHE)

    def get_content_type(self) -> str:
        content_type = super().get_content_type()
        return f"{content_type}; charset=utf-8" if content_type.startswith("text/") else content_type


def view_routes() -> list[tuple[Any, ...]]:
    """The routes of the page and its assets, to come before the API's catch-all."""
    return [(ReadOnly("/"), PageHandler),
            (ASSET_PATH, AssetHandler, {"path": str(STATIC_DIRECTORY)})]
