"""Turns of the run queue a response costs (gateway/_hypercorn_ext.py): a write takes a free send
lock without yielding (``ClientCertTCPServer.protocol_send``), a message for the app goes into its
queue without yielding while the queue has room (``PutNowaitTaskGroup``). Each is compared with
hypercorn's own, which yields once more; the waits (a held lock, a full queue) stay."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.config import Config
from hypercorn.events import Closed, RawData
from hypercorn.trio.task_group import TaskGroup
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState

from gateway._hypercorn_ext import ClientCertTCPServer, PutNowaitTaskGroup, ReasonPhraseH11Protocol


class _Steps(trio.abc.Instrument):
    """Counts the steps of one task after the one that names it: each a turn of the run queue it waited."""

    def __init__(self) -> None:
        self.task: trio.lowlevel.Task | None = None
        self.n = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.n += 1


async def _turns(fn: Any) -> int:
    """The turns of the run queue ``await fn()`` takes, in a task of its own."""
    steps = _Steps()
    trio.lowlevel.add_instrument(steps)
    try:
        async with trio.open_nursery() as n:
            async def run() -> None:
                steps.task = trio.lowlevel.current_task()
                await fn()
            n.start_soon(run)
    finally:
        trio.lowlevel.remove_instrument(steps)
    return steps.n


class _Stream:
    """A socket stream's writes: each one checkpoint, as trio's ``SocketStream.send_all``."""

    def __init__(self, broken: bool = False) -> None:
        self.sent: list[bytes] = []
        self.broken = broken

    async def send_all(self, data: bytes) -> None:
        await trio.lowlevel.checkpoint()
        if self.broken:
            raise trio.BrokenResourceError
        self.sent.append(bytes(data))


class _Protocol:
    def __init__(self) -> None:
        self.events: list[Any] = []

    async def handle(self, event: Any) -> None:
        self.events.append(event)


def _server(cls: type[TCPServer], stream: _Stream) -> Any:
    """A connection handler with what ``protocol_send`` uses (no socket, no app)."""
    s = object.__new__(cls)
    s.send_lock = trio.Lock()
    s.stream = stream
    s.protocol = _Protocol()
    return s


async def test_a_write_takes_one_turn_where_hypercorns_took_two() -> None:
    ours, theirs = _server(ClientCertTCPServer, _Stream()), _server(TCPServer, _Stream())
    assert await _turns(lambda: ours.protocol_send(RawData(b"HTTP/1.1 200 OK\r\n\r\n"))) == 1
    assert await _turns(lambda: theirs.protocol_send(RawData(b"HTTP/1.1 200 OK\r\n\r\n"))) == 2
    assert ours.stream.sent == theirs.stream.sent == [b"HTTP/1.1 200 OK\r\n\r\n"]
    assert not ours.send_lock.locked()


async def test_a_held_lock_is_waited_for_and_writes_do_not_interleave() -> None:
    s = _server(ClientCertTCPServer, _Stream())
    release = trio.Event()

    async def holder(task_status: Any) -> None:
        async with s.send_lock:
            task_status.started()
            await release.wait()
            s.stream.sent.append(b"first")

    async with trio.open_nursery() as n:
        await n.start(holder)
        n.start_soon(s.protocol_send, RawData(b"second"))
        await trio.testing.wait_all_tasks_blocked()
        assert s.stream.sent == []  # the writer waits for the lock
        release.set()
    assert s.stream.sent == [b"first", b"second"]
    assert not s.send_lock.locked()


async def test_a_broken_stream_closes_the_protocol_and_frees_the_lock() -> None:
    s = _server(ClientCertTCPServer, _Stream(broken=True))
    await s.protocol_send(RawData(b"x"))
    assert [type(e) for e in s.protocol.events] == [Closed]
    assert not s.send_lock.locked()


@pytest.mark.parametrize("cls", [ClientCertTCPServer, TCPServer])
async def test_a_cancelled_writer_raises_before_it_writes(cls: type[TCPServer]) -> None:
    # As hypercorn's (its lock's acquire): a writer cancelled at shutdown does not enter the
    # shielded write, which could wait for ever on a client that does not read.
    s = _server(cls, _Stream())
    with trio.CancelScope() as scope:
        scope.cancel()
        await s.protocol_send(RawData(b"x"))
    assert scope.cancelled_caught
    assert s.stream.sent == []
    assert not s.send_lock.locked()


def _app(got: list[Any], go: trio.Event) -> Any:
    """An app that reads three messages once ``go`` is set."""
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await go.wait()
        while len(got) < 3:
            got.append(await receive())

    return ASGIWrapper(app)


def _config(size: int) -> Config:
    config = Config()
    config.max_app_queue_size = size
    return config


async def _no_send(message: Any) -> None:
    await trio.lowlevel.checkpoint()


@pytest.mark.parametrize(("group", "turns"), [(PutNowaitTaskGroup, 0), (TaskGroup, 1)])
async def test_a_put_with_room_does_not_yield(group: type[TaskGroup], turns: int) -> None:
    got: list[Any] = []
    go = trio.Event()
    async with group() as tg:
        put = await tg.spawn_app(_app(got, go), _config(10), {"type": "http"}, _no_send)
        assert await _turns(lambda: put({"type": "http.disconnect"})) == turns
        go.set()
        for _ in range(2):
            await put({"type": "http.disconnect"})
    assert got == [{"type": "http.disconnect"}] * 3


async def test_a_put_into_a_full_queue_waits_for_the_app() -> None:
    got: list[Any] = []
    go, done = trio.Event(), trio.Event()
    async with PutNowaitTaskGroup() as tg:
        put = await tg.spawn_app(_app(got, go), _config(1), {"type": "http"}, _no_send)
        await put({"type": "http.request", "n": 1})  # fills the queue

        async def second() -> None:
            await put({"type": "http.request", "n": 2})
            done.set()

        tg.spawn(second)
        await trio.testing.wait_all_tasks_blocked()
        assert not done.is_set()  # the queue is full: the put waits, as hypercorn's
        go.set()
        await done.wait()
        await put({"type": "http.disconnect"})
    assert [m.get("n") for m in got] == [1, 2, None]


async def test_a_get_is_answered_in_fewer_turns_than_with_hypercorns_group() -> None:
    """End to end through the HTTP/1.1 protocol: the task writing the answer waits one turn fewer
    (hypercorn's put of ``http.disconnect`` after the last write)."""
    async def app(scope: Any, receive: Any, send: Any) -> None:
        steps.task = trio.lowlevel.current_task()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"{}"})

    async def send(event: Any) -> None:
        if isinstance(event, RawData):
            await trio.lowlevel.checkpoint()  # a socket write's turn
            sent.append(event.data)

    counts = {}
    for group in (PutNowaitTaskGroup, TaskGroup):
        sent: list[bytes] = []
        steps = _Steps()
        trio.lowlevel.add_instrument(steps)
        try:
            async with group() as tg:
                p = ReasonPhraseH11Protocol(ASGIWrapper(app), Config(), WorkerContext(None), tg, ConnectionState({}),
                                            False, ("127.0.0.1", 1000), ("127.0.0.1", 80), send)
                await p.handle(RawData(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"))
            await p.handle(Closed())
        finally:
            trio.lowlevel.remove_instrument(steps)
        assert len(sent) == 1 and sent[0].startswith(b"HTTP/1.1 200 OK\r\n") and sent[0].endswith(b"\r\n\r\n{}")
        counts[group] = steps.n
    assert counts[PutNowaitTaskGroup] == counts[TaskGroup] - 1, counts


async def test_an_app_answering_before_reading_a_full_queue_does_not_hang_http2() -> None:
    """Review s9 H1: small HTTP/2 DATA frames fill the app's queue in one read (the put does not
    yield); the app answers without reading them (a 401 or 429 before the body, as the fast path) and
    its own ``http.disconnect`` put used to wait for itself, the connection held until shutdown."""
    import h2.config
    import h2.connection
    import h2.exceptions

    from gateway._hypercorn_ext import EarlyResponseH2Protocol

    async def app(scope: Any, receive: Any, send: Any) -> None:
        for _ in range(3):  # flow control, the answer's audit: a few turns, the body unread
            await trio.lowlevel.checkpoint()
        await send({"type": "http.response.start", "status": 429, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"{}"})

    out: list[bytes] = []

    async def send(event: Any) -> None:
        await trio.lowlevel.checkpoint()
        if isinstance(event, RawData):
            out.append(event.data)

    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.increment_flow_control_window(2 ** 24)
    client.send_headers(1, [(":method", "POST"), (":path", "/x"), (":scheme", "https"), (":authority", "a")])
    frames = 0
    with trio.fail_after(5):
        async with PutNowaitTaskGroup() as tg:
            p = EarlyResponseH2Protocol(ASGIWrapper(app), Config(), WorkerContext(None), tg, ConnectionState({}),
                                        True, ("127.0.0.1", 1000), ("127.0.0.1", 80), send)
            await p.initiate()
            await p.handle(RawData(client.data_to_send()))
            for _ in range(100):  # 1 KiB frames, a window's worth a read
                while out:
                    client.receive_data(out.pop(0))  # the server's WINDOW_UPDATEs reach the client
                for _ in range(64):
                    try:
                        client.send_data(1, b"x" * 1024)
                    except h2.exceptions.FlowControlError:
                        break
                    frames += 1
                await p.handle(RawData(client.data_to_send()))
                await trio.lowlevel.checkpoint()
            await p.handle(Closed())
    assert frames > 1000  # the connection kept reading after the answer


async def test_an_app_answering_a_large_body_unread_does_not_hang_http1(autojump_clock: Any) -> None:
    """The same on HTTP/1.1 with a body of 20 reads of 64 KiB and an app that waits before answering
    unread (hypercorn's own task group hangs there too: the reader parked in its put for ever)."""
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await trio.sleep(1)  # queued in flow control: the body's reads fill the app's queue
        await send({"type": "http.response.start", "status": 429,
                    "headers": [(b"content-length", b"2"), (b"retry-after", b"1"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": b"{}"})

    async def send(event: Any) -> None:
        await trio.lowlevel.checkpoint()

    with trio.fail_after(10):
        async with PutNowaitTaskGroup() as tg:
            p = ReasonPhraseH11Protocol(ASGIWrapper(app), Config(), WorkerContext(None), tg, ConnectionState({}),
                                        False, ("127.0.0.1", 1000), ("127.0.0.1", 80), send)
            await p.handle(RawData(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % (20 * 65536)))
            for _ in range(20):
                await trio.sleep(0.01)
                await p.handle(RawData(b" " * 65536))
            await p.handle(Closed())
