"""A per-object index of revision sequences, kept by the store as it folds the log: pure, no I/O.

For each object of one resource of one tenant it holds the stream sequences of every revision the
store applied, in order, each with one bit telling a deletion (tombstone) from a put. So the state
of the resource as of any sequence N at or above the index's ``floor`` is known without asking
the log which messages to read: for each object, its last revision <= N (a bisection), absent when
there is none or it is a tombstone. An Exact LIST then reads only the messages of the objects that
changed since N, by sequence (projections/_history.py ``rows_indexed``).

Floor: a store folded from sequence 1 sees every revision the log retains (floor 0). A store
restored from a snapshot at S knows each object's revision at S (the snapshot's entry, recorded
by ``seed``) and every later one (floor S). A resource state created again after a tenant prune
at P has seen every revision after P, and nothing of it was alive at P (floor P).

Memory (CPython, 64-bit): one ``array('q')`` per object ever seen (about 80 bytes plus its name
key, about 60 bytes, in a per-namespace dict) and 8 bytes per revision (arrays over-allocate by
about an eighth as they grow). ``trim`` (called when history retention raises the compaction
point C) drops each object's revisions older than its last one at or below C, and objects whose
last revision at or below C is their deletion with nothing after it; so the index holds what the
log retains, not more: at 10,000 objects and 200,000 retained events, about 1.4 MB + 1.8 MB.

Trimming is incremental: the objects are filed by the sequence from which a trim has something to
drop of them (their second revision, or a lone deletion), in buckets of 1,024 sequences, so a trim
touches only the objects it trims (each revision is dropped once, O(1) each), not every object; and it runs in steps of at
most ``budget`` objects (``trim_step``; the projection runs the steps in a task of its own, a checkpoint between them),
so no single step on the event loop is O(objects). A trim not finished yet changes no answer: the
floor is raised at once, and revisions older than the floor do not change answers at or above it.

The store bounds the whole index (projections/_store.py ``Store.index_max_revisions``): past that
many revisions held it raises every index's floor (a trim at an own point, not the log's), so Exact
reads below that floor take the log's path (projections/_history.py ``rows_at``), which exists for
versions below the floor anyway.
"""

from __future__ import annotations

import heapq
from array import array
from bisect import bisect_right
from collections.abc import Iterator

#: Due points are kept in buckets of 2**_SHIFT sequences (a calendar queue: O(1) to file and to take).
_SHIFT = 10


def _due(a: array[int]) -> int:
    """The lowest trim point at which a trim drops something of this object: its second revision's
    sequence, or a lone deletion's; 0: none (one put)."""
    if len(a) >= 2:
        return a[1] >> 1
    return a[0] >> 1 if a and a[0] & 1 else 0


