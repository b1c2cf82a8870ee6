"""A small actor runtime: bounded mailboxes, request/reply with deadlines, supervision.

An actor is a handler run by ``workers`` tasks that read one bounded mailbox. Callers
:meth:`Actor.ask` (send and wait for the reply, bounded by a deadline) or an actor forwards a
message it received, with the same reply slot, to the next actor (:meth:`Actor.forward`), so a
request travels the pipeline without coming back to the gateway between stages.

Supervision: a handler that raises an :class:`ApiError` answers with it; any other exception is
a bug: it is logged with its traceback, answered as an InternalError, and the worker goes on (the
actor is "restarted": actors hold no state between messages). A failure of the runtime itself
escapes the nursery and takes the process down loudly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, Generic, NoReturn, TypeVar

import trio

from bus import FAST_BUCKETS, BusError, Histogram, SubjectError
from kinds._errors import ApiError, InternalError, Timeout, TooManyRequests
from projections import ResourceVersionTooLarge

from ._tracing import Spans

log = logging.getLogger("jetkube.actors")

M = TypeVar("M")

HAND_OFF = True  # False: every message takes the channel hop (the measure compares the two)


def ask_timeout(timeout_s: float) -> Timeout:
    """The error of an :meth:`Actor.ask` whose deadline passed (or of a caller's own deadline around one)."""
    return Timeout(f"the request did not complete within {timeout_s:g}s", retry_after_s=1)


class ReplySlot:
    """Where an answer goes. Set at most once; abandoned when the asker gave up."""

    __slots__ = ("_event", "abandoned", "error", "stage_times", "value")

    def __init__(self) -> None:
        self._event = trio.Event()
        self.value: Any = None
        self.error: BaseException | None = None
        self.abandoned = False
        # (stage name, seconds spent) for the server's per-stage metrics.
        self.stage_times: list[tuple[str, float]] = []

    @property
    def done(self) -> bool:
        return self._event.is_set()

    def set(self, value: Any) -> None:
        if not self._event.is_set():
            self.value = value
            self._event.set()

    def fail(self, error: BaseException) -> None:
        if not self._event.is_set():
            self.error = error
            self._event.set()

    async def wait(self) -> Any:
        await self._event.wait()
        return self.result()

    def result(self) -> Any:
        """The answer of a slot that is :attr:`done` (its error raised)."""
        if self.error is not None:
            raise self.error
        return self.value


Handler = Callable[[M, ReplySlot], Awaitable[None]]


class Measured:
    """A pipeline step as the metrics see it: ``name`` and ``latency`` (seconds per message, its
    awaits included), with ``handled`` and ``busy_s`` read from the latter."""

    __slots__ = ()
    name: str
    latency: Histogram

    @property
    def handled(self) -> int:
        return self.latency.count

    @property
    def busy_s(self) -> float:
        return self.latency.total


class Stage(Measured):
    """A synchronous step that runs in the caller's task (no mailbox, no hop), measured like an actor."""

    __slots__ = ("latency", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.latency = Histogram(FAST_BUCKETS)


class Actor(Measured, Generic[M]):
    """A named mailbox with ``workers`` concurrent handler tasks.

    At most ``workers`` messages are handled at once: a worker task holds one of ``workers``
    slots while it handles a message. :meth:`hand_off` (and :meth:`ask` with ``inline``) may run
    a message in the sender's task instead of a channel hop, when the mailbox is empty (nothing
    waits that it would overtake) and a slot is free (it takes the slot, as an idle worker would):
    the same bound, order and supervision, without the two reschedules of a hop."""

    def __init__(self, name: str, handler: Handler[M], *, mailbox_size: int = 4096, workers: int = 64) -> None:
        self.name = name
        self._handler = handler
        self._send, self._recv = trio.open_memory_channel[tuple[M, ReplySlot]](mailbox_size)
        self._slots = trio.Semaphore(workers)
        self.workers = workers
        self.mailbox_size = mailbox_size
        self.latency = Histogram(FAST_BUCKETS)
        #: Set when tracing is on: each message with a ``trace`` is handled inside a span named
        #: after this actor, a child of the message's trace context.
        self.spans: Spans | None = None

    @property
    def mailbox_depth(self) -> int:
        """Messages waiting in the mailbox now (not yet taken by a worker)."""
        return self._send.statistics().current_buffer_used

    def forward(self, msg: M, reply: ReplySlot) -> None:
        """Hand ``msg`` on with its reply slot; a full mailbox answers 429 at once."""
        try:
            self._send.send_nowait((msg, reply))
        except trio.WouldBlock:
            reply.fail(TooManyRequests(f"the server is busy ({self.name} queue is full), try again",
                                       retry_after_s=1))

    async def hand_off(self, msg: M, reply: ReplySlot) -> None:
        """:meth:`forward` from a handler of another actor: ``msg`` runs here, in the sender's
        task (a worker of the actor before), when the mailbox is empty and a slot is free; else
        it goes through the mailbox (a full one answers 429 at once). Returns when it ran or was
        queued. Only from a task that outlives the request's caller (a worker): the message's
        work is then never cancelled with the caller."""
        if HAND_OFF and self._send.statistics().current_buffer_used == 0:
            try:
                self._slots.acquire_nowait()
            except trio.WouldBlock:
                pass
            else:
                try:
                    await self._handle(msg, reply)
                finally:
                    self._slots.release()
                return
        self.forward(msg, reply)

    async def ask(self, msg: M, *, timeout_s: float | None, inline: bool = False) -> Any:
        """Send ``msg`` and wait for the answer (raising the error it ends in).

        Cancellation or the deadline abandons the reply; work already under way may complete.
        ``timeout_s`` None: the caller bounds the wait itself (a cancel scope around this call,
        e.g. one deadline for a whole read). ``inline``: the message's work may be cancelled with
        the caller (a read: nothing to leave half done), so it runs in the caller's task when the
        mailbox is empty and a slot is free (:meth:`hand_off`); a handler that passes it on still
        passes it to a mailbox or a worker-owned hand-off.
        """
        reply = ReplySlot()
        if timeout_s is None:
            return await self._ask(msg, reply, inline)
        with trio.move_on_after(timeout_s):
            return await self._ask(msg, reply, inline)
        reply.abandoned = True
        raise ask_timeout(timeout_s)

    async def _ask(self, msg: M, reply: ReplySlot, inline: bool) -> Any:
        try:
            if inline:
                await self.hand_off(msg, reply)
                if reply.done:  # it ran in this task: the answer is here, no scheduling round to wait for it
                    return reply.result()
            else:
                self.forward(msg, reply)
            return await reply.wait()
        except trio.Cancelled:
            reply.abandoned = True
            raise

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        async with trio.open_nursery() as nursery:
            for _ in range(self.workers):
                nursery.start_soon(self._worker)
            task_status.started()
        raise AssertionError("actor workers never return")  # pragma: no cover

    async def _worker(self) -> None:
        slots = self._slots
        async for msg, reply in self._recv:
            if reply.abandoned:
                continue
            try:
                slots.acquire_nowait()
            except trio.WouldBlock:
                await slots.acquire()  # hand-offs hold the slots: wait for one, in mailbox order
            try:
                await self._handle(msg, reply)
            finally:
                slots.release()

    async def _handle(self, msg: M, reply: ReplySlot) -> None:
        """One message, supervised: its answer or error goes to ``reply``; measured."""
        if reply.abandoned:
            return
        t0 = time.perf_counter()
        try:
            spans = self.spans
            if spans is not None and (parent := getattr(msg, "trace", "")):
                with spans.child(self.name, parent):
                    await self._handler(msg, reply)
            else:
                await self._handler(msg, reply)
        except (ApiError, BusError, SubjectError, ResourceVersionTooLarge) as e:
            # Domain errors, and the log's own (unavailable, outcome unknown, a subject too long
            # for the wire, a projection that did not catch up in time), go back to the caller as
            # they are: the gateway maps each to its Status.
            reply.fail(e)
        except Exception as e:
            # A worker outlives the requests it serves: their context (and its audit ID) is not
            # this task's, so the message's own audit ID goes on the line.
            log.exception("actor %s crashed on %r; restarted", self.name, type(msg).__name__,
                          extra={"audit_id": getattr(msg, "audit_id", "")})
            reply.fail(InternalError(f"internal error in {self.name}: {type(e).__name__}"))
        finally:
            dt = time.perf_counter() - t0
            self.latency.observe(dt)
            reply.stage_times.append((self.name, dt))


async def every(seconds: float, fn: Callable[[], object]) -> NoReturn:
    """Call ``fn`` every ``seconds``, forever (a controller's periodic resync, in its nursery)."""
    while True:
        await trio.sleep(seconds)
        fn()


K = TypeVar("K")


class WorkQueue(Generic[K]):
    """A controller's work queue, as client-go's workqueue: each key at most once while waiting
    (adding a queued key again is a no-op), taken in the order first added, bounded at ``size``
    keys (one more is dropped and counted: the controller's periodic resync finds it again).

    ``resync`` (a controller without a periodic resync): every key the controller follows. After a
    key was dropped, once the queue is drained, the queue goes through them again, adding them as
    room allows (up to half the bound, so changes meanwhile still fit), however many there are."""

    def __init__(self, size: int, resync: Callable[[], Iterable[K]] | None = None) -> None:
        self.size = size
        self.dropped = 0
        self.resync = resync
        self.resyncs = 0  # resyncs after a drop started
        self._lost = False  # a key dropped since the last resync started
        self._refill: Iterator[K] | None = None  # the resync under way
        self._keys: dict[K, None] = {}
        self._wake = trio.Event()

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: K) -> None:
        if key in self._keys:
            return
        if len(self._keys) >= self.size:
            self.dropped += 1
            self._lost = self.resync is not None
            return
        self._keys[key] = None
        self._wake.set()

    def _top_up(self) -> None:
        """The resync under way's next keys, up to half the bound."""
        assert self._refill is not None
        room = max(1, self.size // 2)
        for key in self._refill:
            self._keys[key] = None
            if len(self._keys) >= room:
                return
        self._refill = None

    async def get(self) -> K:
        """The oldest key, waiting for one."""
        while not self._keys:
            if self._refill is None and self._lost:
                assert self.resync is not None
                self._lost, self._refill = False, iter(self.resync())
                self.resyncs += 1
            if self._refill is not None:
                self._top_up()
                continue
            self._wake = trio.Event()
            await self._wake.wait()
        key = next(iter(self._keys))
        del self._keys[key]
        if self._refill is not None and len(self._keys) < max(1, self.size // 2):
            self._top_up()
        return key

    async def add_later(self, key: K, delay_s: float) -> None:
        """Add ``key`` after ``delay_s`` (a retry; start it in the controller's nursery)."""
        await trio.sleep(delay_s)
        self.add(key)
