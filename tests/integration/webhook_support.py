"""A real admission webhook server for tests: hypercorn on trio, TLS from a CA of the test's own.

Each path answers the AdmissionReview it gets in one way: ``/allow``, ``/deny`` (403 with a
message), ``/deny-nocode`` (no status), ``/patch`` (adds a label), ``/patch-junk`` (adds an unknown field), ``/warn`` (allowed with a
warning), ``/slow`` (answers after ``slow_s``), ``/crash`` (HTTP 500), ``/badjson``, ``/annotate`` (allowed with
audit annotations, one of them with a key that is not a qualified name). Every review
received is kept in ``reviews`` (path, request) for the test to look at.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from gateway._pki import ensure_pki


@dataclass
class WebhookServer:
    url: str
    ca_bundle: str
    reviews: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    slow_s: float = 5.0

    def client_config(self, path: str) -> dict[str, Any]:
        return {"url": self.url + path, "caBundle": self.ca_bundle}

    def calls(self, path: str) -> list[dict[str, Any]]:
        return [r for p, r in self.reviews if p == path]


def _answer(path: str, request: dict[str, Any], label: str) -> dict[str, Any] | None:
    resp: dict[str, Any] = {"uid": request["uid"], "allowed": True}
    if path == "/deny":
        resp = {"uid": request["uid"], "allowed": False,
                "status": {"code": 403, "reason": "Forbidden", "message": "no pods named bad"}}
    elif path == "/deny-nocode":
        resp = {"uid": request["uid"], "allowed": False}
    elif path == "/patch-junk":
        resp["patchType"] = "JSONPatch"
        resp["patch"] = base64.b64encode(json.dumps([{"op": "add", "path": "/spec/junk", "value": 1}]).encode()).decode()
    elif path.startswith("/patch"):
        obj = request.get("object") or {}
        ops: list[dict[str, Any]] = []
        if "labels" not in obj.get("metadata", {}):
            ops.append({"op": "add", "path": "/metadata/labels", "value": {}})
        ops.append({"op": "add", "path": f"/metadata/labels/{label}", "value": "yes"})
        resp["patchType"] = "JSONPatch"
        resp["patch"] = base64.b64encode(json.dumps(ops).encode()).decode()
    elif path == "/warn":
        resp["warnings"] = ["this object is watched"]
    elif path == "/annotate":
        resp["auditAnnotations"] = {"checked": f"name={request.get('name', '')}", "not a key!": "dropped"}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": resp}


async def serve_tls(nursery: trio.Nursery, app: Any, pki: Any) -> int:
    """Serve a test's ASGI ``app`` over TLS with ``pki``'s certificate on a free loopback port
    (hypercorn on trio, in ``nursery``); returns the port."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.certfile, config.keyfile = str(pki.cert), str(pki.key)
    config.accesslog = config.errorlog = None
    binds = await nursery.start(serve, app, config)
    return int(binds[0].rsplit(":", 1)[1])


async def request_body(scope: dict[str, Any], receive: Any, send: Any) -> bytes | None:
    """For a bare ASGI test server: the request's whole body, or None once a lifespan scope
    (hypercorn's startup and shutdown) has been answered."""
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return None
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            return body


async def start_webhook_server(nursery: trio.Nursery, tmp: Path) -> WebhookServer:
    pki = ensure_pki(tmp / "webhook-pki")
    ca_bundle = base64.b64encode(pki.ca_cert.read_bytes()).decode()
    server: WebhookServer

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = await request_body(scope, receive, send)
        if body is None:
            return
        path = scope["path"]
        review = json.loads(body)
        server.reviews.append((path, review["request"]))
        status, out = 200, b""
        if path == "/slow":
            await trio.sleep(server.slow_s)
        if path == "/crash":
            status, out = 500, b"boom"
        elif path == "/badjson":
            out = b"{not json"
        else:
            label = path.removeprefix("/patch-") if path.startswith("/patch-") else "patched"
            out = json.dumps(_answer(path, review["request"], label)).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": out})

    port = await serve_tls(nursery, app, pki)
    server = WebhookServer(url=f"https://127.0.0.1:{port}", ca_bundle=ca_bundle)
    return server


async def _serve_forever(tmp: Path) -> None:
    async with trio.open_nursery() as nursery:
        wh = await start_webhook_server(nursery, tmp)
        print(json.dumps({"url": wh.url, "ca_bundle": wh.ca_bundle}), flush=True)


if __name__ == "__main__":
    # ``python -m tests.integration.webhook_support DIR``: the server in a process of its own (the
    # benchmark's B1A), its URL and CA bundle as one JSON line on stdout.
    import sys

    trio.run(_serve_forever, Path(sys.argv[1]))
