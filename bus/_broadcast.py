"""Best-effort broadcast on one core-NATS subject (no JetStream, no replies): gateways telling each
other small, periodic, replaceable facts (API Priority and Fairness' fleet demand reports).

Nothing here ever makes a trio caller wait on NATS:

- :meth:`Broadcast.publish` hands the message to the asyncio loop and returns at once; while
  disconnected it is dropped (the next period's report replaces it anyway);
- received messages go into a bounded trio channel; when the reader falls behind, new ones are
  dropped (:attr:`Broadcast.dropped` counts them) rather than buffered without bound;
- the subscription is made again after a replaced connection (nats-py re-subscribes by itself
  after an ordinary reconnect).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import trio

from ._bridge import Bridge
from ._errors import BusUnavailable

log = logging.getLogger("jetkube.bus")


class Subscription:
    """One core-NATS subscription on ``subject``, held from trio: :meth:`open` subscribes (bounded by
    ``timeout_s``), :meth:`aclose` unsubscribes (shielded, at most 2 s), a replaced connection is
    subscribed again. Subclasses take each message in :meth:`_a_on_msg` (on the asyncio side)."""

    def __init__(self, bridge: Bridge, subject: str, *, pending_msgs_limit: int) -> None:
        self._b = bridge
        self.subject = subject
        self._pending_msgs_limit = pending_msgs_limit
        self._sub: Any = None
        self._nc: Any = None
        self._closed = False

    async def open(self, *, timeout_s: float = 5.0) -> None:
        """Subscribe (raises BusTimeout/BusError when NATS does not answer within ``timeout_s``)."""
        await self._b.run_coro(self._a_subscribe(), timeout_s=timeout_s)
        self._b.add_reconnect_callback(self._a_on_reconnect)

    async def aclose(self) -> None:
        """Unsubscribe (shielded, at most 2 s; best effort: the connection's end unsubscribes too)."""
        if self._closed:
            return
        self._closed = True
        self._b.remove_reconnect_callback(self._a_on_reconnect)
        with trio.move_on_after(2) as scope:
            scope.shield = True
            try:
                await self._b.run_coro(self._a_unsubscribe(), timeout_s=1.5)
            except Exception:  # noqa: BLE001, S110 - best effort on shutdown
                pass

    # ---- asyncio side ------------------------------------------------------------------------

    async def _a_on_msg(self, msg: Any) -> None:
        raise NotImplementedError

    def _a_publish(self, subject: str, payload: bytes) -> None:
        """Publish without waiting (from the asyncio loop); lost while disconnected or closed."""
        nc = self._b.nc
        if nc is not None and not self._closed:
            asyncio.ensure_future(self._a_publish_now(nc, subject, payload))

    async def _a_publish_now(self, nc: Any, subject: str, payload: bytes) -> None:
        try:
            await nc.publish(subject, payload)
        except Exception as e:  # noqa: BLE001 - best effort: the next report replaces it, a requester times out
            log.debug("publish on %s (for %s) lost: %s", subject, self.subject, e)

    async def _a_subscribe(self) -> None:
        nc = self._b.nc
        if nc is None:
            raise BusUnavailable(f"not connected to NATS: cannot subscribe {self.subject}")
        if self._nc is nc and self._sub is not None:
            return  # an ordinary reconnect: nats-py re-subscribed this connection's subscriptions
        self._nc = nc
        self._sub = await nc.subscribe(self.subject, cb=self._a_on_msg, pending_msgs_limit=self._pending_msgs_limit)
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


class Broadcast(Subscription):
    """Publish to and receive from ``subject``. Open with :meth:`open` (bounded by ``timeout_s``),
    close with :meth:`aclose`."""

    def __init__(self, bridge: Bridge, subject: str, *, max_pending: int = 256) -> None:
        super().__init__(bridge, subject, pending_msgs_limit=1024)
        self._send, self.received = trio.open_memory_channel[bytes](max_pending)
        self.dropped = 0
        self.published = 0

    def publish(self, payload: bytes) -> bool:
        """Send ``payload`` without waiting; False when it was dropped (not connected)."""
        if self._closed or not self._b.connected:
            return False
        try:
            self._b.loop.call_soon_threadsafe(self._a_publish, self.subject, payload)
        except RuntimeError:  # the loop is closed: shutting down
            return False
        self.published += 1
        return True

    async def aclose(self) -> None:
        await super().aclose()
        self._send.close()

    # ---- asyncio side ------------------------------------------------------------------------

    async def _a_on_msg(self, msg: Any) -> None:
        try:
            self._b.trio_token.run_sync_soon(self._t_deliver, msg.data)
        except RuntimeError:  # the trio run is over
            pass

    def _t_deliver(self, data: bytes) -> None:
        try:
            self._send.send_nowait(data)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            self.dropped += 1
