"""Pacing of rejected HTTP/1.1 connections: after a 429, a connection's next request is read only
when its flow has a free slot.

A flood on keep-alive connections answered with 429s sends its next request the moment each 429
arrives, so every flooding connection always has a request ready: under B12's flood (1,000
connections per gateway) trio's run queue held ~150-300 of them in each turn, a turn took tens of
milliseconds (up to hundreds), and every scheduling point of a quiet tenant's request paid a whole
turn. A 429 costs about as much CPU as a no-op request (hypercorn + trio), so answering them faster
is not enough.

Instead, once a connection has been answered 429 (with ``Retry-After``), the next bytes it sends are
handed to the HTTP parser only after the connection gets one of :attr:`RejectPacer.slots` slots of
its flow: the tenant flow control charged the rejected request to (:func:`pace_key`; the app puts
it into the request's scope, gateway/_hypercorn_ext.PACE_KEY). The slot is held
until that connection's next response starts (or it closes; or the app passes the request on to be
queued or served; at most :data:`HOLD_S`), so at most ``slots`` rejected
connections of a tenant are being parsed, routed and answered at once; the rest wait in a FIFO per
tenant, each parked on an event (not runnable). The 429 itself goes out at once; nothing is held. A
connection whose request was admitted is not paced; a well-behaved client waits ``Retry-After``
anyway.

A new connection's first request is paced the same way while its tenant is being paced by a
connection from the same client address (its request line read from the first bytes, its path
decoded and split as the router does: :func:`first_request_key`; the probes, ``/healthz``,
``/livez``, ``/readyz``, never; a client whose address flow control has not rejected for that
tenant cannot take the tenant's slots with unauthenticated first requests): a flood opening its connections (B12: 1,000 at once) would
otherwise put all their first requests on the loop together — before that, the quiet tenant's
latency stayed within 2x only once every flood connection had had its first answer. Only HTTP/1.x
connections are paced (HTTP/2 streams share a connection).

A flow's slots are also handed on at most :data:`PACE_RATE` a second (:meth:`RejectPacer.when_due`):
a 429 answered faster only brings the flood's next request sooner, so concurrency alone does not
bound the share of the loop a flood's rejections take; the rate does (a client told ``Retry-After``
seconds is read again sooner than it was told, but no longer at once).
A connection given a slot is parsed in one of the event loop's idle moments (:meth:`RejectPacer.when_idle`:
no task runnable, no socket ready; at most :data:`DEFER_MAX_S` later), so a flood's rejections run
when nothing else waits for the loop. And the same request again, byte for byte (a flood's requests
are identical), is answered by the reject gate before it is parsed (``PACE_REPLAY``,
gateway/_hypercorn_ext.py and gateway/_gate.py): no h11, no request task, no routing.

Bounds: one entry per level with a connection holding or waiting for a slot (dropped when idle), one
waiter per connection (a connection waits for at most one slot at a time).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from urllib.parse import unquote

import trio
import trio.testing

from actors._flowcontrol import flow_tenant

from ._routes import split_tenant

#: Rejected connections of one flow (tenant) parsed and answered at once.
PACE_SLOTS = 2
#: A slot is taken back from a connection holding it this long (seconds), its request going on: a
#: client dribbling its request, or a slow answer, cannot keep its tenant's slots.
HOLD_S = 1.0
#: A connection given a slot is parsed once the event loop has nothing else to run (no task runnable,
#: no socket ready: trio's ``wait_all_tasks_blocked``), or after this long (seconds) at the latest:
#: a flood's rejections are answered in the loop's idle moments, not between a quiet tenant's steps.
#: (With 50 ms, on a loop never idle — two gateways each given 0.12 cores at load 9 — a tenant's 2
#: slots passed 40 connections a second and 214 of the flood's requests waited over 20 s.)
DEFER_MAX_S = 0.01
#: At most this many paced connections of one flow are let on per second (their slots handed out at
#: most this often): a flood answered faster only sends faster (each 429 brings the next request at
#: once), so the slots bound the flood's concurrency and this its rate, so its share of the loop.
PACE_RATE = 200.0
#: The probes' paths (kube's mandatory ``probes`` FlowSchema exempts them): never paced.
_PROBES = ("healthz", "livez", "readyz")


def pace_key(path: str) -> str | None:
    """The pacing flow of a request by its (percent-decoded) path, as routed: the tenant flow
    control charges it to (``actors._flowcontrol.flow_tenant`` of ``gateway._routes.split_tenant``:
    ``/clusters/*/`` is root's); None for a probe (``/healthz``, ``/livez``, ``/readyz`` and below,
    in any tenant), which is never paced."""
    tenant, inner = split_tenant(path)
    if inner[1:].partition("/")[0] in _PROBES:
        return None
    return flow_tenant(tenant)


def request_target(data: bytes) -> bytes | None:
    """The target of the HTTP/1.x request line at the start of ``data`` (None: not there whole)."""
    sp = data.find(b" ", 0, 16)
    if sp < 0:
        return None
    end = data.find(b" ", sp + 1, sp + 8193)
    return data[sp + 1:end] if end > sp else None


def first_request_key(data: bytes) -> str | None:
    """:func:`pace_key` of the HTTP/1.x request whose line starts ``data`` (None: the line is not
    there whole, or its target is not a path), its target decoded as hypercorn decodes the scope's
    ``path`` (percent-decoding, query dropped)."""
    target = request_target(data)
    if target is None or not target.startswith(b"/"):
        return None
    try:
        path = unquote(target.partition(b"?")[0].decode("ascii"))
    except UnicodeDecodeError:
        return None  # (hypercorn refuses it)
    return pace_key(path)


@dataclass
class _Flow:
    busy: int = 0
    waiters: deque[trio.Event] = field(default_factory=deque)
    next_at: float = 0.0  #: when the next slot holder may go on (:meth:`RejectPacer.when_due`)
    #: The client addresses of the connections holding or waiting for a slot, and how many each.
    sources: dict[str, int] = field(default_factory=dict)


class RejectPacer:
    """Per flow, at most :attr:`slots` rejected connections read at once; the others wait in FIFO
    order (see the module docstring)."""

    def __init__(self, slots: int = PACE_SLOTS, defer_max_s: float = DEFER_MAX_S, rate: float = PACE_RATE) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self.slots = slots
        self.defer_max_s = defer_max_s
        self.rate = rate
        self._flows: dict[str, _Flow] = {}
        self.paced = 0  #: connections that waited for a slot (a counter)
        self.admitted = 0  #: slots taken (a counter)
        self.deferred = 0  #: slot holders that waited for the loop to be idle (a counter)
        self.deferred_max = 0  #: of which the loop was not idle within ``defer_max_s`` (a counter)

    def waiting(self, key: str | None = None) -> int:
        """Connections waiting for a slot (of ``key``, or of every flow)."""
        flows = self._flows.values() if key is None else [self._flows[key]] if key in self._flows else []
        return sum(len(f.waiters) for f in flows)

    def active(self, key: str, source: str | None = None) -> bool:
        """Whether ``key``'s flow is being paced (a slot held or waited for), by a connection from
        ``source`` (a client address) if given."""
        f = self._flows.get(key)
        return f is not None and (source is None or source in f.sources)

    def busy(self, key: str) -> int:
        f = self._flows.get(key)
        return f.busy if f else 0

    def flows(self) -> dict[str, tuple[int, int]]:
        """Per flow being paced: (slots held, connections waiting) (``jetkube_apf_pacing_*``)."""
        return {k: (f.busy, len(f.waiters)) for k, f in self._flows.items()}

    async def acquire(self, key: str, source: str = "") -> None:
        """Wait for a slot of ``key``'s flow (FIFO) for a connection from ``source``; the caller must
        :meth:`release` it (with the same ``source``)."""
        f = self._flows.get(key)
        if f is None:
            f = self._flows[key] = _Flow()
        f.sources[source] = f.sources.get(source, 0) + 1
        if f.busy < self.slots and not f.waiters:
            f.busy += 1  # (no checkpoint: a free slot costs no turn of the run queue)
            self.admitted += 1
            return
        ev = trio.Event()
        f.waiters.append(ev)
        self.paced += 1
        try:
            await ev.wait()
        except BaseException:
            if ev.is_set():  # the slot was handed over as this was cancelled: pass it on
                self.release(key, source)
            else:
                f.waiters.remove(ev)
                _forget(f, source)
                if not f.busy and not f.waiters:
                    self._flows.pop(key, None)
            raise
        self.admitted += 1

    async def when_due(self, key: str) -> None:
        """Wait until ``key``'s flow may let its next slot holder on: at most :attr:`rate` a second
        (0: no bound). The caller holds a slot of ``key``."""
        f = self._flows.get(key)
        if f is None or self.rate <= 0:
            return
        now = trio.current_time()
        at = max(now, f.next_at)
        f.next_at = at + 1.0 / self.rate
        if at > now:
            await trio.sleep_until(at)

    async def when_idle(self) -> None:
        """Wait until the event loop has nothing else to run, at most
        :attr:`defer_max_s`: a slot's holder calls it before its bytes are parsed, so a paced
        connection's work runs when no other task waits for the loop (a quiet tenant's request
        then waits for at most the one step running, not for a flood's whole batch)."""
        if self.defer_max_s <= 0:
            return
        self.deferred += 1
        with trio.move_on_after(self.defer_max_s) as scope:
            await trio.testing.wait_all_tasks_blocked()
        if scope.cancelled_caught:
            self.deferred_max += 1

    def release(self, key: str, source: str = "") -> None:
        """Give a slot of ``key`` back (taken for a connection from ``source``): to the first waiter,
        else free."""
        f = self._flows.get(key)
        if f is None:
            return
        _forget(f, source)
        if f.waiters:
            f.waiters.popleft().set()  # handed over: busy stays
            return
        f.busy -= 1
        if f.busy <= 0:
            del self._flows[key]


def _forget(f: _Flow, source: str) -> None:
    n = f.sources.get(source, 0) - 1
    if n > 0:
        f.sources[source] = n
    else:
        f.sources.pop(source, None)
