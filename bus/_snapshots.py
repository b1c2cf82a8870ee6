"""Where projection snapshots are kept: a JetStream Object Store bucket, and a KV lease on who writes.

Snapshots are opaque bytes here (their format, checks and meaning are projections/_snapshot.py's).
The bucket is ``<stream>_SNAPSHOTS`` (stream ``OBJ_<stream>_SNAPSHOTS``), one object per snapshot
named ``projection-<sequence, 20 digits>``, so the newest sorts last and a listing tells each one's
sequence without reading it. nats-py chunks an object (here 512 KiB per message) and checks its
SHA-256 digest on the way back. The lease is the key ``projection`` of the KV bucket
``<stream>_SNAPLEASE``, a :class:`bus.LeasedCursor` (bus/_cursor.py, the one lease of the code
base: compare-and-swap only), so of a fleet of gateways exactly one writes while its lease is
fresh; the others take over when it lapses.

Reading never creates anything: a gateway whose stream has no snapshot bucket starts from sequence 1.
"""

from __future__ import annotations

import io
import re
from typing import Any

import nats.errors
import nats.js.errors
import trio
from nats.js.api import ObjectMeta, ObjectMetaOptions, ObjectStoreConfig, StorageType

from ._bridge import Bridge
from ._cursor import LeasedCursor
from ._errors import BusError

__all__ = ["SnapshotBucket", "snapshot_name", "snapshot_seq"]

_NAME = re.compile(r"^projection-(\d{20})$")
_CHUNK = 512 * 1024
_LEASE_KEY = "projection"


def snapshot_name(seq: int) -> str:
    return f"projection-{seq:020d}"


def snapshot_seq(name: str) -> int | None:
    """The sequence in a snapshot's object name; None for any other name."""
    m = _NAME.match(name)
    return int(m.group(1)) if m else None


class SnapshotBucket:
    """The snapshots of one log stream. Every method is trio-native and bounded in time; failures
    of NATS surface as :class:`BusError`."""

    def __init__(self, bridge: Bridge, stream: str, *, replicas: int = 1, timeout_s: float = 30.0) -> None:
        self._b = bridge
        self.stream = stream
        self.bucket = f"{stream}_SNAPSHOTS"
        self.lease_bucket = f"{stream}_SNAPLEASE"
        self.replicas = replicas
        self.timeout_s = timeout_s
        self._lease = LeasedCursor(bridge, self.lease_bucket, _LEASE_KEY, replicas=replicas,
                                   description="jetkube: which gateway writes the projection snapshots")

    async def _run(self, coro: Any, what: str, timeout_s: float | None = None) -> Any:
        try:
            return await self._b.run_coro(coro, timeout_s=self.timeout_s if timeout_s is None else timeout_s)
        except trio.TooSlowError as e:
            raise BusError(f"{what}: no answer within {timeout_s or self.timeout_s}s") from e
        except (nats.errors.Error, OSError) as e:
            raise BusError(f"{what}: {type(e).__name__}: {e}") from e

    # ---- asyncio side ------------------------------------------------------------------------------

    async def _a_obs(self, create: bool) -> Any:
        js = self._b.nc.jetstream()
        if create:
            return await js.create_object_store(self.bucket, config=ObjectStoreConfig(
                description="jetkube projection snapshots", storage=StorageType.FILE, replicas=self.replicas))
        try:
            return await js.object_store(self.bucket)
        except nats.js.errors.NotFoundError:
            return None

    async def _a_list(self) -> list[tuple[int, str, int]]:
        obs = await self._a_obs(False)
        if obs is None:
            return []
        try:
            infos = await obs.list(ignore_deletes=True)
        except nats.js.errors.NotFoundError:
            return []
        out = []
        for i in infos:
            seq = snapshot_seq(i.name or "")
            if seq is not None and not i.deleted:
                out.append((seq, i.name, int(i.size or 0)))
        return sorted(out)

    async def _a_get(self, name: str) -> bytes:
        obs = await self._a_obs(False)
        if obs is None:
            raise nats.js.errors.ObjectNotFoundError()
        sink = io.BytesIO()  # written into chunk by chunk: no quadratic joining of a large object
        await obs.get(name, writeinto=sink)
        return sink.getvalue()

    async def _a_put(self, name: str, data: bytes) -> None:
        obs = await self._a_obs(True)
        await obs.put(name, data, meta=ObjectMeta(name=name, options=ObjectMetaOptions(max_chunk_size=_CHUNK)))

    async def _a_delete(self, name: str) -> None:
        obs = await self._a_obs(False)
        if obs is not None:
            try:
                await obs.delete(name)
            except nats.js.errors.NotFoundError:
                pass

    # ---- trio side ---------------------------------------------------------------------------------

    async def list(self) -> list[tuple[int, str, int]]:
        """(sequence, object name, size) of every snapshot, oldest first; [] without a bucket."""
        return list(await self._run(self._a_list(), f"listing {self.bucket}"))

    async def get(self, name: str, *, timeout_s: float | None = None) -> bytes:
        return bytes(await self._run(self._a_get(name), f"reading {self.bucket}/{name}", timeout_s))

    async def put(self, name: str, data: bytes) -> None:
        """Store a snapshot (creating the bucket on first use)."""
        await self._run(self._a_put(name, data), f"writing {self.bucket}/{name}")

    async def delete(self, name: str) -> None:
        await self._run(self._a_delete(name), f"deleting {self.bucket}/{name}")

    async def lease(self, holder: str, ttl_s: float) -> bool:
        """Take or renew the writer's lease for ``ttl_s``; False while another holder's is fresh."""
        return await self._lease.claim(holder, ttl_s) is not None

    async def release(self, holder: str) -> None:
        """Give the lease up (when ``holder`` has it), so another gateway can take it at once."""
        await self._lease.release(holder)
