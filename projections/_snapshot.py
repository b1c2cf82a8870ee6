"""Projection snapshots: the store's objects as of a log sequence, so a start folds only the tail.

A start loads the newest valid snapshot and reads the log from its sequence + 1; without one (or
when none is valid) it folds the log from sequence 1, as before. The log stays the only source of
truth (ARCHITECTURE.md decision 1): a snapshot is a cache of a fold, checked before it is used and
never trusted when a check fails (it is then logged, counted in /metrics, and the previous snapshot,
or a full fold, is used instead).

Format (``FORMAT`` 2; 1 is still read), one JetStream object (bus/_snapshots.py)::

    MAGIC (8 bytes) | header length (4 bytes, big endian) | header (msgpack) | body

The header names the format, the stream's identity (its name and creation time: a stream deleted
and created again is another stream), the subject prefix, the sequence, the object count, and the
body's length and SHA-256. The body is a zstd stream (with zstd's own content checksum) of frames,
each a 4-byte length and a msgpack ``[tenant, group, resource, rows]``, ``rows`` being up to 4,096
objects as ``[namespace, name, seq, json, labels, fields, rv_at]`` (what the store keeps of each),
msgpack-encoded and, for resources that encryption at rest covers (``--encryption-provider-
config``), encrypted as their events are in the log, so a snapshot holds no plaintext the log does
not. Every resource appears, in the store's order, an empty one as one frame without rows.
Format 2 frames carry a fifth element: empty in the rows' frames; after a resource's rows, frames
without rows carry its revision index (projections/_revindex.py) as a msgpack ``[floor, revisions,
entries]``, ``entries`` being up to 4,096 objects as ``[namespace, name, sequences]`` (the index's
int64 values, little endian), encrypted as the rows are. A store restored from a format 1 snapshot
starts each resource's index at the snapshot's sequence (each object's entry); from format 2, with
the whole index, so an Exact read older than the snapshot still knows which messages to read.

What is checked on load: the magic, the format, the stream identity and prefix, that the sequence
is not beyond the stream's head nor below the highest tombstone history retention purged (the
compaction record's H, bus ``Log.compaction_record``: the tail after such a snapshot would miss
that deletion; every other message retention purges has a later revision of its object kept, so a
snapshot below the compaction point but at or above H folds exactly), the length and SHA-256 of the body, zstd's checksum, the types of
every row, that no row is newer than the snapshot, and the object count; of a carried revision index,
that no revision is newer than the snapshot and each object's last one at it is its row's. The RBAC and CRD views
are rebuilt from the restored objects in sequence order (as a fold would have applied them).

Rings of recent changes are not kept: after a start from a snapshot every resource's ring starts
empty with its floor at the snapshot's sequence, so a watch (or a continue token) from an older
resourceVersion is served from the log (projections/_projection.py ``_from_log``), exactly as when
the ring has moved past it; a watch across tenants (``/clusters/*/``) too, every tenant's subjects
read from the log in one pass.

Writing: only the gateway holding the writer's lease (bus/_snapshots.py) writes, in the background:
the store is captured in one step between two applied batches (references only: objects are never
mutated once applied), then encoded and compressed in a worker thread, the lease renewed (nothing is
uploaded if it was lost meanwhile) and uploaded on the NATS thread; the fold, reads and writes go on
meanwhile. Two snapshots written at once would both be valid (each a consistent state at its own
sequence): the lease saves work, correctness never depends on it. A snapshot is due when the store moved at least
``every_events`` past the last one, or moved at all and ``every_s`` passed; never sooner than
``min_interval_s`` after the previous one. ``keep`` snapshots are kept (the newest first on load).
"""

from __future__ import annotations

import datetime
import gc
import hashlib
import io
import logging
import sys
import uuid
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

import msgspec
import trio
import zstandard

from bus import BusError, Key, Log, SnapshotBucket, object_subject, snapshot_name

from ._crds import CRD_KEY, CrdView
from ._rbac import RBAC_GROUP, RbacIndex
from ._revindex import Revisions
from ._store import Entry, ResourceState, Store

_log = logging.getLogger("jetkube.projections")

FORMAT = 2
_READS = (1, 2)
MAGIC = b"JKSNAP\x00\x01"
_ROWS_PER_FRAME = 4096
_ZSTD_LEVEL = 3

