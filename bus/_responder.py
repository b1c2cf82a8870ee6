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

import logging
from collections.abc import Callable
from typing import Any

from ._bridge import Bridge
from ._broadcast import Subscription

log = logging.getLogger("jetkube.bus")


class Responder(Subscription):
    """Answer requests on ``subject`` with ``handler(data) -> reply bytes | None``. Open with
    :meth:`open` (bounded by ``timeout_s``), close with :meth:`aclose` (bounded)."""

    def __init__(self, bridge: Bridge, subject: str, handler: Callable[[bytes], bytes | None], *,
                 max_pending: int = 1024) -> None:
        super().__init__(bridge, subject, pending_msgs_limit=max_pending)
        self.handler = handler
        self.max_pending = max_pending
        self._pending = 0  # requests handed to trio and not yet handled (asyncio side counts up)
        self._done = 0  # of those, handled (trio side counts up; read by asyncio: monotonic ints)
        self.dropped = 0
        self.answered = 0

    # ---- asyncio side ------------------------------------------------------------------------

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
            self._b.loop.call_soon_threadsafe(self._a_publish, reply, out)
        except RuntimeError:  # the loop is closed: shutting down
            return
        self.answered += 1
