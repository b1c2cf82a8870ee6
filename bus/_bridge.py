"""The trio face of nats-py, which is asyncio-only.

Why this shape (ARCHITECTURE.md, fixed decision 6): nats-py runs on an asyncio loop in a thread of
its own. Crossing between the trio thread and that loop costs a thread wake-up, so crossings are
*coalesced*: trio callers drop requests into a deque and schedule at most one drain on the asyncio
loop; replies come back into another deque with at most one drain scheduled on trio. Under load
one crossing carries a whole batch of publishes or acks, and every request is a publish with a
reply subject on one wildcard inbox subscription, so nothing waits on a per-message round trip
(nats-py's ``publish_async`` hangs forever on server error replies, nats.py#985; we own deadlines).
``bench`` scenario B5 measures this bridge against raw pipelined nats-py publishes (C2).

Invariant (both directions): the producer appends to the deque *then* reads the "drain scheduled"
flag; the drain clears the flag *then* empties the deque. So an item is never left behind with no
drain scheduled, at the price of an occasional empty drain.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import threading
from typing import Any

import nats
import trio

from ._errors import BusClosed, BusTimeout, NoResponders

Headers = dict[str, str] | None


class _Pending:
    __slots__ = ("abandoned", "data", "event", "headers")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.data: bytes = b""
        self.headers: Headers = None
        self.abandoned = False


class Reply:
    """A reply: payload and headers (a ``Status`` header for server status messages)."""

    __slots__ = ("data", "headers")

    def __init__(self, data: bytes, headers: Headers) -> None:
        self.data = data
        self.headers = headers

    @property
    def status(self) -> str | None:
        return None if self.headers is None else self.headers.get("Status")


class Bridge:
    """One NATS connection, driven from trio. Create with :func:`open_bridge`."""

    def __init__(self, url: str, *, max_in_flight: int, trio_token: trio.lowlevel.TrioToken) -> None:
        self.url = url
        self._trio_token = trio_token
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nats-asyncio", daemon=True)
        self._nc: Any = None
        self._inbox = ""
        self._counter = itertools.count(1)
        # trio -> asyncio
        self._outbox: collections.deque[tuple[str, bytes, Headers, _Pending, float]] = collections.deque()
        self._out_scheduled = False
        # asyncio -> trio
        self._replies: collections.deque[tuple[_Pending, bytes, Headers]] = collections.deque()
        self._reply_scheduled = False
        self._waiting: dict[int, tuple[_Pending, float]] = {}
        self._slots = trio.Semaphore(max_in_flight)
        self._closed = False
        self._sweeper: asyncio.Task[None] | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    async def _start(self, connect_timeout_s: float) -> None:
        self._thread.start()
        await self.run_coro(self._a_connect(connect_timeout_s), timeout_s=connect_timeout_s + 5)

    async def _a_connect(self, connect_timeout_s: float) -> None:
        async def _quiet(_e: Exception) -> None:
            return None

        self._nc = await nats.connect(
            self.url, connect_timeout=connect_timeout_s, max_reconnect_attempts=-1,
            reconnect_time_wait=0.25, error_cb=_quiet, allow_reconnect=True,
            pending_size=64 * 1024 * 1024,
        )
        self._inbox = self._nc.new_inbox()
        await self._nc.subscribe(self._inbox + ".*", cb=self._a_on_reply, pending_msgs_limit=1_000_000,
                                 pending_bytes_limit=1 << 30)
        self._sweeper = asyncio.ensure_future(self._a_sweep())

    async def _close(self) -> None:
        if self._closed:
            return
        self._closed = True

        async def _a_close() -> None:
            if self._sweeper is not None:
                self._sweeper.cancel()
            if self._nc is not None:
                try:
                    await asyncio.wait_for(self._nc.drain(), 2)
                except Exception:  # noqa: BLE001 - best effort on shutdown
                    await self._nc.close()

        with trio.move_on_after(5) as scope:
            scope.shield = True
            try:
                await self.run_coro(_a_close(), timeout_s=4)
            except Exception:  # noqa: BLE001, S110 - shutting down anyway
                pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        await trio.to_thread.run_sync(self._thread.join, 5)

    # ---- generic crossing for rare calls -----------------------------------------------------

    async def run_coro(self, coro: Any, *, timeout_s: float) -> Any:
        """Run an asyncio coroutine on the NATS loop and await its result from trio.

        For rare calls (connect, setup). On cancellation or timeout the coroutine is cancelled.
        """
        done = trio.Event()
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        fut.add_done_callback(lambda _f: self._trio_token.run_sync_soon(done.set))
        try:
            with trio.fail_after(timeout_s):
                await done.wait()
        except BaseException:
            fut.cancel()
            raise
        return fut.result()

    # ---- the hot path: publish with reply --------------------------------------------------------

    async def request(self, subject: str, payload: bytes, headers: Headers = None, *,
                      timeout_s: float) -> Reply:
        """Publish ``payload`` with a reply subject and wait for the single reply.

        Raises :class:`BusTimeout` after ``timeout_s`` (the message may or may not have been
        processed: callers that append use ``Nats-Msg-Id`` so a retry is safe) and
        :class:`NoResponders` when nothing listens on ``subject``. Cancellation abandons the
        reply; the asyncio side forgets it at its deadline.
        """
        if self._closed:
            raise BusClosed("bus is closed")
        async with self._slots:
            p = _Pending()
            self._outbox.append((subject, payload, headers, p, timeout_s))
            if not self._out_scheduled:
                self._out_scheduled = True
                self._loop.call_soon_threadsafe(self._a_drain_outbox)
            with trio.move_on_after(timeout_s):
                try:
                    await p.event.wait()
                except BaseException:
                    p.abandoned = True
                    raise
            if not p.event.is_set():
                p.abandoned = True
                raise BusTimeout(f"no reply on {subject} within {timeout_s}s")
        if p.headers is not None and p.headers.get("Status") == "503":
            raise NoResponders(f"no responders on {subject}")
        return Reply(p.data, p.headers)

    def _a_drain_outbox(self) -> None:
        self._out_scheduled = False
        batch = []
        out = self._outbox
        while out:
            batch.append(out.popleft())
        if batch:
            asyncio.ensure_future(self._a_publish(batch))

    async def _a_publish(self, batch: list[tuple[str, bytes, Headers, _Pending, float]]) -> None:
        now = self._loop.time()
        nc = self._nc
        for subject, payload, headers, p, timeout_s in batch:
            n = next(self._counter)
            self._waiting[n] = (p, now + timeout_s + 1.0)
            try:
                await nc.publish(subject, payload, reply=f"{self._inbox}.{n}", headers=headers)
            except Exception:  # noqa: BLE001 - the caller sees a timeout and retries with its Msg-Id
                self._waiting.pop(n, None)

    async def _a_on_reply(self, msg: Any) -> None:
        n = int(msg.subject.rsplit(".", 1)[1])
        entry = self._waiting.pop(n, None)
        if entry is None:
            return
        self._replies.append((entry[0], msg.data, msg.headers))
        if not self._reply_scheduled:
            self._reply_scheduled = True
            self._trio_token.run_sync_soon(self._t_deliver)

    def _t_deliver(self) -> None:
        self._reply_scheduled = False
        replies = self._replies
        while replies:
            p, data, headers = replies.popleft()
            if not p.abandoned:
                p.data, p.headers = data, headers
                p.event.set()

    async def _a_sweep(self) -> None:
        # Bound: a reply that never comes is forgotten one second after its caller gave up.
        while True:
            await asyncio.sleep(1.0)
            now = self._loop.time()
            stale = [n for n, (_, deadline) in self._waiting.items() if deadline < now]
            for n in stale:
                self._waiting.pop(n, None)

    # ---- plumbing for readers (see _reader.py) ----------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def trio_token(self) -> trio.lowlevel.TrioToken:
        return self._trio_token

    @property
    def nc(self) -> Any:
        return self._nc


class open_bridge:
    """``async with open_bridge(url) as bridge``: connect; on exit drain and close."""

    def __init__(self, url: str, *, max_in_flight: int = 8192, connect_timeout_s: float = 10.0) -> None:
        self._url = url
        self._max_in_flight = max_in_flight
        self._connect_timeout_s = connect_timeout_s
        self._bridge: Bridge | None = None

    async def __aenter__(self) -> Bridge:
        self._bridge = Bridge(self._url, max_in_flight=self._max_in_flight,
                              trio_token=trio.lowlevel.current_trio_token())
        try:
            await self._bridge._start(self._connect_timeout_s)
        except BaseException:
            await self._bridge._close()
            raise
        return self._bridge

    async def __aexit__(self, *exc: object) -> None:
        assert self._bridge is not None
        await self._bridge._close()