Row = tuple[str, str, int, bytes, dict[str, str], dict[str, str], int]
Blocks = list[tuple[str, str, str, list[Row]]]
Decrypt = Callable[[str, bytes], bytes]


class SnapshotHeader(msgspec.Struct, frozen=True):
    format: int
    stream: str  # the stream's identity (bus.Log.identity): name and creation time
    prefix: str
    seq: int
    objects: int
    resources: int
    body_bytes: int
    body_sha256: str
    raw_bytes: int = 0
    compression: str = "zstd"
    skipped: int = 0  # the store's count of messages under the prefix that were not ours
    written_at: str = ""
    writer: str = ""


class SnapshotInvalid(Exception):
    """A snapshot that must not be used. ``reason``: corrupt, mismatch or format."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class SnapshotSettings:
    load: bool = True  # start from the newest valid snapshot
    write: bool = True  # take part in writing them (the lease holder writes)
    every_events: int = 50_000
    every_s: float = 600.0
    min_interval_s: float = 30.0
    keep: int = 2
    lease_s: float = 30.0  # the writer renews its lease every third of this
    check_s: float = 1.0  # how often the writer looks whether one is due
    load_timeout_s: float = 60.0  # reading one snapshot; past it, the previous one or a full fold


@dataclass
class SnapshotStats:
    """What /metrics shows of snapshots (gateway/_metrics.py)."""

    loaded_seq: int = 0  # the sequence the projection started from (0: a full fold)
    load_s: float = 0.0  # time to find, read, check and restore it
    loaded_bytes: int = 0
    #: Snapshots refused on load, by reason (corrupt, mismatch, format, unreadable, compacted).
    rejected: dict[str, int] = field(default_factory=lambda: {"corrupt": 0, "mismatch": 0, "format": 0,
                                                              "unreadable": 0, "compacted": 0})
    written: int = 0
    write_failures: int = 0
    last_written_seq: int = 0
    last_write_s: float = 0.0
    last_bytes: int = 0
    last_objects: int = 0
    lease_held: bool = False


# ---- capture, encode, decode, restore (no I/O) ---------------------------------------------------

@dataclass(frozen=True)
class Capture:
    """The store's objects at ``seq``, by reference: taken synchronously, encoded elsewhere."""

    seq: int
    skipped: int
    blocks: list[tuple[str, str, str, list[tuple[str, dict[str, Entry]]]]]
    #: Each resource's revision index (in ``blocks``' order): floor, revisions, (namespace, name,
    #: sequences as the index's int64 values, little endian).
    indexes: list[tuple[int, int, list[tuple[str, str, bytes]]]] = field(default_factory=list)

    @property
    def objects(self) -> int:
        return sum(len(d) for _, _, _, nss in self.blocks for _, d in nss)


def capture(store: Store) -> Capture:
    """A consistent view of ``store`` as of ``store.applied``: call between two applied batches
    (from the trio thread, with no checkpoint inside, which this is). Copies the namespace dicts,
    not the objects (entries are immutable once applied), and copies the revision indexes' arrays
    (they grow in place)."""
    return Capture(store.applied, store.skipped,
                   [(t, g, r, [(ns, d.copy()) for ns, d in st.by_ns.items()])
                    for (t, g, r), st in store.resources.items()],
                   [(st.revs.floor, st.revs.revisions, _index_rows(st.revs)) for st in store.resources.values()])


def _index_rows(revs: Revisions) -> list[tuple[str, str, bytes]]:
    """Every object's revisions as (namespace, name, little-endian int64s), in ``revs.items()`` order.
    One comprehension over the dicts, not the generator and a call per object: capture runs in one
    step of the trio thread (2.5x less: 7.6 instead of 19 ms at 50,000 objects)."""
    if sys.byteorder == "little":
        return [(ns, n, a.tobytes()) for ns, names in revs.by_ns.items() for n, a in names.items()]
    return [(ns, n, _le(a)) for ns, n, a in revs.items()]


def _le(a: array[int]) -> bytes:
    if sys.byteorder == "little":
        return a.tobytes()
    b = array("q", a)
    b.byteswap()
    return b.tobytes()


