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
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Iterator


class Revisions:
    """The revision sequences of one resource's objects (of one tenant)."""

    __slots__ = ("_order", "_sorted", "by_ns", "floor", "revisions")

    def __init__(self, floor: int = 0) -> None:
        #: namespace ("" for cluster scope) -> name -> sequences, each ``seq * 2 + deleted``, ascending.
        self.by_ns: dict[str, dict[str, array[int]]] = {}
        #: The lowest sequence this index answers for (see the module's doc).
        self.floor = floor
        #: Revisions recorded by ``add`` since the index started (not decreased by ``trim``): with the
        #: sequences applied since ``floor``, the resource's share of the stream.
        self.revisions = 0
        # namespace -> its names sorted, and the whole resource's (key, namespace, name) in key
        # order; dropped when a name comes or goes.
        self._sorted: dict[str, list[str]] = {}
        self._order: list[tuple[str, str, str]] | None = None

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
        if names is not None and names.pop(name, None) is not None:
            self._sorted.pop(namespace, None)
            self._order = None
            if not names:
                del self.by_ns[namespace]

    def trim(self, below: int) -> None:
        """Forget what no read at a sequence >= ``below`` needs: each object's revisions before its last
        one <= ``below``, and objects whose last revision <= ``below`` is a deletion with nothing after."""
        key = below * 2 + 1
        for ns, names in list(self.by_ns.items()):
            for name, a in list(names.items()):
                i = bisect_right(a, key)
                if i == 0:
                    continue
                if i == len(a) and a[-1] & 1:
                    del names[name]
                    self._sorted.pop(ns, None)
                    self._order = None
                elif i > 1:
                    del a[:i - 1]
            if not names:
                del self.by_ns[ns]
        self.floor = max(self.floor, below)

    def __len__(self) -> int:
        return sum(len(names) for names in self.by_ns.values())

    def items(self) -> Iterator[tuple[str, str, array[int]]]:
        for ns, names in self.by_ns.items():
            for name, a in names.items():
                yield ns, name, a
