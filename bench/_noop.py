"""C1: the HTTP ceiling, a no-op ASGI app on hypercorn's trio worker.

Same transport and worker count as jetkube's gateway: one process, hypercorn ``serve`` under trio,
plain HTTP/1.1 on loopback, keep-alive, no access log. Every request's body is read to the end
(the gateway reads it too) and the answer is a fixed ~300-byte JSON body.

Run as ``python -m bench._noop PORT_FILE``: binds 127.0.0.1 on a free port and writes the port there.
``--quart`` serves the same body from a quart-trio app instead (informational: the framework's share).
``--big FILE`` answers every request with that file's bytes instead (B4's transfer floor: what it
costs hypercorn and the client to move a LIST body of that size, with nothing to build).
``--workers N`` (M1/M2's ceiling): N processes of the same no-op on hypercorn's trio worker, each
listening on one port with a socket of its own (SO_REUSEPORT), as ``jetkube serve --workers N`` does.
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


def _listener(port: int, *, listen: bool) -> Any:
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    if listen:
        sock.listen(2048)
    return sock


def main_workers(port_file: str, workers: int) -> None:
    """N worker processes, each with its own listening socket on one port (SO_REUSEPORT), as
    ``jetkube serve --workers N`` runs them: the port is reserved here (bound, never listening), and
    written to ``port_file`` once every worker listens. The workers end with this process."""
    import os
    import signal

    from bus import spawn_bound

    reserve = _listener(0, listen=False)
    port = reserve.getsockname()[1]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # the workers get SIGTERM as this exits
    for _ in range(workers):
        r, w = os.pipe()
        spawn_bound([sys.executable, "-m", "bench._noop", port_file, "--worker", str(port), str(w)], pass_fds=(w,))
        os.close(w)
        with os.fdopen(r, "rb") as ready:
            if not ready.readline():
                raise SystemExit("bench._noop: a worker exited before it listened")
    Path(port_file).write_text(str(port))
    signal.pause()


async def main_worker(port: int, ready_fd: int) -> None:
    config = Config()
    config.bind = [f"fd://{_listener(port, listen=True).detach()}"]
    config.keep_alive_timeout = 75
    config.accesslog = None
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: serve(app, config, task_status=task_status))  # type: ignore
        import os
        os.write(ready_fd, b"ready\n")
        os.close(ready_fd)


if __name__ == "__main__":
    if "--worker" in sys.argv:
        i = sys.argv.index("--worker")
        trio.run(main_worker, int(sys.argv[i + 1]), int(sys.argv[i + 2]))
        sys.exit(0)
    if "--workers" in sys.argv:
        main_workers(sys.argv[1], int(sys.argv[sys.argv.index("--workers") + 1]))
        sys.exit(0)
    if "--big" in sys.argv:
        _BIG.append(Path(sys.argv[sys.argv.index("--big") + 1]).read_bytes())
    trio.run(main, sys.argv[1], "--quart" in sys.argv[2:])