def _from_le(raw: bytes) -> array[int]:
    a = array("q")
    a.frombytes(raw)
    if sys.byteorder != "little":
        a.byteswap()
    return a


def _block_subject(prefix: str, tenant: str, group: str, resource: str) -> str:
    """The subject a resource's rows are encrypted for (the authenticated data): no object's,
    since no Kubernetes name contains '/'."""
    return object_subject(prefix, Key(tenant, group, resource, "", "/snapshot"))


_enc = msgspec.msgpack.Encoder()
_header_dec = msgspec.msgpack.Decoder(SnapshotHeader)
_frame1_dec = msgspec.msgpack.Decoder(tuple[str, str, str, bytes])
_frame_dec = msgspec.msgpack.Decoder(tuple[str, str, str, bytes, bytes])
_index_dec = msgspec.msgpack.Decoder(tuple[int, int, list[tuple[str, str, bytes]]])
_rows_dec = msgspec.msgpack.Decoder(list[tuple[str, str, int, bytes, dict[str, str], dict[str, str], int]])


def encode(cap: Capture, *, identity: str, prefix: str, encrypt: Callable[[str, bytes], bytes] | None = None,
           writer: str = "") -> bytes:
    """The snapshot's bytes (see the module's doc). CPU-bound: run it in a worker thread."""
    out = io.BytesIO()
    raw = 0
    cctx = zstandard.ZstdCompressor(level=_ZSTD_LEVEL, write_checksum=True)
    with cctx.stream_writer(out, closefd=False) as w:
        no_rows = _enc.encode([])
        for b, (t, g, r, nss) in enumerate(cap.blocks):
            rows = [(ns, name, e.seq, e.data, e.labels, e.fields, e.rv_at) for ns, d in nss for name, e in d.items()]
            frames = [(_enc.encode(rows[i:i + _ROWS_PER_FRAME]), b"") for i in range(0, max(len(rows), 1), _ROWS_PER_FRAME)]
            if b < len(cap.indexes):
                floor, revisions, entries = cap.indexes[b]
                frames += [(no_rows, _enc.encode((floor, revisions, entries[i:i + _ROWS_PER_FRAME])))
                           for i in range(0, len(entries), _ROWS_PER_FRAME)]
            for payload, index in frames:
                if encrypt is not None:
                    payload = encrypt(_block_subject(prefix, t, g, r), payload)
                    if index:
                        index = encrypt(_block_subject(prefix, t, g, r), index)
                frame = _enc.encode((t, g, r, payload, index))
                w.write(len(frame).to_bytes(4, "big"))
                w.write(frame)
                raw += 4 + len(frame)
    body = out.getvalue()
    header = SnapshotHeader(
        format=FORMAT, stream=identity, prefix=prefix, seq=cap.seq, objects=cap.objects, resources=len(cap.blocks),
        body_bytes=len(body), body_sha256=hashlib.sha256(body).hexdigest(), raw_bytes=raw, skipped=cap.skipped,
        written_at=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), writer=writer)
    hb = _enc.encode(header)
    return MAGIC + len(hb).to_bytes(4, "big") + hb + body


def read_header(blob: bytes) -> tuple[SnapshotHeader, memoryview]:
    """The header and the body; SnapshotInvalid when the bytes are not a whole snapshot."""
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 4:
        raise SnapshotInvalid("corrupt", "not a jetkube snapshot (magic)")
    at = len(MAGIC) + 4
    hl = int.from_bytes(blob[len(MAGIC):at], "big")
    try:
        if at + hl > len(blob):
            raise msgspec.DecodeError("header truncated")
        header = _header_dec.decode(blob[at:at + hl])
    except msgspec.DecodeError as e:
        raise SnapshotInvalid("corrupt", f"unreadable header: {e}") from None
    return header, memoryview(blob)[at + hl:]


