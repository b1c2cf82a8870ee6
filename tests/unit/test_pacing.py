"""Issue 10, B12: the pacing of rejected connections (gateway/_pacing.py) and the batch accept
(gateway/_hypercorn_ext.BatchAcceptListener): the pacer alone on trio's autojump clock, then both in
hypercorn on loopback sockets."""

from __future__ import annotations

import socket
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing
from hypercorn.trio import serve

from gateway import _hypercorn_ext as ext
from gateway._pacing import RejectPacer, first_request_key, pace_key, request_target


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)



def _config(keep_alive_timeout: float | None = None) -> ext.ClientCertConfig:
    """hypercorn's config as the gateway's (the extension installed) on a free loopback port, quiet."""
    ext.install()
    config = ext.ClientCertConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = config.errorlog = None
    if keep_alive_timeout is not None:
        config.keep_alive_timeout = keep_alive_timeout
    return config


async def _start(nursery: trio.Nursery, app: Any, config: ext.ClientCertConfig, stop: trio.Event) -> int:
    """Serve ``app`` in ``nursery`` until ``stop``; its port."""
    binds = await nursery.start(partial(serve, app, config, shutdown_trigger=stop.wait))
    return int(binds[0].rsplit(":", 1)[1])

async def test_slots_per_flow_then_fifo(autojump_clock: trio.testing.MockClock) -> None:
    pacer = RejectPacer(slots=2)
    order: list[int] = []
    held: dict[int, trio.Event] = {}

    async def conn(i: int, key: str) -> None:
        await pacer.acquire(key)
        order.append(i)
        held[i] = trio.Event()
        await held[i].wait()
        pacer.release(key)

    async with trio.open_nursery() as n:
        for i in range(6):
            n.start_soon(conn, i, "a")
            await trio.sleep(0.001)  # arrival order
        n.start_soon(conn, 100, "b")  # another flow: its own slots, whatever a's queue
        await trio.testing.wait_all_tasks_blocked()
        assert order == [0, 1, 100]
        assert pacer.busy("a") == 2 and pacer.waiting("a") == 4 and pacer.waiting("b") == 0
        held[1].set()
        await trio.testing.wait_all_tasks_blocked()
        assert order == [0, 1, 100, 2]  # the slot handed to the first waiter
        for i in (0, 2, 3, 4, 5, 100):
            held[i].set()
            await trio.testing.wait_all_tasks_blocked()
    assert order == [0, 1, 100, 2, 3, 4, 5]
    assert pacer.paced == 4 and pacer.admitted == 7
    assert pacer._flows == {}  # nothing kept for idle flows


async def test_cancelled_waiter_leaves_the_queue(autojump_clock: trio.testing.MockClock) -> None:
    pacer = RejectPacer(slots=1)
    await pacer.acquire("k")
    got: list[str] = []

    async def wait(name: str) -> None:
        await pacer.acquire("k")
        got.append(name)

    async with trio.open_nursery() as n:
        with trio.move_on_after(1):
            await wait("x")  # gives up (the connection closed while it waited)
        assert pacer.waiting("k") == 0 and pacer.busy("k") == 1
        n.start_soon(wait, "y")
        await trio.testing.wait_all_tasks_blocked()
        pacer.release("k")
        await trio.testing.wait_all_tasks_blocked()
        assert got == ["y"]
        pacer.release("k")
    assert pacer._flows == {}
    pacer.release("k")  # a stray release of an idle flow does nothing


async def test_slot_handed_to_a_waiter_cancelled_meanwhile_stays_its_own(autojump_clock: trio.testing.MockClock) -> None:
    pacer = RejectPacer(slots=1)
    await pacer.acquire("k")
    got: list[str] = []

    async def wait(name: str) -> None:
        await pacer.acquire("k")
        got.append(name)

    async with trio.open_nursery() as n:
        with trio.CancelScope() as first:
            async with trio.open_nursery() as inner:
                inner.start_soon(wait, "first")
                await trio.testing.wait_all_tasks_blocked()
                n.start_soon(wait, "second")
                await trio.testing.wait_all_tasks_blocked()
                pacer.release("k")  # handed to "first" ...
                first.cancel()  # ... cancelled before it resumes: trio still completes its wait
        await trio.testing.wait_all_tasks_blocked()
        assert got == ["first"] and pacer.busy("k") == 1 and pacer.waiting("k") == 1
        pacer.release("k")  # (the read loop gives it back as the connection ends)
        await trio.testing.wait_all_tasks_blocked()
        assert got == ["first", "second"]
        pacer.release("k")
    assert pacer._flows == {}


def test_hypercorn_listens_through_the_batch_accept() -> None:
    import hypercorn.trio.run

    ext.install()
    assert hypercorn.trio.run.trio.SocketListener is ext.BatchAcceptListener
    assert hypercorn.trio.run.trio.serve_listeners is trio.serve_listeners  # everything else is trio's


async def test_batch_accept_hands_out_queued_connections_without_checkpoints() -> None:
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    listener = ext.BatchAcceptListener(sock)
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(10)]
    try:
        first = await listener.accept()  # waits for readability, then takes the whole queue
        streams = [first]
        with trio.testing.assert_no_checkpoints():
            for _ in range(9):
                streams.append(await listener.accept())
        for i, c in enumerate(clients):
            c.sendall(b"%d" % i)
        got = sorted([int(await s.receive_some(10)) for s in streams])
        assert got == list(range(10))
        for s in streams:
            await s.aclose()
        late = socket.create_connection(("127.0.0.1", port))
        clients.append(late)
        with trio.fail_after(5):
            (await listener.accept()).socket.close()
        clients.append(socket.create_connection(("127.0.0.1", port)))
    finally:
        await listener.aclose()
        for c in clients:
            c.close()
    with pytest.raises(trio.ClosedResourceError):
        await listener.accept()


