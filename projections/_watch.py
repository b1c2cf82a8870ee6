"""Watch fan-out: per-watcher filters and bounded queues.

A :class:`WatchStream` is registered with a resource's state and offered every change in log
order by the projection. It filters (namespace, label and field selectors), turns selector
transitions into ADDED/DELETED as the apiserver's cacher does, and queues ``(type, change)``
pairs. The queue is bounded (``max_queued``): a watcher that falls that far behind is cut off
with an error instead of growing memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import trio

from kinds import ResourceDef

from ._selectors import (
    FieldSelector,
    LabelSelector,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)
from ._store import ADDED, DELETED, MODIFIED, Change, Entry

BOOKMARK = "BOOKMARK"
#: The most ``(type, change)`` pairs in one batch of a watch (so one chunk of its response).
BATCH = 512


@dataclass(frozen=True)
class WatchFilter:
    """What a LIST or WATCH selects: namespace (None = all), label and field selectors."""

    namespace: str | None
    labels: LabelSelector
    fields: FieldSelector

    @classmethod
    def for_request(cls, rdef: ResourceDef, namespace: str | None, label_selector: str,
                    field_selector: str) -> WatchFilter:
        """The filter of a LIST, WATCH or DELETECOLLECTION of ``rdef`` from its query's selectors.

        A selector that does not parse, or a field the kind cannot be selected on, raises
        :class:`SelectorError` (the apiserver's 400)."""
        labels = parse_label_selector(label_selector)
        fields = parse_field_selector(field_selector)
        allowed = {"metadata.name", "metadata.namespace", *rdef.field_selectors}
        for f in fields.fields:
            if f not in allowed:
                known = ", ".join(sorted(allowed))
                raise SelectorError(f'"{f}" is not a known field selector: only "{known}"')
        return cls(namespace if rdef.namespaced else None, labels, fields)

    def matches(self, namespace: str, name: str, entry: Entry) -> bool:
        if self.namespace is not None and namespace != self.namespace:
            return False
        if not self.labels.empty and not self.labels.matches(entry.labels):
            return False
        if not self.fields.empty:
            ef = entry.fields

            def get(field: str) -> str | None:
                if field == "metadata.name":
                    return name
                if field == "metadata.namespace":
                    return namespace
                return ef.get(field)

            return self.fields.matches(get)
        return True


def classify(flt: WatchFilter, change: Change) -> str | None:
    """The event type a watcher with ``flt`` sees for ``change``, or None: kube's cacher
    (cache_watcher.go ``convertToWatchEvent``) on the states before and after the change.

    Matching after and not before: ADDED; both: MODIFIED; before only: DELETED (the object left
    the selection, or was deleted); neither: nothing. ``change.prev`` must be the object's state
    before the change (None: it did not exist) whenever ``flt`` has a label or field selector;
    without one, matching depends on the namespace alone, which a change never moves, so the
    change's own type is the answer. Every watch path (initial state, ring, log) decides here.
    """
    if flt.namespace is not None and change.namespace != flt.namespace:
        return None
    if flt.labels.empty and flt.fields.empty:
        return change.type
    now = change.type != DELETED and flt.matches(change.namespace, change.name, change.entry)
    was = change.prev is not None and flt.matches(change.namespace, change.name, change.prev)
    if now:
        return MODIFIED if was else ADDED
    return DELETED if was else None


class WatchStream:
    """One watcher's filter and queue. Items are ``(type, change_or_seq)``."""

    def __init__(self, flt: WatchFilter, *, bookmarks: bool, max_queued: int) -> None:
        self.filter = flt
        self.bookmarks = bookmarks
        self._send, self.receive = trio.open_memory_channel[tuple[str, object]](max_queued)
        self.overflowed = False
        #: Set by the projection once what it sends this watcher is its queue alone (the initial
        #: state or backlog sent): from then on :meth:`ready` may take batches from it directly, and
        #: the iteration's one wait is for the queue (so closing it ends any wait: nothing else may
        #: be awaited in the projection's iteration once this is set).
        self.live = False
        # False only when the queue is known empty: a batch drained it, and nothing was sent since.
        # (ready's check without raising WouldBlock: a watcher that keeps up finds it empty each time)
        self._pending = False

    def classify(self, change: Change) -> str | None:
        """The event type this watcher sees for ``change``, or None if it sees nothing."""
        return classify(self.filter, change)

    def batch(self, first: tuple[str, object]) -> list[tuple[str, object]]:
        """``first`` and what is queued after it, up to :data:`BATCH` pairs: everything available at
        once goes out together, so a busy watcher costs one write per batch, not one per event."""
        batch = [first]
        receive_nowait = self.receive.receive_nowait
        while len(batch) < BATCH:
            try:
                batch.append(receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                self._pending = False
                break
        return batch

    def queued(self) -> bool:
        """Whether :meth:`ready` may have a batch (False: it has none, for certain)."""
        return self.live and self._pending

    def ready(self) -> list[tuple[str, object]] | None:
        """The next batch if one is queued, taken without waiting (no checkpoint, no cancel scope);
        None if it would have to wait: nothing queued, the queue ended (cut off: the projection's
        own iteration then says so), or not :attr:`live` yet (the projection still sends the
        initial state or backlog, which comes first). Only while the projection's iteration is
        suspended at a ``yield`` (its consumer between two batches), as it is whenever its
        consumer calls this: it then holds nothing taken from the queue, so order is kept."""
        if not (self.live and self._pending):
            return None
        try:
            first = self.receive.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            self._pending = False
            return None
        return self.batch(first)

    def offer(self, change: Change) -> None:
        if self.overflowed:
            return
        t = self.classify(change)
        if t is None:
            return
        try:
            self._send.send_nowait((t, change))
            self._pending = True
        except trio.WouldBlock:
            self._overflow()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def bookmark(self, seq: int) -> None:
        if not self.bookmarks or self.overflowed:
            return
        try:
            self._send.send_nowait((BOOKMARK, seq))
            self._pending = True
        except trio.WouldBlock:
            self._overflow()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def _overflow(self) -> None:
        self.overflowed = True
        self._send.close()

    def close(self) -> None:
        self._send.close()


class WatchBatches:
    """What ``Projection.watch`` gives: its batches of ``(type, Change | seq)`` pairs (an async
    iterator), and :meth:`ready`, the next one when it is already queued, without waiting."""

    __slots__ = ("_gen", "_stream")

    def __init__(self, gen: AsyncIterator[list[tuple[str, object]]], stream: WatchStream) -> None:
        self._gen = gen
        self._stream = stream

    def __aiter__(self) -> WatchBatches:
        return self

    def __anext__(self) -> Any:
        return self._gen.__anext__()

    def ready(self) -> list[tuple[str, object]] | None:
        """:meth:`WatchStream.ready`: call only between two batches (not while awaiting one)."""
        return self._stream.ready()

    def queued(self) -> bool:
        """:meth:`WatchStream.queued`."""
        return self._stream.queued()

    def live(self) -> bool:
        """Whether the next batch is the watcher's queue's alone (:attr:`WatchStream.live`): its one
        wait is for the queue, which :meth:`stop` ends."""
        return self._stream.live

    def stop(self) -> None:
        """Close the watcher's queue: a wait for it ends (the iteration ends once what was queued is
        taken), and nothing more is queued."""
        self._stream.close()