def decode(blob: bytes, *, identity: str, prefix: str, head: int, decrypt: Decrypt | None = None,
           indexes: dict[tuple[str, str, str], Revisions] | None = None) -> tuple[SnapshotHeader, Blocks]:
    """Check and decode a snapshot of the stream ``identity`` whose head is ``head``; raise
    :class:`SnapshotInvalid` for anything that is not exactly a snapshot this store can start from.
    ``indexes``: filled with the revision indexes a format 2 snapshot carries (for ``Store.restore``).
    CPU-bound: run it in a worker thread."""
    header, body = read_header(blob)
    if header.format not in _READS:
        raise SnapshotInvalid("format", f"format {header.format}, this server reads {', '.join(map(str, _READS))}")
    if header.stream != identity or header.prefix != prefix:
        raise SnapshotInvalid("mismatch", f"a snapshot of {header.stream!r} (prefix {header.prefix!r}), "
                                          f"not of {identity!r} (prefix {prefix!r})")
    if header.seq > head:
        raise SnapshotInvalid("mismatch", f"snapshot at sequence {header.seq} is beyond the stream's head {head}")
    if header.compression != "zstd":
        raise SnapshotInvalid("format", f"unknown compression {header.compression!r}")
    if len(body) != header.body_bytes:
        raise SnapshotInvalid("corrupt", f"body is {len(body)} bytes, the header says {header.body_bytes} (truncated)")
    if hashlib.sha256(body).hexdigest() != header.body_sha256:
        raise SnapshotInvalid("corrupt", "body checksum mismatch")
    blocks: Blocks = []
    objects = 0
    try:
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body)) as rd:
            while True:
                n = rd.read(4)
                if not n:
                    break
                if len(n) != 4:
                    raise SnapshotInvalid("corrupt", "frame length truncated")
                size = int.from_bytes(n, "big")
                frame = rd.read(size)
                if len(frame) != size:
                    raise SnapshotInvalid("corrupt", "frame truncated")
                if header.format == 1:
                    t, g, r, payload = _frame1_dec.decode(frame)
                    index = b""
                else:
                    t, g, r, payload, index = _frame_dec.decode(frame)
                if decrypt is not None:
                    payload = decrypt(_block_subject(prefix, t, g, r), payload)
                    if index:
                        index = decrypt(_block_subject(prefix, t, g, r), index)
                rows = _rows_dec.decode(payload)
                if index and indexes is not None:
                    floor, revisions, entries = _index_dec.decode(index)
                    revs = indexes.get((t, g, r))
                    if revs is None:
                        revs = indexes[(t, g, r)] = Revisions(floor)
                        revs.revisions = revisions
                    for ns, name, seqs in entries:
                        revs.by_ns.setdefault(ns, {})[name] = _from_le(seqs)
                for row in rows:
                    if not 0 < row[2] <= header.seq:
                        raise SnapshotInvalid("corrupt", f"an object at sequence {row[2]} in a snapshot at "
                                                         f"{header.seq}")
                objects += len(rows)
                if blocks and blocks[-1][:3] == (t, g, r):
                    blocks[-1][3].extend(rows)
                else:
                    blocks.append((t, g, r, rows))
    except (zstandard.ZstdError, msgspec.DecodeError, msgspec.ValidationError, BusError) as e:
        raise SnapshotInvalid("corrupt", f"{type(e).__name__}: {e}") from None
    if objects != header.objects or len(blocks) != header.resources:
        raise SnapshotInvalid("corrupt", f"{objects} objects in {len(blocks)} resources, the header says "
                                         f"{header.objects} in {header.resources}")
    if indexes:
        _check_indexes(header.seq, blocks, indexes)
    return header, blocks


def _check_indexes(seq: int, blocks: Blocks, indexes: dict[tuple[str, str, str], Revisions]) -> None:
    """A carried revision index agrees with the snapshot: no revision after it, and each object's last
    one at it is its row's (SnapshotInvalid otherwise)."""
    top = seq * 2 + 1
    for revs in indexes.values():
        if revs.floor > seq or any(not a or a[-1] > top or a[0] < 2 for _, _, a in revs.items()):
            raise SnapshotInvalid("corrupt", "a revision index reaches past the snapshot")
    for t, g, r, rows in blocks:
        revs = indexes.get((t, g, r))
        if revs is None:
            if rows:
                raise SnapshotInvalid("corrupt", f"no revision index for {t}/{g}/{r}")
            continue
        for ns, name, row_seq, *_ in rows:
            if revs.at(ns, name, seq) != row_seq:
                raise SnapshotInvalid("corrupt", f"the revision index disagrees with {t}/{g}/{r} {ns}/{name}")