async def _app(state: dict[str, Any], scope: Any, receive: Any, send: Any) -> None:
    """429 (Retry-After) for .../flood, a held 200 for ...?hold, 200 for anything else."""
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            await send({"type": m["type"] + ".complete"})
            if m["type"] == "lifespan.shutdown":
                return
    scope[ext.PACE_KEY] = pace_key(scope["path"])  # as the gate (gateway/_gate.py)
    path, hold = scope["path"], scope["query_string"] in (b"hold", b"queue")
    if scope["query_string"] == b"queue":  # as the gate, for a request going on to flow control's queues
        scope[ext.PACE_RELEASE]()
    if path.endswith("/flood") and not hold:
        await send({"type": "http.response.start", "status": 429, "headers": [
            (b"content-length", b"2"), (b"retry-after", b"3")]})
        await send({"type": "http.response.body", "body": b"no"})
        return
    if hold:
        state["in_app"] += 1
        state["max_in_app"] = max(state["max_in_app"], state["in_app"])
        await state["go"].wait()
        state["in_app"] -= 1
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _flood_app(replay: Any) -> Any:
    """``_app``, with ``replay`` left in the scope of every request to a path ending in /flood (as
    the gate leaves a replay after its 429)."""
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/flood"):
            scope[ext.PACE_REPLAY] = replay
        return await _app({}, scope, receive, send)

    return app


async def _send_429(send: Any) -> bool:
    """A replay's whole answer: a 429 with Retry-After and a two-byte body."""
    await send({"type": "http.response.start", "status": 429, "headers": [
        (b"content-length", b"2"), (b"retry-after", b"3")]})
    await send({"type": "http.response.body", "body": b"no"})
    return True


async def _exchange(stream: trio.SocketStream, path: str) -> int:
    await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf or not buf.endswith((b"no", b"ok")):
        chunk = await stream.receive_some(4096)
        assert chunk
        buf += chunk
    return int(buf.split(b" ", 2)[1])


async def _poll(pred: Any) -> None:
    with trio.fail_after(10):
        while not pred():
            await trio.sleep(0.01)


def test_flow_of_a_request() -> None:
    """The pacing flow is the tenant flow control charges (``/clusters/*/`` is root's), from the
    decoded path as routed; the probes have none (never paced)."""
    assert pace_key("/clusters/t1/api/v1/pods") == pace_key("/clusters/t1") == "t1"
    assert pace_key("/api/v1/pods") == pace_key("/clusters/*/api/v1/pods") == pace_key("/") == "root"
    assert pace_key("/healthzx") == "root"
    for probe in ("/healthz", "/readyz", "/livez", "/readyz/ping", "/livez/", "/clusters/t1/healthz"):
        assert pace_key(probe) is None
    assert request_target(b"GET /clusters/a/x HTTP/1.1\r\nHost: h\r\n") == b"/clusters/a/x"
    assert request_target(b"GET /clusters/a/x") is None  # the line not whole yet: not paced
    assert first_request_key(b"GET /%63lusters/t1/api/v1/pods?x=/clusters/t2 HTTP/1.1\r\n") == "t1"
    assert first_request_key(b"GET /clusters/%2A/api/v1/pods HTTP/1.1\r\n") == "root"
    assert first_request_key(b"GET /%68ealthz HTTP/1.1\r\n") is None
    assert first_request_key(b"GET http://h/clusters/t1/ HTTP/1.1\r\n") is None
    assert first_request_key(b"GET * HTTP/1.1\r\n") is None


async def test_rejected_connections_are_paced_in_hypercorn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Six connections of tenant a answered 429 send their next request at once: two reach the app
    (a's slots), four wait unread until a slot is free; a new connection of a waits too (its first
    request is a's), while a new connection of tenant b is served at once and is never paced. A
    response's start frees the slot; a connection answered 200 is not paced next."""
    monkeypatch.setattr(ext, "HOLD_S", 60.0)
    config = _config()
    state: dict[str, Any] = {"in_app": 0, "max_in_app": 0, "go": trio.Event()}
    stop = trio.Event()
    a = "a"
    async with trio.open_nursery() as n:
        port = await _start(n, partial(_app, state), config, stop)
        streams = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(6)]
        for s in streams:
            assert await _exchange(s, "/clusters/a/flood") == 429
        assert not config.pacer.active(a)  # nothing paced until a rejected connection sends again
        codes: list[int] = []

        async def send(s: trio.SocketStream, path: str) -> None:
            codes.append(await _exchange(s, path))

        async with trio.open_nursery() as m:
            for s in streams:
                m.start_soon(send, s, "/clusters/a/x?hold")
            await _poll(lambda: config.pacer.waiting(a) == 4 and state["in_app"] == 2)
            fresh = await trio.open_tcp_stream("127.0.0.1", port)
            m.start_soon(send, fresh, "/clusters/a/new")
            await _poll(lambda: config.pacer.waiting(a) == 5)
            quiet = await trio.open_tcp_stream("127.0.0.1", port)
            with trio.fail_after(5):
                assert await _exchange(quiet, "/clusters/b/quiet") == 200
                assert await _exchange(quiet, "/clusters/b/quiet") == 200
            assert state["in_app"] == 2 and config.pacer.waiting(a) == 5
            state["go"].set()
        assert sorted(codes) == [200] * 7 and state["max_in_app"] == 2
        assert config.pacer.paced == 5
        assert await _exchange(streams[0], "/clusters/a/x") == 200  # answered 200 before: not paced
        assert config.pacer.paced == 5 and config.pacer._flows == {}
        for s in (*streams, fresh, quiet):
            await s.aclose()
        stop.set()


