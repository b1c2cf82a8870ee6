"""A leased cursor: one KV key that says which gateway of a fleet follows something, and how far it got.

This is the one lease of the code base: the projection snapshots' writer (bus/_snapshots.py), the
webhook audit backend (gateway/_audit_webhook.py) and history retention's purger
(actors/_retention.py) each hold one key of their own bucket through it.

The value is ``{"holder": ..., "until": unix time, "state": {...}}`` in the KV bucket given. It is
taken, renewed and advanced only with compare-and-swap (create, or update at the revision read): of
a fleet exactly one holder works while its lease is fresh, the others take over when it lapses (or
at once when the holder releases it), and the taker starts from the state the last holder wrote
(the audit webhook's positions in the log and the audit stream; the others keep none).
"""

from __future__ import annotations

import json
import time
from typing import Any

import nats.errors
import nats.js.errors
import trio
from nats.js.api import KeyValueConfig, StorageType

from ._bridge import Bridge
from ._errors import BusError

__all__ = ["LeasedCursor"]


class LeasedCursor:
    """One key of one KV bucket (created on first use). Every method is trio-native and bounded."""

    def __init__(self, bridge: Bridge, bucket: str, key: str, *, replicas: int = 1,
                 description: str = "jetkube: a leased cursor", timeout_s: float = 10.0) -> None:
        self._b = bridge
        self.bucket = bucket
        self.key = key
        self.replicas = replicas
        self.description = description
        self.timeout_s = timeout_s
        self._kv: Any = None
        self._kv_nc: Any = None
        self._lock = trio.Lock()  # one compare-and-swap at a time from this holder
        #: The key's revision this holder last wrote (0: none yet). It grows as long as the bucket
        #: lives, so the revision written when a holder took the lease over is a fencing token (an
        #: epoch) for it; a bucket deleted and made again starts again at 1 (its readers must allow
        #: for that: ``actors/_apf_fleet.SeatLeases.settle``).
        self.revision = 0

    async def _a_kv(self) -> Any:
        if self._kv is None or self._kv_nc is not self._b.nc:
            self._kv_nc = self._b.nc
            js = self._kv_nc.jetstream()
            try:
                self._kv = await js.create_key_value(KeyValueConfig(
                    bucket=self.bucket, history=1, storage=StorageType.FILE, replicas=self.replicas,
                    description=self.description))
            except nats.js.errors.BadRequestError:
                # The bucket exists with another configuration (e.g. made by another version's
                # description or replica count): use it as it is.
                self._kv = await js.key_value(self.bucket)
        return self._kv

    async def _a_swap(self, holder: str, ttl_s: float, state: dict[str, Any] | None,
                      release: bool) -> dict[str, Any] | None:
        try:
            return await self._a_swap_once(holder, ttl_s, state, release)
        except (nats.js.errors.NoStreamResponseError, nats.errors.NoRespondersError):
            # The bucket's stream is gone (deleted: an operator wiped it; or, in a cluster, no leader
            # for a moment): made again, as on first use, and tried once more. A bucket made again
            # starts its revisions at 1 again: ``revision`` may go down (see its comment).
            self._kv = None
            return await self._a_swap_once(holder, ttl_s, state, release)

    async def _a_swap_once(self, holder: str, ttl_s: float, state: dict[str, Any] | None,
                           release: bool) -> dict[str, Any] | None:
        kv = await self._a_kv()
        now = time.time()
        try:
            entry = await kv.get(self.key)
        except nats.js.errors.KeyNotFoundError:
            entry = None
        cur: dict[str, Any] = {}
        if entry is not None:
            try:
                cur = dict(json.loads(entry.value or b"{}"))
            except (ValueError, TypeError):
                cur = {}  # unreadable: lapsed, no state
            if str(cur.get("holder", "")) != holder and float(cur.get("until", 0) or 0) > now:
                return None  # another holder's lease is fresh
            if release and cur.get("holder") != holder:
                return None
        new_state = dict(cur.get("state") or {}) if state is None else state
        value = json.dumps({"holder": holder, "until": 0.0 if release else now + ttl_s,
                            "state": new_state}).encode()
        try:
            if entry is None:
                self.revision = int(await kv.create(self.key, value))
            else:
                self.revision = int(await kv.update(self.key, value, last=entry.revision))
        except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.BadRequestError):
            return None  # another holder took or renewed it in between
        return new_state

    async def _run(self, coro: Any, what: str) -> Any:
        try:
            return await self._b.run_coro(coro, timeout_s=self.timeout_s)
        except trio.TooSlowError as e:
            raise BusError(f"{what}: no answer within {self.timeout_s}s") from e
        except (nats.errors.Error, OSError) as e:
            raise BusError(f"{what}: {type(e).__name__}: {e}") from e

    async def claim(self, holder: str, ttl_s: float, state: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Take or renew the lease for ``ttl_s``, writing ``state`` (None: keep the stored one).
        The state now stored when ``holder`` holds the lease; None while another holder's is fresh."""
        async with self._lock:
            return await self._run(self._a_swap(holder, ttl_s, state, False), f"lease {self.bucket}/{self.key}")

    async def release(self, holder: str, state: dict[str, Any] | None = None) -> None:
        """Give the lease up (when ``holder`` has it), keeping ``state``, so another can take it at once."""
        async with self._lock:
            await self._run(self._a_swap(holder, 0.0, state, True), f"releasing {self.bucket}/{self.key}")
