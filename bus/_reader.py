"""Ordered reads of the log: an ephemeral pull consumer driven from trio.

A :class:`LogReader` delivers the stream's messages matching one filter subject, in stream order,
from a start sequence, with no gap and no duplicate. It is an ordered consumer built on pull
requests, for two reasons: backpressure (at most ``2 * batch`` messages are ever buffered, because a
new pull is only issued when the buffer has room) and recovery (nats-py's ordered push consumer
hides resets; here a consumer-sequence gap, a deleted consumer, silence past three idle heartbeats
or a reconnect of the bridge (the server may have restarted and lost the memory-stored consumer)
all rebuild the consumer from the last delivered stream sequence + 1; a plain ephemeral push
consumer on a dead node stops silently, ARCHITECTURE.md pitfalls).

Crossings: the asyncio side appends messages to a deque and schedules at most one trio wake-up;
trio takes everything buffered in one go and schedules at most one "maybe pull" back.

A reader opened with ``until=N`` (:func:`open_reader`, for a range read) instead keeps only each
subject's last message up to sequence N, on the asyncio side as messages arrive, pulls on by itself
and wakes trio once at the end (:meth:`LogReader.last_per_subject`): no per-message ``LogMessage``,
buffer or crossing for the messages a later one of the same subject replaces. Opened with ``until``
and ``wanted`` (a set of sequences), it keeps exactly those messages instead, by sequence
(:meth:`LogReader.wanted_messages`): a read of messages whose sequences the caller already knows.
A range read keeps up to ``in_flight`` pulls of ``batch`` messages outstanding, so nats-server
delivers the next messages while Python cuts the current ones, and never asks for more messages than
the range's sequences left (no pull delivers messages past ``until`` when the filter matches them all).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from collections.abc import Callable
from typing import Any

import nats.errors
import trio

from ._bridge import Bridge
from ._errors import BusClosed, BusError, BusTimeout, NoResponders
from ._types import LogMessage

log = logging.getLogger("jetkube.bus")

_HEARTBEAT_NS = 2_000_000_000
_EXPIRES_NS = 20_000_000_000
_STALL_S = 3 * _HEARTBEAT_NS / 1e9


_WAKE_EVERY = 256
_STATUS_LINE = b"NATS/1.0 "
_MSG_ID = b"Nats-Msg-Id:"


async def _never(msg: Any) -> None:  # the subscription's callback when its messages come raw
    raise AssertionError("a raw subscription's message went through nats-py's queue")


def _stream_seq(reply: str | bytes) -> tuple[int, int, int]:
    """(stream seq, consumer seq, pending) from a ``$JS.ACK`` reply subject (v1 or v2 layout)."""
    t = reply.split("." if isinstance(reply, str) else b".")  # type: ignore[arg-type]
    if len(t) == 9:
        return int(t[5]), int(t[6]), int(t[8])
    return int(t[7]), int(t[8]), int(t[10])


def _msg_id(headers: bytes | None) -> str:
    """The Nats-Msg-Id of a message's raw headers ("" when none)."""
    if headers is None:
        return ""
    at = headers.find(_MSG_ID)
    if at < 0:
        return ""
    end = headers.find(b"\r\n", at)
    return headers[at + len(_MSG_ID):end if end >= 0 else None].strip().decode(errors="replace")