def build_resources(blocks: Blocks, ring_size: int) -> dict[tuple[str, str, str], ResourceState]:
    """The store's resource states for decoded blocks (``Store.restore`` installs them)."""
    out: dict[tuple[str, str, str], ResourceState] = {}
    for t, g, r, rows in blocks:
        st = out.get((t, g, r))
        if st is None:
            st = out[(t, g, r)] = ResourceState(ring_size)
        by_ns = st.by_ns
        for ns, name, seq, data, labels, fields, rv_at in rows:
            d = by_ns.get(ns)
            if d is None:
                d = by_ns[ns] = {}
            if name not in d:
                st.count += 1
            d[name] = Entry(seq, data, labels, fields, rv_at)
    return out


def rebuild_views(store: Store, rbac: RbacIndex, crds: CrdView) -> None:
    """Apply the restored RBAC objects and CRDs to their views in sequence order, as the fold did."""
    found: list[tuple[int, str, str, str, str, bytes]] = []
    for (t, g, r), st in store.resources.items():
        if g == RBAC_GROUP or (g, r) == CRD_KEY:
            found += [(e.seq, t, r, ns, n, e.data) for ns, n, e in st.iter_entries(None)]
    for _, t, r, ns, n, data in sorted(found):
        if r == CRD_KEY[1]:
            crds.apply(t, n, data)
        else:
            rbac.apply(t, r, ns, n, data)


# ---- load and write (I/O) ------------------------------------------------------------------------

