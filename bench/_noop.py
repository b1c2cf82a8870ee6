"""C1: the HTTP ceiling, a no-op ASGI app on hypercorn's trio worker.

Same transport and worker count as jetkube's gateway: one process, hypercorn ``serve`` under trio,
plain HTTP/1.1 on loopback, keep-alive, no access log. Every request's body is read to the end
(the gateway reads it too) and the answer is a fixed ~300-byte JSON body.

Run as ``python -m bench._noop PORT_FILE``: binds 127.0.0.1 on a free port and writes the port there.
``--quart`` serves the same body from a quart-trio app instead (informational: the framework's share).
``--big FILE`` answers every request with that file's bytes instead (B4's transfer floor: what it
costs hypercorn and the client to move a LIST body of that size, with nothing to build).
``--workers N`` (M1/M2's ceiling): hypercorn's own N trio worker processes (``hypercorn.run``), on
one socket bound here and handed to them, as ``jetkube serve --workers N`` does.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

BODY = (b'{"kind":"ConfigMap","apiVersion":"v1","metadata":{"resourceVersion":"123456","name":"bench-object-0001",'
        b'"namespace":"bench","uid":"5c9b495f-3ade-43d9-8b79-568e3975b4d5","creationTimestamp":'
        b'"2026-11-27T15:30:41Z"},"data":{"key-1":"value-1","key-2":"value-2","key-3":"value-3",'
        b'"key-4":"value-4","key-5":"value-5xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}')
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


_BIG: list[bytes] = []


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            if m["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif m["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:
        m = await receive()
        more = m.get("more_body", False)
    if _BIG:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(_BIG[0])).encode())]})
        await send({"type": "http.response.body", "body": _BIG[0]})
        return
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def quart_app() -> Any:
    from quart import Response, request
    from quart_trio import QuartTrio

    q = QuartTrio("noop")

    @q.route("/", defaults={"path": ""}, methods=["GET", "POST", "PUT"])
    @q.route("/<path:path>", methods=["GET", "POST", "PUT"])
    async def handle(path: str) -> Response:
        await request.get_data(cache=False)
        return Response(BODY, status=200, content_type="application/json")

    return q


async def main(port_file: str, use_quart: bool) -> None:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.keep_alive_timeout = 75
    config.accesslog = None
    target = quart_app() if use_quart else app
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(lambda task_status: serve(target, config, task_status=task_status))  # type: ignore
        port = binds[0].rsplit(":", 1)[1]
        Path(port_file).write_text(port)


def main_workers(port_file: str, workers: int) -> None:
    import socket

    from hypercorn.run import run

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    sock.set_inheritable(True)
    config = Config()
    config.bind = [f"fd://{sock.fileno()}"]
    config.keep_alive_timeout = 75
    config.accesslog = None
    config.workers = workers
    config.worker_class = "trio"
    config.application_path = "bench._noop:app"
    Path(port_file).write_text(str(sock.getsockname()[1]))
    run(config)


if __name__ == "__main__":
    if "--workers" in sys.argv:
        main_workers(sys.argv[1], int(sys.argv[sys.argv.index("--workers") + 1]))
        sys.exit(0)
    if "--big" in sys.argv:
        _BIG.append(Path(sys.argv[sys.argv.index("--big") + 1]).read_bytes())
    trio.run(main, sys.argv[1], "--quart" in sys.argv[2:])
