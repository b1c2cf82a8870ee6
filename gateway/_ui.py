"""``/ui/``: a small static page for people who audit (gateway/ui/: one HTML, one JS, one CSS file).

The page itself is static and carries no data, so it loads without credentials; everything it
shows comes from the authenticated JSON APIs (an object LIST, ``history.jetkube.io/v1``,
``audit.jetkube.io/v1/events``), called with the bearer token pasted once and kept in the tab's
``sessionStorage``, or with the browser's TLS client certificate. The JS puts data in the page with
``textContent`` only, and a strict Content-Security-Policy (scripts from this origin only, no
inline script or style, no framing) is on every file.
"""

from __future__ import annotations

import functools
from importlib import resources

from actors import MethodNotAllowed, NotFound

from ._routes import split_tenant
from ._status import ApiResponse as Response

PREFIX = "/ui"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_TYPES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "ui.css": "text/css; charset=utf-8"}


def handles(path: str) -> bool:
    """``/ui/...``, or a tenant's ``/clusters/<tenant>/ui/...`` (the page then calls that tenant's APIs)."""
    inner = split_tenant(path)[1]
    return inner == PREFIX or inner.startswith(PREFIX + "/")


@functools.cache
def _file(name: str) -> bytes:
    return resources.files("gateway").joinpath("ui", name).read_bytes()


def response(path: str, method: str) -> Response:
    """The page's files; ``/ui`` redirects to ``/ui/`` (the page's links are relative)."""
    if method not in ("GET", "HEAD"):
        raise MethodNotAllowed(f"the server does not allow this method on the requested resource: {method}")
    inner = split_tenant(path)[1]
    if inner == PREFIX:
        r = Response(b"", 301)
        r.headers["Location"] = path + "/"
        return r
    name = inner[len(PREFIX) + 1:] or "index.html"
    if name not in _TYPES:
        raise NotFound("the server could not find the requested resource")
    r = Response(_file(name), 200, content_type=_TYPES[name])
    r.headers["Content-Security-Policy"] = CSP
    r.headers["X-Content-Type-Options"] = "nosniff"
    r.headers["X-Frame-Options"] = "DENY"
    r.headers["Referrer-Policy"] = "no-referrer"
    r.headers["Cache-Control"] = "no-cache"
    return r