class Revisions:
    """The revision sequences of one resource's objects (of one tenant)."""

    __slots__ = ("_buckets", "_due", "_order", "_sorted", "_tally", "_trim_to", "by_ns", "floor", "held", "revisions")

    def __init__(self, floor: int = 0, tally: list[int] | None = None) -> None:
        #: namespace ("" for cluster scope) -> name -> sequences, each ``seq * 2 + deleted``, ascending.
        self.by_ns: dict[str, dict[str, array[int]]] = {}
        #: The lowest sequence this index answers for (see the module's doc).
        self.floor = floor
        #: Revisions recorded by ``add`` since the index started (not decreased by ``trim``; kept in
        #: snapshots). Not the resource's share of the stream: that is :meth:`density`, of ``held``.
        self.revisions = 0
        # namespace -> its names sorted, and the whole resource's (key, namespace, name) in key
        # order; dropped when a name comes or goes.
        self._sorted: dict[str, list[str]] = {}
        self._order: list[tuple[str, str, str]] | None = None
        #: Revisions held now (after trims); ``tally[0]``, shared by a store's indexes, their sum.
        self.held = 0
        self._tally = tally if tally is not None else [0]
        #: due >> _SHIFT -> [(due, namespace, name, array)] per object with something a trim may drop
        #: (``_due``); an entry whose object's array or due changed since is stale and skipped.
        self._due: dict[int, list[tuple[int, str, str, array[int]]]] = {}
        self._buckets: list[int] = []  # a heap of the keys of ``_due`` (and of some deleted since)
        #: The point trims are done up to, once ``trim_step`` has nothing due at or below it.
        self._trim_to = 0

    def add(self, namespace: str, name: str, seq: int, deleted: bool) -> None:
        """Record a revision; sequences of one object come in ascending order (the log's)."""
        names = self.by_ns.get(namespace)
        if names is None:
            names = self.by_ns[namespace] = {}
        a = names.get(name)
        if a is None:
            a = names[name] = array("q")
            self._sorted.pop(namespace, None)
            self._order = None
        a.append(seq * 2 + deleted)
        self.revisions += 1
        self.held += 1
        self._tally[0] += 1
        n = len(a)
        if n == 2 or (n == 1 and deleted):  # it now has something a trim may drop
            self._file(_due(a), namespace, name, a)

    def _file(self, d: int, namespace: str, name: str, a: array[int]) -> None:
        b = d >> _SHIFT
        got = self._due.get(b)
        if got is None:
            got = self._due[b] = []
            heapq.heappush(self._buckets, b)
        got.append((d, namespace, name, a))

    def seed(self, namespace: str, name: str, seq: int) -> None:
        """Record the revision an object had at a snapshot's sequence (a put): a restored store's."""
        self.add(namespace, name, seq, False)
        self.revisions -= 1

    def at(self, namespace: str, name: str, seq: int) -> int:
        """The sequence of the object's last revision <= ``seq``; 0 when it had none or was deleted
        then (or the index does not know it)."""
        names = self.by_ns.get(namespace)
        a = None if names is None else names.get(name)
        if a is None:
            return 0
        i = bisect_right(a, seq * 2 + 1)
        if i == 0:
            return 0
        v = a[i - 1]
        return 0 if v & 1 else v >> 1

    def names(self, namespace: str) -> list[str]:
        """The namespace's names (every object it ever had a revision of), sorted."""
        got = self._sorted.get(namespace)
        if got is None:
            got = self._sorted[namespace] = sorted(self.by_ns.get(namespace, ()))
        return got

    def keys(self, namespace: str | None) -> list[tuple[str, str, str]]:
        """(row key, namespace, name) in row key order (``_history.row_key``: namespace, NUL, name) of
        every object of ``namespace`` (None: all namespaces)."""
        if namespace is not None:
            return [(f"{namespace}\x00{n}", namespace, n) for n in self.names(namespace)]
        if self._order is None:
            self._order = [(f"{ns}\x00{n}", ns, n) for ns in sorted(self.by_ns) for n in self.names(ns)]
        return self._order

    def forget(self, namespace: str, name: str) -> None:
        """Drop an object (its every message is gone from the log)."""
        names = self.by_ns.get(namespace)
        a = None if names is None else names.pop(name, None)
        if a is not None:
            self.held -= len(a)
            self._tally[0] -= len(a)
            self._sorted.pop(namespace, None)
            self._order = None
            if not names:
                del self.by_ns[namespace]

    def trim(self, below: int, budget: int | None = None) -> None:
        """Forget what no read at a sequence >= ``below`` needs: each object's revisions before its last
        one <= ``below``, and objects whose last revision <= ``below`` is a deletion with nothing after.
        The floor is raised at once; the work is done by :meth:`trim_step` (``budget``: objects at most
        now, None: all; the rest by later steps, see :attr:`trimming`)."""
        self.floor = max(self.floor, below)
        self._trim_to = max(self._trim_to, below)
        self.trim_step(budget)

    @property
    def trimming(self) -> bool:
        """A trim is not finished (:meth:`trim_step` has work)."""
        b = self._first()
        if b < 0 or b > self._trim_to >> _SHIFT:
            return False
        to = self._trim_to
        return b < to >> _SHIFT or any(e[0] <= to for e in self._due[b])

    def _first(self) -> int:
        """The lowest bucket that holds something; -1: none."""
        heap, due = self._buckets, self._due
        while heap and heap[0] not in due:
            heapq.heappop(heap)
        return heap[0] if heap else -1

    def trim_step(self, budget: int | None = None) -> int:
        """Trim up to ``budget`` objects (None: every one due) of the trim in progress; the number trimmed."""
        due, to, by_ns = self._due, self._trim_to, self.by_ns
        key = to * 2 + 1
        last = to >> _SHIFT
        done = dropped = 0
        refile: list[tuple[int, str, str, array[int]]] = []
        while True:
            b = self._first()
            if b < 0 or b > last:
                break
            got = due[b]
            while got:
                if budget is not None and done >= budget:
                    break
                entry = got.pop()
                d, ns, name, a = entry
                if d > to:  # (the last bucket: not due yet)
                    refile.append(entry)
                    continue
                names = by_ns.get(ns)
                if names is None or names.get(name) is not a:
                    continue  # stale: forgotten, or trimmed away and written again
                if _due(a) != d:
                    continue  # stale: its due moved (a trim, or a write after a lone deletion)
                n = len(a)
                done += 1
                i = bisect_right(a, key)  # >= 1: its due is <= the point
                if i == n and a[-1] & 1:
                    del names[name]
                    dropped += n
                    self._sorted.pop(ns, None)
                    self._order = None
                    if not names:
                        del by_ns[ns]
                else:
                    del a[:i - 1]
                    dropped += i - 1
                    if i < n:  # (else one put is left: nothing due until it is written again)
                        refile.append((_due(a), ns, name, a))
            if got:
                break  # the budget ran out
            del due[b]
            heapq.heappop(self._buckets)  # (b: the first)
            if b == last:
                break
        for d, ns, name, a in refile:
            self._file(d, ns, name, a)
        self.held -= dropped
        self._tally[0] -= dropped
        return done

    def density(self, applied: int) -> float:
        """The resource's messages per stream sequence from the floor to ``applied`` (at most 1), for
        the cost of a range read: the revisions held (every one above the floor, and each object's
        last one at or below it) over those sequences. Not ``revisions``, which trims do not
        decrease: after them it counts revisions below the floor too, and the share would drift to 1."""
        return min(1.0, self.held / max(1, applied - self.floor))

    def share(self, tally: list[int]) -> None:
        """Count this index's revisions in ``tally`` (a store's, over all its indexes) from now on."""
        if tally is not self._tally:
            tally[0] += self.held
            self._tally[0] -= self.held
            self._tally = tally

    def reindex(self) -> None:
        """Rebuild what ``add`` maintains (revisions held, what trims are due) for arrays put into
        :attr:`by_ns` directly (a snapshot's carried index)."""
        self._tally[0] -= self.held
        self.held = sum(len(a) for _, _, a in self.items())
        self._tally[0] += self.held
        self._due, self._buckets = {}, []
        for ns, name, a in list(self.items()):
            d = _due(a)
            if d:
                self._file(d, ns, name, a)

    def __len__(self) -> int:
        return sum(len(names) for names in self.by_ns.values())

    def items(self) -> Iterator[tuple[str, str, array[int]]]:
        for ns, names in self.by_ns.items():
            for name, a in names.items():
                yield ns, name, a