async def test_a_slot_held_too_long_is_taken_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two rejected connections whose next requests stay in the app (a slow answer, or a request
    dribbled in) lose their slots after HOLD_S: a third one of the tenant gets in meanwhile."""
    monkeypatch.setattr(ext, "HOLD_S", 0.3)
    config = _config()
    state: dict[str, Any] = {"in_app": 0, "max_in_app": 0, "go": trio.Event()}
    stop = trio.Event()
    async with trio.open_nursery() as n:
        port = await _start(n, partial(_app, state), config, stop)
        streams = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(3)]
        for s in streams:
            assert await _exchange(s, "/clusters/a/flood") == 429

        async def held(s: trio.SocketStream) -> None:
            assert await _exchange(s, "/clusters/a/x?hold") == 200

        async with trio.open_nursery() as m:
            for s in streams[:2]:
                m.start_soon(held, s)
            await _poll(lambda: state["in_app"] == 2)
            t0 = trio.current_time()
            m.start_soon(held, streams[2])
            await _poll(lambda: state["in_app"] == 3)
            assert trio.current_time() - t0 >= 0.1  # it waited for a slot to be taken back
            assert config.pacer.paced == 1
            state["go"].set()
        for s in streams:
            await s.aclose()
        stop.set()


async def test_a_paced_request_going_on_to_the_queues_gives_its_slot_back() -> None:
    """The app gives a paced request's slot back (``PACE_RELEASE``) when it will not reject it at
    once: rejected connections whose next requests wait in the app (flow control's queues) do not
    hold the tenant's slots, so all of them get there."""
    config = _config()
    state: dict[str, Any] = {"in_app": 0, "max_in_app": 0, "go": trio.Event()}
    stop = trio.Event()
    async with trio.open_nursery() as n:
        port = await _start(n, partial(_app, state), config, stop)
        streams = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(5)]
        for s in streams:
            assert await _exchange(s, "/clusters/a/flood") == 429

        async def queued(s: trio.SocketStream) -> None:
            assert await _exchange(s, "/clusters/a/x?queue") == 200

        async with trio.open_nursery() as m:
            for s in streams:
                m.start_soon(queued, s)
            await _poll(lambda: state["in_app"] == 5)
            assert config.pacer.busy("a") == 0
            state["go"].set()
        for s in streams:
            await s.aclose()
        stop.set()


async def test_idle_keep_alive_closed_by_one_task_per_connection() -> None:
    """A keep-alive connection idle for keep_alive_timeout is closed; one busy longer than that is
    not, and is closed that long after its answer; requests on a connection start no task of the
    idle timer's (hypercorn started one per idle period)."""
    config = _config(keep_alive_timeout=0.5)
    state: dict[str, Any] = {"in_app": 0, "max_in_app": 0, "go": trio.Event()}
    stop = trio.Event()
    async with trio.open_nursery() as n:
        port = await _start(n, partial(_app, state), config, stop)
        s = await trio.open_tcp_stream("127.0.0.1", port)
        assert await _exchange(s, "/x") == 200
        await trio.testing.wait_all_tasks_blocked()  # the server done with the answer (in this run)

        class Spawns(trio.abc.Instrument):
            n = 0

            def task_spawned(self, task: trio.lowlevel.Task) -> None:
                Spawns.n += 1

        spawns = Spawns()
        trio.lowlevel.add_instrument(spawns)
        for _ in range(20):
            assert await _exchange(s, "/x") == 200
        trio.lowlevel.remove_instrument(spawns)
        assert Spawns.n == 20  # the app's task of each request, nothing else
        t0 = trio.current_time()
        with trio.fail_after(5):
            assert await s.receive_some(10) == b""  # closed by the server when idle 0.5 s
        assert 0.4 <= trio.current_time() - t0 < 3
        busy = await trio.open_tcp_stream("127.0.0.1", port)
        codes: list[int] = []

        async def held() -> None:
            codes.append(await _exchange(busy, "/x?hold"))

        async with trio.open_nursery() as m:
            m.start_soon(held)
            await trio.sleep(1.0)  # busy twice the keep-alive timeout: kept
            state["go"].set()
        assert codes == [200]
        t0 = trio.current_time()
        with trio.fail_after(5):
            assert await busy.receive_some(10) == b""
        assert 0.4 <= trio.current_time() - t0 < 3
        await s.aclose()
        await busy.aclose()
        stop.set()


def _connection_tasks() -> list[str]:
    """The names of the running tasks of hypercorn's connections (trio's handler task of each, and
    the idle timer's)."""
    names: list[str] = []

    def walk(task: trio.lowlevel.Task) -> None:
        if task.name.endswith(("._run_handler", "._idle_timeout")):
            names.append(task.name.rsplit(".", 1)[1])
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child)

    walk(trio.lowlevel.current_root_task())
    return names


