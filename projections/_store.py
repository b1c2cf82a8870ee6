"""The queryable state the log folds into: pure, no trio, no I/O.

``Store.apply(msg)`` is the projection's whole write path. For each (tenant, group, resource) it
keeps the live objects (encoded JSON bytes with their resourceVersion spliced in, so GET returns
them and LIST joins them without re-encoding), a bounded ring of recent changes for watch resume,
and the registered watchers, which it offers every change to in log order.

Invariant (ring): every change of the resource with a sequence greater than ``ring_floor`` is in
the ring, in order. A store folded from sequence 1 starts with floor 0; one started from a snapshot
(``restore``) starts every resource's floor at the snapshot's sequence (``base``), so a watch or a
continue token from before it is served from the log. Evicting a change raises the floor to that
change's sequence.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import Protocol

import msgspec

from bus import Key, LogMessage, decode_event, is_system_subject, object_bytes, parse_subject

from ._revindex import Revisions

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"
_EMPTY: dict[str, str] = {}


class Entry(msgspec.Struct, gc=False, eq=False):
    """One live object. ``data`` is its JSON with ``metadata.resourceVersion`` = ``seq``, whose
    digits start at ``rv_at`` (-1: unknown).

    Not tracked by Python's cyclic garbage collector (``gc=False``; ``eq=False``: compared and hashed
    by identity, as a plain object): the store holds one per live object, tens of thousands, and a
    collection walking them found nothing (an Entry holds bytes, ints and dicts of strings: it is in
    no reference cycle). Measured: a store of 50,000 objects made a full collection cost 67 ms of CPU
    more than an empty one; see ``Change``."""

    seq: int
    data: bytes
    labels: dict[str, str]
    fields: dict[str, str]
    rv_at: int = -1

    def __post_init__(self) -> None:
        if not self.labels:
            self.labels = _EMPTY  # one shared empty dict instead of one per object
        if not self.fields:
            self.fields = _EMPTY

    def data_at(self, seq: int) -> bytes:
        """``data`` with resourceVersion ``seq`` instead (unchanged when the offset is unknown)."""
        if self.rv_at < 0:
            return self.data
        return b"%s%d%s" % (self.data[:self.rv_at], seq, self.data[self.rv_at + len(str(self.seq)):])


class Change(msgspec.Struct, gc=False, eq=False):
    """One change of one object as watchers see it, with the state before it (for selectors).

    Untracked by the cyclic collector like :class:`Entry` (it holds Entries, strings and a dict of
    bytes): the rings hold up to ``ring_size`` per resource."""

    seq: int
    type: str
    namespace: str
    name: str
    entry: Entry
    prev: Entry | None
    _lines: dict[str, bytes] | None = None

    def object(self, type_: str) -> bytes:
        """The object a watcher seeing this change as ``type_`` is sent: the new state, except for
        an object leaving a selection (DELETED for a change that is not a deletion), which is sent
        as it was before with this change's resourceVersion (kube's cacheWatcher does so)."""
        if type_ == DELETED and self.type != DELETED and self.prev is not None:
            return self.prev.data_at(self.seq)
        return self.entry.data

    def line(self, type_: str) -> bytes:
        """The newline-terminated watch event, encoded once per type for all watchers."""
        if self._lines is None:
            self._lines = {}
        got = self._lines.get(type_)
        if got is None:
            got = self._lines[type_] = b'{"type":"%s","object":%s}\n' % (type_.encode(), self.object(type_))
        return got


class Watcher(Protocol):
    def offer(self, change: Change) -> None: ...

    def bookmark(self, seq: int) -> None: ...


class TenantWatcher(Protocol):
    """A watcher of one resource across tenants (offered each change with its tenant)."""

    def offer_in(self, tenant: str, change: Change) -> None: ...

    def bookmark(self, seq: int) -> None: ...


#: The revision indexes' default bound, in revisions (~9 B each: ~36 MB), see ``Store``.
INDEX_MAX_REVISIONS = 4_000_000
#: Objects one step of a revision index trim handles at most (see ``Store.trim_step``).
TRIM_STEP = 1024


class ResourceState:
    """Objects, recent changes and watchers of one resource of one tenant."""

    def __init__(self, ring_size: int) -> None:
        # namespace ("" for cluster scope) -> name -> Entry
        self.by_ns: dict[str, dict[str, Entry]] = {}
        self.count = 0
        self.ring: collections.deque[Change] = collections.deque()
        self.ring_size = ring_size
        self.ring_floor = 0
        self.watchers: set[Watcher] = set()
        # namespace -> its names sorted; dropped when a name comes or goes (not on modification).
        self._sorted: dict[str, list[str]] = {}
        #: Every object's revision sequences (projections/_revindex.py), for reads at a past version.
        self.revs = Revisions()

    def get(self, namespace: str, name: str) -> Entry | None:
        ns = self.by_ns.get(namespace)
        return None if ns is None else ns.get(name)

    def sorted_names(self, namespace: str) -> list[str]:
        """The namespace's names in order; sorted once per change of the set of names."""
        names = self._sorted.get(namespace)
        if names is None:
            names = self._sorted[namespace] = sorted(self.by_ns.get(namespace, ()))
        return names

    def iter_entries(self, namespace: str | None) -> Iterator[tuple[str, str, Entry]]:
        """(namespace, name, entry), sorted by namespace then name, as etcd key order would give."""
        for nsname in (namespace,) if namespace is not None else sorted(self.by_ns):
            ns = self.by_ns.get(nsname)
            if ns:
                for name in self.sorted_names(nsname):
                    yield nsname, name, ns[name]

    def changes_after(self, seq: int) -> list[Change]:
        """Every change with a sequence > ``seq``; the caller checks ``seq >= ring_floor``."""
        out: list[Change] = []
        for ch in reversed(self.ring):
            if ch.seq <= seq:
                break
            out.append(ch)
        out.reverse()
        return out

    def _record(self, change: Change) -> None:
        if len(self.ring) >= self.ring_size:
            self.ring_floor = self.ring.popleft().seq
        self.ring.append(change)
        for w in tuple(self.watchers):
            w.offer(change)