class LogReader:
    """Read with ``async for batch in reader`` or :meth:`next_batch`; close with :meth:`aclose`."""

    def __init__(self, bridge: Bridge, stream: str, filter_subject: str, start_seq: int, *,
                 batch: int = 1024, decrypt: Callable[[str, bytes], bytes] | None = None,
                 until: int | None = None, wanted: set[int] | None = None, in_flight: int = 1) -> None:
        self._b = bridge
        self._decrypt = decrypt  # encryption at rest (Log.encryption), undone as messages arrive
        self._stream = stream
        self._filter = filter_subject
        self._batch = batch
        # asyncio-side state
        self._buf: collections.deque[LogMessage] = collections.deque()
        self._next_seq = max(1, start_seq)  # the next stream sequence we want
        self._cseq = 0
        self._outstanding = 0  # messages asked for by the pulls outstanding, not received yet
        # The pulls outstanding, oldest first (JetStream serves them in order): the consumer sequence
        # at which each one has all its messages. Entries <= ``_cseq`` are done (dropped lazily).
        self._pulls: collections.deque[int] = collections.deque()
        # A range read: pulls outstanding at most (the consumer's max_waiting is 4; lowered to what
        # the server took when it refuses one), and the outstanding count at which the next pull is
        # issued (-1: none due).
        self._in_flight = max(1, min(in_flight, 3)) if until is not None else 1
        self._refill_at = -1
        self._consumer = ""
        self._inbox = ""
        self._sub: Any = None
        self._raw: dict[int, Any] | None = None  # the client's raw subscriptions, ours among them
        self._last_activity = 0.0
        self._rebuilding = False
        self._closed = False
        self._watchdog: asyncio.Task[None] | None = None
        self._pull_scheduled = False
        # ``until``: keep each subject's last message <= until here (subject -> seq, data),
        # and stop at the first message past it or at the stream's end (``_done``).
        self._until = until
        self._kept: dict[str | bytes, tuple[int, bytes]] = {}
        # ``wanted``: keep only these sequences here (seq -> subject, data) instead.
        self._wanted = wanted
        # (seq -> data; and seq -> subject as well when payloads are decrypted, which needs it)
        self._by_seq: dict[int, bytes] = {}
        self._subjects: dict[int, str | bytes] = {}
        self._done = False
        #: Messages the stream held beyond the last delivered one, as JetStream last reported.
        self.pending = -1
        # trio-side state
        self._wake_scheduled = False
        self._ready = trio.Event()
        self._error: BaseException | None = None

    # ---- trio side --------------------------------------------------------------------------

    async def _open(self) -> None:
        await self._b.run_coro(self._a_open(), timeout_s=30)

    async def next_batch(self) -> list[LogMessage]:
        """Wait for and return every buffered message (at least one), in order.

        Raises the reader's fatal error, if any. Cancellation loses nothing: buffered messages
        stay for the next call.
        """
        await self._wait_until(lambda: bool(self._buf))
        out = []
        buf = self._buf
        while buf:
            out.append(buf.popleft())
        # The asyncio side pulls again by itself when a pull's messages are all in (``_a_take``) or
        # it ended (a status), except into a full buffer: only then (nothing outstanding) does it
        # need asking, now that the buffer is drained. (A read of the asyncio side's count: at worst
        # stale by a message that is its last, and then that side pulls itself, after this drain.)
        # One crossing (a wake-up of the NATS thread) less per batch on a live tail.
        if not self._pull_scheduled and not self._outstanding:
            self._pull_scheduled = True
            self._b.loop.call_soon_threadsafe(self._a_maybe_pull)
        return out

    async def last_per_subject(self) -> dict[str, LogMessage]:
        """Of a reader opened with ``until``: once it read past ``until`` (or the stream's end), the
        last message <= ``until`` of each subject it saw, by subject (without its ``msg_id``: a range
        read's callers want the state). Raises the reader's fatal error."""
        if self._until is None or self._wanted is not None:
            raise RuntimeError("last_per_subject needs a reader opened with until (and not wanted)")
        await self._wait_done()
        out: dict[str, LogMessage] = {}
        decrypt = self._decrypt
        for subject, (seq, data) in self._kept.items():
            s = subject if isinstance(subject, str) else subject.decode()
            out[s] = LogMessage(seq, s, data if decrypt is None else decrypt(s, data))
        return out

    async def wanted_messages(self) -> dict[int, bytes]:
        """Of a reader opened with ``until`` and ``wanted``: once it read past ``until`` (or the
        stream's end), the payloads of the wanted messages it saw, by sequence (a wanted sequence
        the stream no longer holds, or that is not under the filter, is absent). Raises the reader's
        fatal error."""
        if self._wanted is None:
            raise RuntimeError("wanted_messages needs a reader opened with until and wanted")
        await self._wait_done()
        decrypt = self._decrypt
        if decrypt is None:
            return self._by_seq
        subjects = self._subjects
        return {seq: decrypt(s if isinstance(s := subjects[seq], str) else s.decode(), data)
                for seq, data in self._by_seq.items()}

    async def _wait_done(self) -> None:
        await self._wait_until(lambda: self._done)

    async def _wait_until(self, ready: Callable[[], bool]) -> None:
        """Until ``ready()`` holds (woken by the asyncio side's ``_ready``); raises the reader's
        fatal error meanwhile."""
        while not ready():
            if self._error is not None:
                raise self._error
            self._ready = trio.Event()
            if ready() or self._error is not None:
                continue
            await self._ready.wait()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def __aiter__(self) -> LogReader:
        return self

    async def __anext__(self) -> list[LogMessage]:
        return await self.next_batch()

    def _t_wake(self) -> None:
        self._wake_scheduled = False
        self._ready.set()

    async def aclose(self) -> None:
        """Delete the consumer (best effort, bounded); safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        with trio.move_on_after(3) as scope:
            scope.shield = True
            try:
                await self._b.run_coro(self._a_close(), timeout_s=2.5)
            except (BusError, trio.TooSlowError, RuntimeError):
                pass

    def close_soon(self) -> None:
        """Close without waiting (a reader whose caller has what it wanted): the consumer's delete
        is sent from the asyncio loop when it gets to it (and the consumer expires on its own after
        ``inactive_threshold`` anyway); messages still arriving for it are dropped."""
        if self._closed:
            return
        self._closed = True
        try:
            self._b.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._a_close()))
        except RuntimeError:  # the loop is closed: so is the connection, and the consumer expires
            pass

    # ---- asyncio side -------------------------------------------------------------------------

    def _a_wake_trio(self) -> None:
        if not self._wake_scheduled:
            self._wake_scheduled = True
            try:
                self._b.trio_token.run_sync_soon(self._t_wake)
            except RuntimeError:  # trio run finished
                pass

    async def _a_open(self) -> None:
        await self._a_create_consumer()
        self._watchdog = asyncio.ensure_future(self._a_watch())
        self._b.add_reconnect_callback(self._a_on_reconnect)

    async def _a_on_reconnect(self) -> None:
        self._a_forget_pulls()
        await self._a_rebuild()

    def _a_forget_pulls(self) -> None:
        self._outstanding = 0
        self._pulls.clear()

    async def _a_create_consumer(self) -> None:
        # Each consumer generation gets its own inbox, so nothing a replaced consumer still sends
        # (messages, 408s for its pull requests) can reach the new one.
        nc = self._b.nc
        await self._a_unsubscribe()
        self._inbox = nc.new_inbox()
        self._sub = await nc.subscribe(self._inbox, cb=_never, pending_msgs_limit=4 * self._batch + 64,
                                       pending_bytes_limit=1 << 30)
        # Messages come raw (see bus/_bridge._Client): parsed here, never queued in nats-py.
        raw = getattr(nc, "raw", None)
        if raw is not None:
            raw[self._sub._id] = self._a_on_raw
            self._raw = raw
        else:  # a plain nats-py client: through its subscription task
            self._sub._cb = self._a_on_msg
        config = {
            "deliver_policy": "by_start_sequence", "opt_start_seq": self._next_seq,
            "ack_policy": "none", "filter_subject": self._filter, "max_waiting": 4,
            "inactive_threshold": 60_000_000_000, "mem_storage": True, "num_replicas": 1,
            "replay_policy": "instant",
        }
        req = json.dumps({"stream_name": self._stream, "config": config}).encode()
        try:
            msg = await nc.request(f"$JS.API.CONSUMER.CREATE.{self._stream}", req, timeout=5)
        except nats.errors.NoRespondersError as e:
            raise NoResponders(f"consumer create on {self._stream}: {e}") from e
        except nats.errors.TimeoutError as e:  # e.g. the stream has no leader yet
            raise BusTimeout(f"consumer create on {self._stream}: no answer within 5s") from e
        resp = json.loads(msg.data)
        if "error" in resp:
            err = resp["error"]
            raise BusError(f"consumer create failed: {err.get('description')} ({err.get('err_code')})")
        self._consumer = resp["name"]
        self._cseq = 0
        self._a_forget_pulls()
        self.pending = int(resp.get("num_pending", 0))
        self._last_activity = asyncio.get_running_loop().time()
        if self.pending == 0:
            if self._until is not None:
                self._done = True
            self._a_wake_trio()
        await self._a_pull()

    async def _a_pull(self) -> None:
        if self._until is not None:
            await self._a_pull_range()
            return
        room = 2 * self._batch - len(self._buf)
        if self._outstanding or self._closed or self._done or room < self._batch:
            return
        self._outstanding = self._batch
        self._a_drop_done()
        self._pulls.append(self._cseq + self._batch)
        body = json.dumps({"batch": self._batch, "expires": _EXPIRES_NS, "idle_heartbeat": _HEARTBEAT_NS})
        self._last_activity = asyncio.get_running_loop().time()
        await self._b.nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{self._stream}.{self._consumer}",
                                 body.encode(), reply=self._inbox)

    async def _a_pull_range(self) -> None:
        """A range read's pulls: up to ``_in_flight`` outstanding, the next one issued when the
        oldest has been received (``_refill_at``), each for at most the messages the range's
        sequences left can hold."""
        batch, cap = self._batch, (self._in_flight - 1) * self._batch
        until: int = self._until  # type: ignore[assignment]
        pulls = self._pulls
        self._a_drop_done()
        while not (self._closed or self._done):
            # (the filter's messages left in the range are at most its sequences left)
            left = until - self._next_seq + 1 - self._outstanding
            if left <= 0 or self._outstanding > cap or len(pulls) >= self._in_flight:
                break
            n = min(batch, left)
            self._outstanding += n
            pulls.append(self._cseq + self._outstanding)
            body = b'{"batch":%d,"expires":%d,"idle_heartbeat":%d}' % (n, _EXPIRES_NS, _HEARTBEAT_NS)
            self._last_activity = asyncio.get_running_loop().time()
            await self._b.nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{self._stream}.{self._consumer}",
                                     body, reply=self._inbox)
        if self._closed or self._done:
            return
        if not pulls or self._until - self._next_seq + 1 - self._outstanding <= 0:
            self._refill_at = 0  # every message the range can hold is asked for: only when all came
        else:
            self._refill_at = self._a_after_oldest()

    def _a_drop_done(self) -> None:
        """Forget the pulls that have all their messages."""
        pulls, cseq = self._pulls, self._cseq
        while pulls and pulls[0] <= cseq:
            pulls.popleft()

    def _a_after_oldest(self) -> int:
        """The outstanding count once the oldest pull outstanding has all its messages."""
        return self._outstanding - max(0, self._pulls[0] - self._cseq)

    def _a_maybe_pull(self) -> None:
        self._pull_scheduled = False
        if not self._outstanding and not self._rebuilding and not self._closed:
            asyncio.ensure_future(self._a_pull())

    async def _a_on_msg(self, msg: Any) -> None:
        """A message through nats-py's subscription task (a client without raw subscriptions)."""
        headers = msg.headers
        status = headers.get("Status") if headers else None
        if status is not None:
            self._last_activity = asyncio.get_running_loop().time()
            self._a_on_status(status, headers.get("Description", ""))
            return
        mid = headers.get("Nats-Msg-Id", "") if headers else ""
        if self._until is not None:
            self._a_keep(msg.subject, msg.reply, msg.data, None)
            return
        self._a_take(msg.subject, msg.reply, msg.data, mid)

    def _a_on_raw(self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        """A message as nats-py's parser cut it (bus/_bridge._Client.raw), on the asyncio loop."""
        if headers is not None and not data and headers.startswith(_STATUS_LINE):
            self._last_activity = asyncio.get_running_loop().time()
            line = headers[len(_STATUS_LINE):headers.find(b"\r\n")].decode(errors="replace")
            status, _, desc = line.partition(" ")
            if status != "100":
                self._a_on_status(status, desc.strip())
            return
        if self._until is not None:
            self._a_keep(subject, reply, data, headers)
            return
        self._a_take(subject.decode(), reply, data, _msg_id(headers))

    def _a_keep(self, subject: str | bytes, reply: str | bytes, data: bytes, headers: bytes | None) -> None:
        """A message of a reader opened with ``until``: kept as its subject's last, undecoded."""
        if self._done:
            return
        t = reply.split("." if isinstance(reply, str) else b".")  # type: ignore[arg-type]
        # (as _stream_seq, but the pending count only compared with zero)
        sseq, cseq, pending = (int(t[5]), int(t[6]), t[8]) if len(t) == 9 else (int(t[7]), int(t[8]), t[10])
        if cseq != self._cseq + 1 or sseq < self._next_seq:
            asyncio.ensure_future(self._a_rebuild())
            return
        self._cseq = cseq
        self._next_seq = sseq + 1
        until: int = self._until  # type: ignore[assignment]
        if sseq > until:
            self._done = True
        else:
            wanted = self._wanted
            if wanted is None:
                self._kept[subject] = (sseq, data)
            elif sseq in wanted:
                self._by_seq[sseq] = data
                if self._decrypt is not None:
                    self._subjects[sseq] = subject
            self._done = sseq == until or pending in ("0", b"0")
        if self._done:
            self.pending = int(pending)
            self._last_activity = self._b.loop.time()
            self._a_wake_trio()
            return
        if not cseq & 63:  # the watchdog's clock
            self._last_activity = self._b.loop.time()
        self._outstanding -= 1
        if self._outstanding <= self._refill_at:
            self._refill_at = -1
            self._outstanding = max(self._outstanding, 0)
            asyncio.ensure_future(self._a_pull())

    def _a_on_status(self, status: str, desc: str) -> None:
        """A status message, in order with the messages (the pull accounting depends on it): a pull
        ended before all its messages came, or the consumer is gone (rebuilt)."""
        if status == "100":
            return
        if status == "409" and "Leadership Change" not in desc and "Exceeded" not in desc or status == "503":
            asyncio.ensure_future(self._a_rebuild())
            return
        # 409 Exceeded MaxWaiting (and the other Exceeded limits), 400: the pull just issued, refused;
        # 409 Leadership Change: every pull (the new leader sends one per reply subject, and our pulls
        # share one); 404/408 (no messages, expired) and the rest: the oldest one ended.
        refused = status == "400" or "Exceeded" in desc
        if "Leadership Change" in desc:
            self._a_forget_pulls()
        else:
            self._a_end_pull(newest=refused)
        if refused and self._pulls:
            # The server holds more waiting pulls than we count (another's, a stale one): keep no
            # more than it took for the rest of this read, and ask again only once a pull of ours
            # ended (its last message; a status ends one otherwise), never at once (a 409 each time).
            self._in_flight = len(self._pulls)
            self._refill_at = self._a_after_oldest() if self._until is not None else -1
            return
        asyncio.ensure_future(self._a_pull())

    def _a_end_pull(self, *, newest: bool) -> None:
        """One outstanding pull ended before all its messages came: the oldest or the ``newest``. Its
        remaining messages are no longer outstanding (the later pulls' come that much sooner); the
        other pulls' still are."""
        self._a_drop_done()
        pulls, cseq = self._pulls, self._cseq
        if not pulls:
            self._outstanding = 0
            return
        if newest:
            end = pulls.pop()
            rest = end - max(pulls[-1] if pulls else cseq, cseq)
        else:
            rest = pulls.popleft() - cseq
            for i in range(len(pulls)):
                pulls[i] -= rest
        self._outstanding = max(0, self._outstanding - rest)

    def _a_take(self, subject: str, reply: str | bytes, data: bytes, mid: str) -> None:
        sseq, cseq, pending = _stream_seq(reply)
        if cseq != self._cseq + 1 or sseq < self._next_seq:
            # A gap (lost message) or a replay from a consumer we replaced: start over cleanly.
            asyncio.ensure_future(self._a_rebuild())
            return
        self._cseq = cseq
        self._next_seq = sseq + 1
        if pending == 0 or not cseq & 63:  # the watchdog's clock: a live tail's every message
            self._last_activity = self._b.loop.time()
        if self._decrypt is not None:
            try:
                data = self._decrypt(subject, data)
            except BusError as e:  # a message no configured key opens: the reader's caller decides
                self._error = e
                self._a_wake_trio()
                return
        buf = self._buf
        buf.append(LogMessage(sseq, subject, data, mid))
        self.pending = pending
        self._outstanding -= 1
        # Wake trio once per stretch of a pull rather than per message (each wake-up is a write to
        # trio's wake-up socket): at the pull's last message, when the stream has nothing more for
        # us (a live tail: at once), or every ``_WAKE_EVERY`` messages.
        if pending == 0 or self._outstanding <= 0 or len(buf) % _WAKE_EVERY == 0:
            self._a_wake_trio()
        if self._outstanding <= 0:
            self._outstanding = 0
            asyncio.ensure_future(self._a_pull())

    async def _a_unsubscribe(self) -> None:
        if self._sub is None:
            return
        if self._raw is not None:
            self._raw.pop(self._sub._id, None)
        try:
            await self._sub.unsubscribe()
        except Exception:  # noqa: BLE001, S110 - the old inbox is gone either way
            pass
        self._sub = None

    async def _a_rebuild(self) -> None:
        if self._rebuilding or self._closed:
            return
        self._rebuilding = True
        try:
            old = self._consumer
            delay = 0.05
            while not self._closed:
                try:
                    await self._b.nc.publish(f"$JS.API.CONSUMER.DELETE.{self._stream}.{old}", b"")
                    await self._a_create_consumer()
                    return
                except Exception as e:  # noqa: BLE001 - retried until closed; fatal ones end the reader
                    log.warning("recreating the consumer of %s from sequence %d failed: %r", self._filter,
                                self._next_seq, e)
                    if isinstance(e, BusError) and "stream not found" in str(e):
                        self._error = e
                        self._a_wake_trio()
                        return
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
        finally:
            self._rebuilding = False

    async def _a_watch(self) -> None:
        while not self._closed:
            await asyncio.sleep(_STALL_S / 3)
            now = asyncio.get_running_loop().time()
            if self._outstanding and now - self._last_activity > _STALL_S:
                self._a_forget_pulls()
                await self._a_rebuild()

    async def _a_close(self) -> None:
        self._closed = True
        self._b.remove_reconnect_callback(self._a_on_reconnect)
        if self._watchdog is not None:
            self._watchdog.cancel()
        try:
            await self._a_unsubscribe()
            if self._consumer:
                await self._b.nc.publish(f"$JS.API.CONSUMER.DELETE.{self._stream}.{self._consumer}", b"")
        except Exception:  # noqa: BLE001, S110 - the consumer expires by inactive_threshold anyway
            pass


async def open_reader(bridge: Bridge, stream: str, filter_subject: str, start_seq: int, *,
                      batch: int = 1024, decrypt: Callable[[str, bytes], bytes] | None = None,
                      until: int | None = None, wanted: set[int] | None = None, in_flight: int = 1) -> LogReader:
    """Create a reader; the caller must ``aclose()`` it (use it in ``try/finally``). ``until``: a
    range read up to that sequence, taken with :meth:`LogReader.last_per_subject`, or with
    ``wanted`` (sequences <= ``until``) with :meth:`LogReader.wanted_messages`; ``in_flight``: its
    pulls of ``batch`` outstanding at most (1 to 4)."""
    if bridge.nc is None:
        raise BusClosed("bus is not connected")
    if wanted is not None and until is None:
        raise ValueError("a reader of wanted sequences needs until")
    r = LogReader(bridge, stream, filter_subject, start_seq, batch=batch, decrypt=decrypt, until=until,
                  wanted=wanted, in_flight=in_flight)
    try:
        await r._open()
    except BaseException:
        await r.aclose()
        raise
    return r