async def test_a_connection_closed_by_its_client_mid_request_leaves_no_task() -> None:
    """Review finding 1: clients that close while their request is in the app get no
    ``Updated(idle=True)``; the connection's idle-timer task must still end, and with it the
    connection's task (hypercorn's task group waits for its children)."""
    config = _config(keep_alive_timeout=0.2)
    disconnected: list[int] = []
    entered_n: list[int] = []
    entered = trio.Event()
    stop = trio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await _app({}, scope, receive, send)
        await receive()  # the request (no body)
        entered_n.append(1)
        if len(entered_n) == 3:
            entered.set()
        while (await receive())["type"] != "http.disconnect":
            pass
        disconnected.append(1)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            port = await _start(n, app, config, stop)
            clients = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(3)]
            for c in clients:
                await c.send_all(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
            await entered.wait()
            assert len(_connection_tasks()) == 6  # three connections: a handler and an idle timer each
            for c in clients:
                await c.aclose()
            # Every connection task ends (the keep-alive timeout is 0.2 s; the bound is 50 times that).
            with trio.fail_after(5):
                while _connection_tasks() or len(disconnected) < 3:
                    await trio.sleep(0.01)
            stop.set()


async def test_a_paced_connection_sending_part_of_a_head_is_closed_when_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Review finding 2 (slowloris): rejected connections whose next request is paced, and which
    then send only part of a request head, are closed by the keep-alive timer as an unpaced
    connection is: waiting for a slot does not count as idle, the bytes after it do until a head
    is complete."""
    monkeypatch.setattr(ext, "HOLD_S", 0.2)
    config = _config(keep_alive_timeout=0.3)
    state: dict[str, Any] = {"in_app": 0, "max_in_app": 0, "go": trio.Event()}
    stop = trio.Event()
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            port = await _start(n, partial(_app, state), config, stop)
            streams = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(3)]
            for s in streams:
                assert await _exchange(s, "/clusters/a/flood") == 429
            unpaced = await trio.open_tcp_stream("127.0.0.1", port)
            for s in streams:
                await s.send_all(b"GET /clusters/a/x HTTP/1.1\r\nHost: x\r\n")  # no blank line: never complete
            await unpaced.send_all(b"GET /clusters/b/x HTTP/1.1\r\nHost: x\r\n")  # (another tenant's)
            await _poll(lambda: config.pacer.paced == 1)  # two got a's slots, the third waits
            closed: list[trio.SocketStream] = []

            async def until_closed(s: trio.SocketStream) -> None:
                while await s.receive_some(100):
                    pass
                closed.append(s)

            with trio.fail_after(5):  # 0.3 s keep-alive, 0.2 s per slot: 5 s is a bound, not a pace
                async with trio.open_nursery() as m:
                    for s in (*streams, unpaced):
                        m.start_soon(until_closed, s)
            assert len(closed) == 4 and state["in_app"] == 0
            assert config.pacer._flows == {}
            for s in (*streams, unpaced):
                await s.aclose()
            stop.set()


async def test_the_pacing_flow_is_the_routed_tenant_and_probes_are_never_paced(monkeypatch: pytest.MonkeyPatch) -> None:
    """Review finding 3: connections rejected on a percent-encoded tenant path (routed to tenant a)
    are paced as a's, and so is a new connection's first request to a's encoded path; a probe's
    first request is never paced, whichever tenant is."""
    monkeypatch.setattr(ext, "HOLD_S", 60.0)
    config = _config()
    state: dict[str, Any] = {"in_app": 0, "max_in_app": 0, "go": trio.Event()}
    stop = trio.Event()
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            port = await _start(n, partial(_app, state), config, stop)
            streams = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(3)]
            for s in streams:
                assert await _exchange(s, "/%63lusters/a/flood") == 429

            async def held(s: trio.SocketStream, path: str) -> None:
                assert await _exchange(s, path) == 200

            async with trio.open_nursery() as m:
                for s in streams:
                    m.start_soon(held, s, "/%63lusters/a/x?hold")
                await _poll(lambda: config.pacer.waiting("a") == 1 and state["in_app"] == 2)
                assert config.pacer.waiting() == 1  # nothing under root's flow
                fresh = await trio.open_tcp_stream("127.0.0.1", port)
                m.start_soon(held, fresh, "/clusters/%61/new")
                await _poll(lambda: config.pacer.waiting("a") == 2)
                for probe in ("/%63lusters/a/healthz", "/clusters/a/readyz", "/livez"):
                    p = await trio.open_tcp_stream("127.0.0.1", port)
                    with trio.fail_after(5):
                        assert await _exchange(p, probe) == 200
                    await p.aclose()
                assert config.pacer.waiting("a") == 2 and state["in_app"] == 2
                state["go"].set()
            for s in (*streams, fresh):
                await s.aclose()
            stop.set()


async def test_the_gate_names_the_pacing_flow_of_every_request() -> None:
    """The gate (in front of the fast path and Quart) puts the flow control tenant of each HTTP
    request into its scope (``PACE_KEY``), the key a 429 paces the connection by."""
    from types import SimpleNamespace

    from gateway._gate import Gate

    seen: list[Any] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope.get(ext.PACE_KEY, "unset"))

    ctx = SimpleNamespace(pipeline=SimpleNamespace(flow_control=SimpleNamespace(rejecting=lambda: False)), audit=None)
    gate = Gate(ctx, inner)
    for path in ("/clusters/acme/api/v1/pods", "/clusters/*/api/v1/pods", "/api/v1/pods", "/healthz", "/clusters/acme/livez"):
        await gate({"type": "http", "method": "GET", "path": path}, None, None)
    await gate({"type": "websocket", "path": "/clusters/acme/api/v1/pods"}, None, None)
    assert seen == ["acme", "root", "root", None, None, "unset"]


async def test_the_gate_gives_a_paced_slot_back_whenever_it_passes_a_request_on() -> None:
    """Review finding 8: the gate takes a paced request's ``PACE_RELEASE`` out of the scope and calls
    it before the app, on every way to the app (flow control not rejecting, the audit webhook's
    blocking modes, a request it does not decide)."""
    from types import SimpleNamespace

    from gateway._gate import Gate

    passed: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        assert ext.PACE_RELEASE not in scope
        passed.append(scope["path"])

    for rejecting, blocking in ((False, None), (True, "blocking"), (True, None)):
        released: list[int] = []
        audit = SimpleNamespace(blocking=blocking)
        ctx = SimpleNamespace(pipeline=SimpleNamespace(flow_control=SimpleNamespace(rejecting=lambda r=rejecting: r)),
                              audit=audit)
        scope = {"type": "http", "method": "GET", "path": "/healthz", "headers": [],
                 ext.PACE_RELEASE: partial(released.append, 1)}  # (/healthz: the gate leaves it to the app)
        await Gate(ctx, inner)(scope, None, None)
        assert released == [1], (rejecting, blocking)
    assert passed == ["/healthz"] * 3


async def test_batch_accept_yields_under_a_steady_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """Review finding 6: when every refill finds connections queued (a steady stream), accept still
    checks for cancellation at each refill and yields to the run queue every REFILLS_PER_YIELD."""
    monkeypatch.setattr(ext, "ACCEPT_BATCH", 1)  # every accept a refill
    monkeypatch.setattr(ext, "REFILLS_PER_YIELD", 4)
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    listener = ext.BatchAcceptListener(sock)
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(10)]
    streams: list[trio.SocketStream] = []
    try:
        with trio.fail_after(5):
            streams.append(await listener.accept())  # (the first may wait for readability)
        with trio.CancelScope() as cancelled:
            cancelled.cancel()
            streams.append(await listener.accept())
        assert cancelled.cancelled_caught and len(streams) == 1  # connections queued, none handed out
        with trio.testing.assert_checkpoints():
            for _ in range(4):  # four refills finding a connection each: one yield
                streams.append(await listener.accept())
        assert len(streams) == 5
    finally:
        for s in streams:
            await s.aclose()
        await listener.aclose()
        for c in clients:
            c.close()


async def test_a_connection_waiting_for_a_slot_is_not_closed_as_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rejected connection whose whole next request waits for a slot longer than the keep-alive
    timeout is not closed meanwhile (its bytes are read, not yet parsed), and is served."""
    monkeypatch.setattr(ext, "HOLD_S", 60.0)
    config = _config(keep_alive_timeout=0.2)
    state: dict[str, Any] = {"in_app": 0, "max_in_app": 0, "go": trio.Event()}
    stop = trio.Event()
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            port = await _start(n, partial(_app, state), config, stop)
            streams = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(3)]
            for s in streams:
                assert await _exchange(s, "/clusters/a/flood") == 429
            codes: list[int] = []

            async def send(s: trio.SocketStream) -> None:
                codes.append(await _exchange(s, "/clusters/a/x?hold"))

            async with trio.open_nursery() as m:
                for s in streams:
                    m.start_soon(send, s)
                await _poll(lambda: config.pacer.waiting("a") == 1 and state["in_app"] == 2)
                t0 = trio.current_time()
                await _poll(lambda: trio.current_time() - t0 > 1.0)  # five keep-alive timeouts in the queue
                assert config.pacer.waiting("a") == 1
                state["go"].set()
            assert codes == [200, 200, 200]
            for s in streams:
                await s.aclose()
            stop.set()