class Store:
    """All tenants' state, folded from the log in sequence order."""

    def __init__(self, prefix: str, *, ring_size: int = 10_000,
                 index_max_revisions: int = INDEX_MAX_REVISIONS) -> None:
        self.prefix = prefix
        #: The revision indexes' bound (projections/_revindex.py): past this many revisions held in all
        #: of them, their floor is raised to ``index_max_revisions // 2`` sequences before the applied
        #: one (so at most that many revisions after it, plus one per object), at most once every
        #: quarter of it. 0: no bound (they hold what the log retains).
        self.index_max_revisions = index_max_revisions
        self._index_held = [0]  # revisions held in every state's index
        self._index_cut = 0  # the last floor that bound raised
        self._trimming: list[Revisions] = []  # indexes whose trim is not finished
        self.applied = 0
        #: The sequence the store started from: 0, or the snapshot's it was restored from. No
        #: resource's ring holds a change at or below it.
        self.base = 0
        self.ring_size = ring_size
        self.resources: dict[tuple[str, str, str], ResourceState] = {}
        self.skipped = 0
        # What a read of a resource nothing was ever written to sees: reads allocate nothing (a
        # tenant's state exists once the log holds something of it). Never written to.
        self._empty = ResourceState(0)
        #: Watches across tenants, by (group, resource): offered every tenant's changes.
        self.cross: dict[tuple[str, str], set[TenantWatcher]] = {}
        #: The applied sequence at the last ``prune`` (states created after it start their ring there).
        self._pruned = 0

    def resource(self, tenant: str, group: str, resource: str) -> ResourceState:
        key = (tenant, group, resource)
        st = self.resources.get(key)
        if st is None:
            st = self.resources[key] = ResourceState(self.ring_size)
            st.ring_floor = st.revs.floor = self.ring_floor
            st.revs.share(self._index_held)
        return st

    @property
    def ring_floor(self) -> int:
        """Where the ring of a state created now starts: the snapshot's sequence, or the last ``prune``
        (a state created again after it has lost the changes before)."""
        return max(self.base, self._pruned)

    def restore(self, base: int, resources: dict[tuple[str, str, str], ResourceState], skipped: int = 0, *,
                indexes: dict[tuple[str, str, str], Revisions] | None = None) -> None:
        """Start this (still empty) store from a snapshot: the resources' objects as of sequence
        ``base``, with empty rings whose floor is ``base`` (see projections/_snapshot.py), and the
        revision ``indexes`` the snapshot carried (a resource without one starts its index at ``base``)."""
        if self.applied or self.resources:
            raise ValueError("a store is restored from a snapshot only before it applies anything")
        for key, st in resources.items():
            st.ring_size = self.ring_size
            st.ring_floor = base
            carried = indexes.get(key) if indexes else None
            if carried is not None:
                st.revs = carried
                carried.reindex()
                carried.share(self._index_held)
                continue
            # The revision index starts at the snapshot: each object's revision then is its entry's.
            st.revs = revs = Revisions(base, self._index_held)
            for ns, names in st.by_ns.items():
                for name, e in names.items():
                    revs.seed(ns, name, e.seq)
        self.resources = resources
        self.base = self.applied = base
        self.skipped = skipped
        self._empty.ring_floor = base

    def peek(self, tenant: str, group: str, resource: str) -> ResourceState:
        """The resource's state for reading (an empty one, not stored, when there is none)."""
        return self.resources.get((tenant, group, resource)) or self._empty

    def prune(self, tenant: str) -> None:
        """Forget a tenant's states that hold nothing and nobody watches (a deleted tenant)."""
        for key in [k for k, st in self.resources.items() if k[0] == tenant and not st.count and not st.watchers]:
            revs = self.resources.pop(key).revs
            self._index_held[0] -= revs.held
            # (its trim, if not finished, is dropped too: its later steps would count against the store's tally)
            if revs in self._trimming:
                self._trimming.remove(revs)
            self._pruned = self.applied

    def forget(self, key: Key, *, at: int = 0) -> Entry | None:
        """Drop an object whose every message the log purged (history retention removed its tombstone
        before this store read it); returns the entry dropped. ``at`` 0: no change is recorded (a
        start, before anybody reads the store). ``at`` > 0 (a running store, at the compaction
        record that made it known, before the store applies that record): its watchers are sent a
        DELETED change at ``at`` - the object as last applied, with that resourceVersion - as the
        purged tombstone would have given them, and the ring keeps it."""
        st = self.resources.get((key.tenant, key.group, key.resource))
        ns = None if st is None else st.by_ns.get(key.namespace)
        if st is None or ns is None or key.name not in ns:
            return None
        entry = ns.pop(key.name)
        st.revs.forget(key.namespace, key.name)
        st.count -= 1
        st._sorted.pop(key.namespace, None)
        if not ns:
            del st.by_ns[key.namespace]
        if at > self.applied:
            gone = Entry(at, entry.data_at(at), entry.labels, entry.fields, entry.rv_at)
            change = Change(at, DELETED, key.namespace, key.name, gone, entry)
            st._record(change)
            for w in tuple(self.cross.get((key.group, key.resource), ())):
                w.offer_in(key.tenant, change)
        return entry

    def get(self, key: Key) -> Entry | None:
        st = self.resources.get((key.tenant, key.group, key.resource))
        return None if st is None else st.get(key.namespace, key.name)

    def apply(self, msg: LogMessage) -> tuple[tuple[str, str, str], Change] | None:
        """Fold one log message in. Messages must come in stream order, each exactly once.

        Returns ((tenant, group, resource), change), or None for a message that is not ours."""
        if msg.seq <= self.applied:
            raise ValueError(f"out of order: {msg.seq} after {self.applied}")
        self.applied = msg.seq
        if is_system_subject(self.prefix, msg.subject):
            return None
        try:
            key = parse_subject(self.prefix, msg.subject)
            event = decode_event(msg.data)
        except ValueError:
            # Not ours (something else published under our prefix): skip, but count it.
            self.skipped += 1
            return None
        st = self.resource(key.tenant, key.group, key.resource)
        ns = st.by_ns.get(key.namespace)
        prev = None if ns is None else ns.get(key.name)
        entry = Entry(msg.seq, object_bytes(event, msg.seq), event.labels, event.fields, event.rv_at)
        if event.type == "delete":
            if prev is not None:
                assert ns is not None
                del ns[key.name]
                st.count -= 1
                st._sorted.pop(key.namespace, None)
                if not ns:
                    del st.by_ns[key.namespace]
            change = Change(msg.seq, DELETED, key.namespace, key.name, entry, prev)
        else:
            if ns is None:
                ns = st.by_ns[key.namespace] = {}
            ns[key.name] = entry
            if prev is None:
                st.count += 1
                st._sorted.pop(key.namespace, None)
            change = Change(msg.seq, ADDED if prev is None else MODIFIED, key.namespace, key.name, entry, prev)
        st.revs.add(key.namespace, key.name, msg.seq, event.type == "delete")
        cap = self.index_max_revisions
        if cap and self._index_held[0] > cap and msg.seq - cap // 2 >= self._index_cut + cap // 4:
            self._index_cut = msg.seq - cap // 2
            self.trim_revisions(self._index_cut)  # Exact reads below it: from the log (rows_at)
        st._record(change)
        cross = self.cross.get((key.group, key.resource))
        if cross:
            for w in tuple(cross):
                w.offer_in(key.tenant, change)
        return (key.tenant, key.group, key.resource), change

    def trim_revisions(self, below: int) -> None:
        """History retention raised the compaction point to ``below`` (nothing older is read any more):
        every resource's revision index forgets what reads at or above it do not need."""
        for st in self.resources.values():
            st.revs.trim(below, 0)
        self._trimming = [st.revs for st in self.resources.values() if st.revs.trimming]
        self.trim_step()

    @property
    def trimming(self) -> bool:
        """A trim of the revision indexes is not finished: :meth:`trim_step` has work."""
        return bool(self._trimming)

    def trim_step(self, budget: int = TRIM_STEP) -> None:
        """Go on with the indexes' trim, ``budget`` objects at most: the projection calls this in a task
        of its own, a checkpoint between steps, so no step of a trim is O(objects) on the event loop."""
        todo = self._trimming
        while todo and budget > 0:
            revs = todo[-1]
            budget -= revs.trim_step(budget)
            if not revs.trimming:
                todo.pop()

    def bookmark_all(self) -> None:
        """Offer a bookmark at the applied sequence to every watcher (they filter by opt-in)."""
        for st in self.resources.values():
            for w in tuple(st.watchers):
                w.bookmark(self.applied)
        for ws in self.cross.values():
            for cw in tuple(ws):
                cw.bookmark(self.applied)
