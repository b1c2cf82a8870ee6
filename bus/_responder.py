"""Answer core-NATS requests on one subject from trio (no JetStream, no queue group): the one
responder of a subject, e.g. the gateway that owns a shard of the fleet's per-tenant seat budgets
(actors/_apf_fleet.py). While nobody subscribes, requesters get "no responders" at once.

The handler is a plain function, called in the trio run (the state it reads and changes lives
there), that returns the reply's bytes (None: no reply; the requester times out). Nothing here
makes trio wait on NATS:

- a request crosses to trio with ``run_sync_soon``; at most ``max_pending`` are in that crossing at
  once, and beyond it new requests are dropped (:attr:`Responder.dropped`) rather than queued
  without bound (their requesters time out, as with a slow owner);
- the reply is handed to the asyncio loop without waiting; while disconnected it is lost;
- the subscription is made again after a replaced connection (nats-py re-subscribes by itself after
  an ordinary reconnect).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import trio

from ._bridge import Bridge
from ._errors import BusUnavailable

log = logging.getLogger("jetkube.bus")


class Responder:
    """Answer requests on ``subject`` with ``handler(data) -> reply bytes | None``. Open with
    :meth:`open` (bounded by ``timeout_s``), close with :meth:`aclose` (bounded)."""

    def __init__(self, bridge: Bridge, subject: str, handler: Callable[[bytes], bytes | None], *,
                 max_pending: int = 1024) -> None:
        self._b = bridge
        self.subject = subject
        self.handler = handler
        self.max_pending = max_pending
        self._pending = 0  # requests handed to trio and not yet handled (asyncio side counts up)
        self._done = 0  # of those, handled (trio side counts up; read by asyncio: monotonic ints)
        self._sub: Any = None
        self._nc: Any = None
        self._closed = False
        self.dropped = 0
        self.answered = 0

    async def open(self, *, timeout_s: float = 5.0) -> None:
        """Subscribe (raises BusTimeout/BusError when NATS does not answer within ``timeout_s``)."""
        await self._b.run_coro(self._a_subscribe(), timeout_s=timeout_s)
        self._b.add_reconnect_callback(self._a_on_reconnect)

    async def aclose(self) -> None:
        """Unsubscribe (shielded, at most 2 s): requesters get "no responders" from then on."""
        if self._closed:
            return
        self._closed = True
        self._b.remove_reconnect_callback(self._a_on_reconnect)
        with trio.move_on_after(2) as scope:
            scope.shield = True
            try:
                await self._b.run_coro(self._a_unsubscribe(), timeout_s=1.5)
            except Exception:  # noqa: BLE001, S110 - best effort: the connection's end unsubscribes too
                pass

    # ---- asyncio side ------------------------------------------------------------------------

    async def _a_subscribe(self) -> None:
        nc = self._b.nc
        if nc is None:
            raise BusUnavailable(f"not connected to NATS: cannot subscribe {self.subject}")
        if self._nc is nc and self._sub is not None:
            return
        self._nc = nc
        self._sub = await nc.subscribe(self.subject, cb=self._a_on_msg, pending_msgs_limit=self.max_pending)
        await nc.flush(timeout=5)  # the server has the subscription when open() returns

    async def _a_unsubscribe(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()

    async def _a_on_reconnect(self) -> None:
        if not self._closed:
            try:
                await self._a_subscribe()
            except Exception as e:  # noqa: BLE001 - tried again at the next reconnect
                log.warning("re-subscribing %s failed: %s", self.subject, e)

    async def _a_on_msg(self, msg: Any) -> None:
        if self._closed or not msg.reply:
            return
        if self._pending - self._done >= self.max_pending:
            self.dropped += 1
            return
        self._pending += 1
        try:
            self._b.trio_token.run_sync_soon(self._t_handle, msg.data, msg.reply)
        except RuntimeError:  # the trio run is over
            self._done += 1

    def _a_reply(self, reply: str, data: bytes) -> None:
        nc = self._b.nc
        if nc is not None and not self._closed:
            asyncio.ensure_future(self._a_send(nc, reply, data))

    async def _a_send(self, nc: Any, reply: str, data: bytes) -> None:
        try:
            await nc.publish(reply, data)
        except Exception as e:  # noqa: BLE001 - the requester times out and falls back
            log.debug("reply on %s lost: %s", self.subject, e)

    # ---- trio side ---------------------------------------------------------------------------

    def _t_handle(self, data: bytes, reply: str) -> None:
        self._done += 1
        if self._closed:
            return
        try:
            out = self.handler(data)
        except Exception:
            log.exception("handler of %s failed", self.subject)
            return
        if out is None:
            return
        try:
            self._b.loop.call_soon_threadsafe(self._a_reply, reply, out)
        except RuntimeError:  # the loop is closed: shutting down
            return
        self.answered += 1