async def test_the_pacer_knows_the_addresses_of_a_flows_connections(autojump_clock: trio.testing.MockClock) -> None:
    pacer = RejectPacer(slots=1)
    await pacer.acquire("k", "10.0.0.1")
    async with trio.open_nursery() as n:
        n.start_soon(pacer.acquire, "k", "10.0.0.2")
        await trio.testing.wait_all_tasks_blocked()
        assert pacer.active("k") and pacer.active("k", "10.0.0.1") and pacer.active("k", "10.0.0.2")
        assert not pacer.active("k", "10.0.0.3") and not pacer.active("j", "10.0.0.1")
        pacer.release("k", "10.0.0.1")  # handed to 10.0.0.2's connection
    assert not pacer.active("k", "10.0.0.1") and pacer.active("k", "10.0.0.2")
    with trio.move_on_after(1):
        await pacer.acquire("k", "10.0.0.3")  # gives up waiting
    assert not pacer.active("k", "10.0.0.3")
    pacer.release("k", "10.0.0.2")
    assert pacer._flows == {}


async def test_a_first_request_is_paced_only_from_an_address_being_paced(monkeypatch: pytest.MonkeyPatch) -> None:
    """Review finding 3 (b): while tenant a's rejected connections from 127.0.0.1 are paced, a new
    connection's first request for a waits if it comes from 127.0.0.1 too (the flood reconnecting),
    and is read at once from another address (a client flow control has not rejected cannot queue
    in a's FIFO, nor take its slots)."""
    monkeypatch.setattr(ext, "HOLD_S", 60.0)
    config = _config()
    state: dict[str, Any] = {"in_app": 0, "max_in_app": 0, "go": trio.Event()}
    stop = trio.Event()
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            port = await _start(n, partial(_app, state), config, stop)
            streams = [await trio.open_tcp_stream("127.0.0.1", port, local_address="127.0.0.1") for _ in range(3)]
            for s in streams:
                assert await _exchange(s, "/clusters/a/flood") == 429

            async def held(s: trio.SocketStream, path: str) -> None:
                assert await _exchange(s, path) == 200

            async with trio.open_nursery() as m:
                for s in streams:
                    m.start_soon(held, s, "/clusters/a/x?hold")
                await _poll(lambda: config.pacer.waiting("a") == 1 and state["in_app"] == 2)
                same = await trio.open_tcp_stream("127.0.0.1", port, local_address="127.0.0.1")
                m.start_soon(held, same, "/clusters/a/new")
                await _poll(lambda: config.pacer.waiting("a") == 2)
                other = await trio.open_tcp_stream("127.0.0.1", port, local_address="127.0.0.2")
                with trio.fail_after(5):
                    assert await _exchange(other, "/clusters/a/other") == 200
                assert config.pacer.waiting("a") == 2 and config.pacer.paced == 2
                state["go"].set()
            for s in (*streams, same, other):
                await s.aclose()
            stop.set()