class Snapshots:
    """A projection's snapshots: :meth:`load` at start, :meth:`run` writes them in the background."""

    def __init__(self, log: Log, settings: SnapshotSettings) -> None:
        self.log = log
        self.settings = settings
        self.bucket = SnapshotBucket(log.bridge, log.stream, replicas=log.config.replicas)
        self.stats = SnapshotStats()
        #: This projection's name as a lease holder (unique per process start).
        self.holder = f"{uuid.uuid4()}"

    def _decrypt(self) -> Decrypt | None:
        return None if self.log.encryption is None else self.log.encryption.decrypt

    async def load(self, store: Store) -> bool:
        """Restore ``store`` (still empty) from the newest valid snapshot; False when there is none
        (or none valid: each one refused is logged and counted). Never raises for a bad snapshot."""
        t0 = trio.current_time()
        try:
            found = await self.bucket.list()
            if not found:
                return False
            identity = await self.log.identity()
            head = await self.log.head()
            _, horizon, _ = await self.log.compaction_record()
        except BusError as e:
            _log.warning("snapshots could not be listed (%s): folding the log from sequence 1", e)
            self.stats.rejected["unreadable"] += 1
            return False
        for seq, name, size in reversed(found):
            if seq > head:
                self._refuse("mismatch", name, f"sequence {seq} is beyond the stream's head {head}")
                continue
            if seq < horizon:
                # History retention purged a tombstone after it: its tail would miss that deletion.
                self._refuse("compacted", name, f"sequence {seq} is below {horizon}, the highest tombstone "
                                                f"history retention purged")
                continue
            try:
                blob = await self.bucket.get(name, timeout_s=self.settings.load_timeout_s)
                # The cyclic GC would walk the growing heap again and again while a hundred thousand
                # objects are allocated (about 40% of the decode): off for it; nothing else runs yet.
                gc.disable()
                indexes: dict[tuple[str, str, str], Revisions] = {}
                try:
                    header, blocks = await trio.to_thread.run_sync(
                        lambda blob=blob, indexes=indexes: decode(blob, identity=identity, prefix=self.log.prefix,
                                                                  head=head, decrypt=self._decrypt(), indexes=indexes))
                    if header.seq != seq:
                        raise SnapshotInvalid("corrupt", f"its header says sequence {header.seq}")
                    resources = await trio.to_thread.run_sync(build_resources, blocks, store.ring_size)
                finally:
                    gc.enable()
            except BusError as e:
                self._refuse("unreadable", name, str(e))
                continue
            except SnapshotInvalid as e:
                self._refuse(e.reason, name, str(e))
                continue
            store.restore(header.seq, resources, header.skipped, indexes=indexes)
            del blocks
            gc.freeze()  # the restored objects live long: later collections need not walk them
            self.stats.loaded_seq = header.seq
            self.stats.loaded_bytes = len(blob)
            self.stats.load_s = trio.current_time() - t0
            _log.info("started from snapshot %s: %d objects at sequence %d (%d bytes) in %.2fs", name,
                      header.objects, header.seq, len(blob), self.stats.load_s)
            return True
        _log.warning("no valid snapshot of %s: folding the log from sequence 1", self.log.stream)
        return False

    def _refuse(self, reason: str, name: str, why: str) -> None:
        self.stats.rejected[reason] = self.stats.rejected.get(reason, 0) + 1
        _log.warning("snapshot %s/%s ignored (%s): %s", self.bucket.bucket, name, reason, why)

    async def run(self, current: Callable[[], Store]) -> NoReturn:
        """Write a snapshot whenever one is due and this projection holds the lease (see the
        module's doc). Failures are logged and counted; the projection never depends on this."""
        s = self.settings
        last_seq = current().base  # the snapshot started from (0: none): a long fold makes one due at once
        started = trio.current_time()
        last_t: float | None = None
        renew_at = 0.0
        try:
            while True:
                await trio.sleep(s.check_s)
                now = trio.current_time()
                applied = current().applied
                try:
                    if self.stats.lease_held and now >= renew_at:
                        self.stats.lease_held = await self.bucket.lease(self.holder, s.lease_s)
                        renew_at = now + s.lease_s / 3
                    since = now - (started if last_t is None else last_t)
                    due = applied > last_seq and (last_t is None or since >= s.min_interval_s) and (
                        applied - last_seq >= s.every_events or since >= s.every_s)
                    if not due:
                        continue
                    if not self.stats.lease_held:
                        self.stats.lease_held = await self.bucket.lease(self.holder, s.lease_s)
                        renew_at = now + s.lease_s / 3
                        if not self.stats.lease_held:
                            last_t = now  # another gateway writes; look again after the interval
                            continue
                        # A new holder continues from the newest snapshot in the bucket.
                        existing = await self.bucket.list()
                        if existing and existing[-1][0] > last_seq:
                            last_seq = existing[-1][0]
                            continue
                    written = await self.write(current(), fenced=True)
                    last_t = trio.current_time()
                    if written is None:  # the lease was lost while encoding: another gateway writes
                        self.stats.lease_held = False
                        continue
                    last_seq = written
                except BusError as e:
                    self.stats.write_failures += 1
                    last_t = now
                    _log.warning("writing a snapshot failed: %s", e)
        finally:
            if self.stats.lease_held:
                with trio.CancelScope(shield=True), trio.move_on_after(2):
                    try:
                        await self.bucket.release(self.holder)
                    except BusError:
                        pass  # it lapses by itself
                self.stats.lease_held = False

    async def write(self, store: Store, *, fenced: bool = False) -> int | None:
        """Snapshot ``store`` now; return its sequence. Keeps the newest ``keep`` snapshots.
        ``fenced``: renew the writer's lease once encoded, and write nothing (None) if it was lost."""
        t0 = trio.current_time()
        cap = capture(store)
        identity = await self.log.identity()
        encrypt = None if self.log.encryption is None else self.log.encryption.encrypt
        blob = await trio.to_thread.run_sync(
            lambda: encode(cap, identity=identity, prefix=self.log.prefix, encrypt=encrypt, writer=self.holder))
        if fenced and not await self.bucket.lease(self.holder, self.settings.lease_s):
            _log.info("the snapshot writer's lease was taken over: snapshot at %d not written", cap.seq)
            return None
        name = snapshot_name(cap.seq)
        await self.bucket.put(name, blob)
        st = self.stats
        st.written += 1
        st.last_written_seq = cap.seq
        st.last_bytes = len(blob)
        st.last_objects = cap.objects
        st.last_write_s = trio.current_time() - t0
        _log.info("snapshot %s written: %d objects, %d bytes, in %.2fs", name, cap.objects, len(blob), st.last_write_s)
        found = await self.bucket.list()
        for _, old, _ in found[:max(0, len(found) - max(1, self.settings.keep))]:
            await self.bucket.delete(old)
        return cap.seq