async def test_the_same_rejected_request_again_is_answered_before_it_is_parsed() -> None:
    """After a 429 whose scope carries :data:`ext.PACE_REPLAY` (the gate's), the same bytes again on
    that connection are handed to the replay, not to h11 and the app: the 429 written by the server
    (status line with its phrase, the app's headers, Date, the body) and the connection still good
    for another request; a replay declining (flow control no longer refuses) lets the request be
    parsed and served as usual; other bytes are never replayed."""
    config = _config()
    state: dict[str, Any] = {"app": 0, "replays": 0, "refuse": True}
    stop = trio.Event()

    async def replay(send: Any, carry: dict[str, Any]) -> bool:
        state["replays"] += 1
        if not state["refuse"]:
            carry["jetkube.test_carried"] = state["replays"]  # for the scope of the request parsed
            return False
        return await _send_429(send)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await _app({}, scope, receive, send)
        state["app"] += 1
        state["carried"] = scope.get("jetkube.test_carried")
        if scope["path"].endswith("/flood"):
            scope[ext.PACE_REPLAY] = replay
        return await _app({}, scope, receive, send)

    async def raw(stream: trio.SocketStream, data: bytes) -> bytes:
        await stream.send_all(data)
        return await _answer_until_body(stream)

    flood = b"GET /clusters/a/flood HTTP/1.1\r\nHost: x\r\n\r\n"
    async with trio.open_nursery() as n:
        port = await _start(n, app, config, stop)
        s = await trio.open_tcp_stream("127.0.0.1", port)
        with trio.fail_after(10):
            assert (await raw(s, flood)).startswith(b"HTTP/1.1 429 Too Many Requests\r\n")
            for _ in range(3):
                answer = await raw(s, flood)
                head, _, body = answer.partition(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                assert lines[0] == b"HTTP/1.1 429 Too Many Requests" and body == b"no"
                assert {b"content-length: 2", b"retry-after: 3"} <= set(lines)
                assert any(ln.startswith(b"date: ") for ln in lines)
            assert state == {"app": 1, "replays": 3, "refuse": True, "carried": None}
            assert await _exchange(s, "/clusters/a/flood?other") == 429  # other bytes: parsed
            assert state["app"] == 2 and state["replays"] == 3
            state["refuse"] = False  # the replay declines: parsed and served as any request
            assert (await raw(s, b"GET /clusters/a/flood?other HTTP/1.1\r\nHost: x\r\n\r\n")).startswith(
                b"HTTP/1.1 429 ")
            assert state["app"] == 3 and state["replays"] == 4
            assert state["carried"] == 4  # what the declining replay left is in that request's scope
            assert await _exchange(s, "/clusters/a/x") == 200  # h11 between requests all along
            assert state["carried"] is None  # (that request's only)
            assert config.pacer._flows == {}
        await s.aclose()
        stop.set()


async def test_a_slot_holder_waits_for_an_idle_loop_at_most_defer_max_s() -> None:
    """``when_idle``: on an idle loop it returns at once; while another task keeps the run queue busy
    it waits, but for ``defer_max_s`` at most (a flood's rejections are never starved)."""
    pacer = RejectPacer(defer_max_s=0.05)
    t0 = trio.current_time()
    await pacer.when_idle()
    assert pacer.deferred == 1 and pacer.deferred_max == 0 and trio.current_time() - t0 < 0.05
    busy_until = trio.current_time() + 5.0
    spins = 0

    async def busy() -> None:
        nonlocal spins
        while trio.current_time() < busy_until:
            spins += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as n:
        n.start_soon(busy)
        await trio.lowlevel.checkpoint()
        t0 = trio.current_time()
        with trio.fail_after(2):
            await pacer.when_idle()
        waited = trio.current_time() - t0
        n.cancel_scope.cancel()
    assert pacer.deferred == 2 and pacer.deferred_max == 1 and 0.05 <= waited < 2 and spins > 10
    off = RejectPacer(defer_max_s=0)  # 0: no deferral
    await off.when_idle()
    assert off.deferred == 0


async def test_the_gates_replay_answers_only_what_it_would_answer_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """``Gate._replay`` answers (through ``_reject``) only while flow control refuses the request now,
    its user authenticates as before and its kind is still the tenant's; else it declines and the
    request is parsed and served as any other."""
    from types import SimpleNamespace

    from gateway._gate import _UNAUTHENTICATED, Gate

    answered: list[int] = []

    async def reject(self: Gate, scope: Any, send: Any, req: Any, route: Any, adm: Any, retry_after_s: int,
                     q: Any, headers: Any) -> None:
        answered.append(retry_after_s)

    monkeypatch.setattr(Gate, "_reject", reject)
    rdef = SimpleNamespace(group="", version="v1", plural="configmaps")
    world = {"rejecting": True, "retry": 7, "user": "alice", "kind": rdef, "blocking": None}

    def authenticate(base: Any) -> Any:
        if world["user"] is None:
            raise ValueError("401")
        return SimpleNamespace(user=world["user"])

    kinds = SimpleNamespace(get=lambda g, v, p: world["kind"])
    ctx = SimpleNamespace(
        pipeline=SimpleNamespace(authenticate=authenticate, flow_control=SimpleNamespace(
            rejecting=lambda: world["rejecting"], refuse_nowait=lambda req, adm: world["retry"])),
        audit=None, registry=SimpleNamespace(for_tenant=lambda t: kinds))
    gate = Gate(ctx, None)
    req = SimpleNamespace(user="alice", tenant="t1")
    route = SimpleNamespace(kind="resource", rdef=rdef)
    scope = {_UNAUTHENTICATED: object()}

    async def replay() -> bool:
        return await gate._replay(scope, req, route, {}, {}, None, {})

    assert await replay() and answered == [7]
    for change, value in (("rejecting", False), ("retry", 0), ("user", "mallory"), ("user", None),
                          ("kind", SimpleNamespace(group="", version="v1", plural="configmaps"))):
        before = world[change]
        world[change] = value
        assert not await replay(), change
        world[change] = before
    ctx.audit = SimpleNamespace(blocking="blocking")  # the audit webhook's blocking modes: the app's
    assert not await replay()
    ctx.audit = None
    assert await replay() and answered == [7, 7]


async def test_a_replayed_429_has_a_request_span_when_tracing_is_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """A replayed 429 (``Gate._replay``, before hypercorn parses the request, so not through the
    tracing ASGI wrapper) gets the request span any request gets (gateway._tracing
    ``Tracing.request_span``): kube's name and attributes, the status code and Audit-Id, the client's
    ``traceparent`` as its parent. With tracing off the gate holds no span hook."""
    from types import SimpleNamespace

    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    from gateway._gate import _UNAUTHENTICATED, Gate
    from gateway._settings import TracingConfig
    from gateway._tracing import Tracing
    from kinds import Registry

    async def reject(self: Gate, scope: Any, send: Any, req: Any, route: Any, adm: Any, retry_after_s: int,
                     q: Any, headers: Any) -> None:
        await send({"type": "http.response.start", "status": 429, "headers": [(b"audit-id", b"a-1")]})
        await send({"type": "http.response.body", "body": b"no"})

    monkeypatch.setattr(Gate, "_reject", reject)
    exporter = InMemorySpanExporter()
    registry = Registry()
    tracing = Tracing(TracingConfig(sampling_rate_per_million=0), registry, exporter=exporter)
    rdef = registry.get("", "v1", "configmaps")
    ctx = SimpleNamespace(
        pipeline=SimpleNamespace(spans=tracing, authenticate=lambda base: SimpleNamespace(user="alice"),
                                 flow_control=SimpleNamespace(rejecting=lambda: True, refuse_nowait=lambda r, a: 3)),
        audit=None, registry=SimpleNamespace(for_tenant=lambda t: registry))
    gate = Gate(ctx, None)
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    for headers in ([(b"traceparent", parent.encode()), (b"user-agent", b"flood/1")], []):
        scope = {"type": "http", "method": "GET", "path": "/api/v1/namespaces/default/configmaps",
                 "raw_path": b"/api/v1/namespaces/default/configmaps", "query_string": b"", "client": ("10.0.0.9", 5),
                 "headers": headers, "scheme": "https", "http_version": "1.1", _UNAUTHENTICATED: object()}
        assert await gate._replay(scope, SimpleNamespace(user="alice", tenant=""), SimpleNamespace(
            kind="resource", rdef=rdef), {}, dict(headers), send, {})
    tracing.provider.force_flush()
    (span,) = exporter.get_finished_spans()  # sampled: the client's; the second (no parent, rate 0): not
    assert span.name == "GET /api/v1/namespaces/{:namespace}/configmaps" and span.kind == SpanKind.SERVER
    assert span.parent is not None and span.parent.span_id == 0x00F067AA0BA902B7
    assert span.context is not None and span.context.trace_id == 0x4BF92F3577B34DA6A3CE929D0E0E4736
    assert span.attributes is not None
    assert (span.attributes["http.status_code"], span.attributes["audit-id"]) == (429, "a-1")
    assert span.attributes["http.user_agent"] == "flood/1" and span.attributes["net.peer.name"] == "10.0.0.9"
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"] * 2
    tracing.provider.shutdown()
    assert Gate(SimpleNamespace(pipeline=SimpleNamespace(spans=None)), None)._request_span is None


async def test_a_flows_slot_holders_go_on_at_most_rate_a_second(autojump_clock: trio.testing.MockClock) -> None:
    """``when_due``: a flow's slot holders go on at most ``rate`` a second (a flood answered faster
    would only send faster); another flow has its own pace."""
    pacer = RejectPacer(slots=2, rate=10.0)
    t0 = trio.current_time()
    await pacer.acquire("a")
    times = []
    for _ in range(5):
        await pacer.when_due("a")
        times.append(round(trio.current_time() - t0, 6))
    assert times == [0.0, 0.1, 0.2, 0.3, 0.4]
    await pacer.acquire("b")
    await pacer.when_due("b")  # its own pace: at once
    assert round(trio.current_time() - t0, 6) == 0.4
    pacer.release("b")
    pacer.release("a")
    assert pacer._flows == {}


async def test_a_replay_whose_user_no_longer_authenticates_counts_no_rejection() -> None:
    """Review s7 finding 3: ``refuse_nowait`` counts a rejection (the rejected-requests metric, the
    tenant's borrowing, ``_rejecting_until``), so the replay authenticates first: a token expired or
    revoked since, or now another user's, declines without asking flow control (the app answers 401 or
    serves it); only a replay of the same user is asked, and answered."""
    from types import SimpleNamespace

    from gateway._gate import _UNAUTHENTICATED, AUTHENTICATED, Gate

    answered: list[int] = []
    asked: list[Any] = []
    world: dict[str, Any] = {"user": "alice"}

    async def reject(*args: Any) -> None:
        answered.append(args[-3])

    def authenticate(base: Any) -> Any:
        if world["user"] is None:
            raise ValueError("401: the token expired")
        return SimpleNamespace(user=world["user"])

    def refuse_nowait(req: Any, adm: Any) -> int:
        asked.append(req)  # the real one counts a rejection here
        return world.get("retry", 5)

    ctx = SimpleNamespace(
        pipeline=SimpleNamespace(authenticate=authenticate, flow_control=SimpleNamespace(
            rejecting=lambda: True, refuse_nowait=refuse_nowait)),
        audit=None, registry=None)
    gate = Gate(ctx, None)
    gate._reject = reject  # type: ignore[method-assign]
    req = SimpleNamespace(user="alice", tenant="t1")
    route = SimpleNamespace(kind="nonresource", rdef=None)
    scope = {_UNAUTHENTICATED: object()}
    for user in (None, "mallory"):  # expired, then another user's
        world["user"] = user
        assert not await gate._replay(scope, req, route, {}, {}, None, {})
        assert asked == [] and answered == [], user
    world["user"] = "alice"
    assert await gate._replay(scope, req, route, {}, {}, None, {})
    assert asked == [req] and answered == [5]
    # Flow control lets it through: declined, its authentication carried to the parsed request's scope
    # (the gate, the fast path and the app take it from there: authenticated once, not twice).
    world["retry"] = 0
    carry: dict[str, Any] = {}
    assert not await gate._replay(scope, req, route, {}, {}, None, carry)
    assert carry == {_UNAUTHENTICATED: scope[_UNAUTHENTICATED], AUTHENTICATED: SimpleNamespace(user="alice")}


async def test_a_replay_raising_ends_at_most_its_connection(caplog: pytest.LogCaptureFixture) -> None:
    """Review s7 finding 2: a replay runs app code in the connection's read loop, outside hypercorn's
    guard of the app's task. An error before anything was written: logged (one line), and the request
    is parsed and served by the app as usual; an error after the 429 was written: logged, and that
    connection alone is closed. The server goes on serving other connections throughout."""
    config = _config()
    state: dict[str, Any] = {"app": 0, "fail": "before"}
    stop = trio.Event()

    async def replay(send: Any, carry: dict[str, Any]) -> bool:
        if state["fail"] == "before":
            raise KeyError("a registry changed meanwhile")
        await send({"type": "http.response.start", "status": 429, "headers": [
            (b"content-length", b"2"), (b"retry-after", b"3")]})
        await send({"type": "http.response.body", "body": b"no"})
        raise RuntimeError("the audit record failed")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await _app({}, scope, receive, send)
        state["app"] += 1
        if scope["path"].endswith("/flood"):
            scope[ext.PACE_REPLAY] = replay
        return await _app({}, scope, receive, send)


    flood = b"GET /clusters/a/flood HTTP/1.1\r\nHost: x\r\n\r\n"
    async with trio.open_nursery() as n:
        port = await _start(n, app, config, stop)
        with trio.fail_after(10):
            s = await trio.open_tcp_stream("127.0.0.1", port)
            await s.send_all(flood)
            assert (await _answer_until_body(s)).startswith(b"HTTP/1.1 429 ")
            with caplog.at_level("ERROR", logger="jetkube"):
                await s.send_all(flood)  # the replay raises before writing: the app answers it
                assert (await _answer_until_body(s)).startswith(b"HTTP/1.1 429 ") and state["app"] == 2
            # One line: the error's type and place only (no message: it could hold a request's data).
            assert [r.getMessage() for r in caplog.records] == [
                (f"replaying a 429 failed (KeyError at test_pacing.py:{_line_of(replay, 'KeyError')}): "
                 "the request is served as usual")]
            assert await _exchange(s, "/clusters/a/x") == 200  # the same connection goes on
            await s.aclose()
            caplog.clear()
            state["fail"] = "after"
            # (a new connection: bytes sent at once after a 200 may come before h11 is between requests)
            s = await trio.open_tcp_stream("127.0.0.1", port)
            await s.send_all(flood)
            assert (await _answer_until_body(s)).startswith(b"HTTP/1.1 429 ") and state["app"] == 4
            with caplog.at_level("ERROR", logger="jetkube"):
                await s.send_all(flood)  # replayed: the 429 written, then the replay raises
                assert (await _answer_until_body(s)).startswith(b"HTTP/1.1 429 ") and state["app"] == 4
                assert await s.receive_some(4096) == b""  # that connection is closed
            assert caplog.records[0].getMessage().endswith(
                f"(RuntimeError at test_pacing.py:{_line_of(replay, 'RuntimeError')}): the connection is closed")
            other = await trio.open_tcp_stream("127.0.0.1", port)  # the server serves on
            assert await _exchange(other, "/clusters/a/x") == 200
            await other.aclose()
        await s.aclose()
        stop.set()


def _line_of(fn: Any, text: str) -> int:
    """The line number of the first line of ``fn`` holding ``text``."""
    import inspect

    lines, first = inspect.getsourcelines(fn)
    return first + next(i for i, ln in enumerate(lines) if text in ln)


async def test_a_replayed_429_carries_the_first_ones_headers_and_is_in_flight() -> None:
    """Review s7 finding 4: a replay runs before hypercorn parses the request, so not through the app's
    outer ASGI wrappers; the server runs it through ``config.replay_through``, ``InFlight.replay`` (as
    gateway/_server.py sets it): in worker mode the replayed 429 has the first one's header set,
    ``x-jetkube-worker`` included, and while it is answered it counts as a request in flight (what
    graceful shutdown waits for)."""
    from gateway._server import InFlight

    config = _config()
    seen: dict[str, Any] = {"active": []}
    stop = trio.Event()

    async def replay(send: Any, carry: dict[str, Any]) -> bool:
        seen["active"].append(inflight.active)
        return await _send_429(send)

    app = _flood_app(replay)

    inflight = InFlight(app, header=(b"x-jetkube-worker", b"1 pid=7"))
    config.replay_through = inflight.replay

    async def header_names(stream: trio.SocketStream) -> set[bytes]:
        await stream.send_all(b"GET /clusters/a/flood HTTP/1.1\r\nHost: x\r\n\r\n")
        buf = b""
        while not buf.endswith(b"no"):
            chunk = await stream.receive_some(4096)
            assert chunk
            buf += chunk
        lines = buf.partition(b"\r\n\r\n")[0].split(b"\r\n")
        assert lines[0] == b"HTTP/1.1 429 Too Many Requests"
        return {ln.partition(b":")[0].lower() for ln in lines[1:]}

    async with trio.open_nursery() as n:
        port = await _start(n, inflight, config, stop)
        s = await trio.open_tcp_stream("127.0.0.1", port)
        with trio.fail_after(10):
            first = await header_names(s)
            assert seen["active"] == []
            again = await header_names(s)
            await _poll(lambda: inflight.active == 0)  # the replay done (after its last byte)
        assert seen["active"] == [1]  # the replay was counted while it answered
        assert b"x-jetkube-worker" in first and again == first
        await s.aclose()
        stop.set()


async def _answer_until_body(stream: trio.SocketStream) -> bytes:
    """The bytes of one answer of these tests' apps, read until its body (``no`` or ``ok``) ends."""
    buf = b""
    while not buf.endswith((b"no", b"ok")):
        chunk = await stream.receive_some(4096)
        assert chunk
        buf += chunk
    return buf


async def test_a_replay_at_shutdown_is_answered_then_its_connection_closed() -> None:
    """Review s7b finding 4: the server terminating while a replay answers (hypercorn's idle timer
    wakes then) neither cuts the replayed 429 (the connection was seen as idle during the replay) nor
    keeps the connection open after it (until the graceful timeout): the whole 429, then the
    connection closed, and the server's serve returns."""
    config = _config()
    config.graceful_timeout = 60  # a connection kept open would hold the test past its fail_after
    stop = trio.Event()
    replays: list[int] = []

    async def replay(send: Any, carry: dict[str, Any]) -> bool:
        replays.append(1)
        stop.set()  # the shutdown begins while this replay runs
        await trio.testing.wait_all_tasks_blocked()  # hypercorn terminated: its idle timers woke
        return await _send_429(send)

    app = _flood_app(replay)

    flood = b"GET /clusters/a/flood HTTP/1.1\r\nHost: x\r\n\r\n"
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            port = await _start(n, app, config, stop)
            s = await trio.open_tcp_stream("127.0.0.1", port)
            await s.send_all(flood)
            assert (await _answer_until_body(s)).startswith(b"HTTP/1.1 429 ")
            await s.send_all(flood)
            answer = b""
            while chunk := await s.receive_some(4096):
                answer += chunk
            assert replays == [1]
            assert answer.startswith(b"HTTP/1.1 429 Too Many Requests\r\n") and answer.endswith(b"\r\n\r\nno")
            await s.aclose()
        # (the nursery exits: serve returned, no connection kept open)
