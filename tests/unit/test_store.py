"""The projection's pure fold: apply, ring floor, watch classification and bounded queues."""

from __future__ import annotations

import msgspec
import pytest
import trio

from bus import Actor, Event, Key, LogMessage, encode_event, encode_object_with_rv_slot, object_subject
from projections import (
    ADDED,
    DELETED,
    MODIFIED,
    Store,
    WatchFilter,
    WatchStream,
    parse_field_selector,
    parse_label_selector,
)

ALL = WatchFilter(None, parse_label_selector(""), parse_field_selector(""))


def msg(seq: int, name: str, etype: str = "put", labels: dict[str, str] | None = None, ns: str = "d",
        verb: str = "create") -> LogMessage:
    obj = {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": name, "namespace": ns,
                                                                 "labels": labels or {}}}
    data, at = encode_object_with_rv_slot(obj)
    ev = Event(type=etype, object=msgspec.Raw(data), rv_at=at, verb=verb, audit_id=f"a{seq}",  # type: ignore[arg-type]
               time="t", actor=Actor(user="u"), labels=labels or {})
    return LogMessage(seq, object_subject("jk", Key("root", "", "configmaps", ns, name)), encode_event(ev))


def test_apply_splices_resource_version_and_indexes() -> None:
    s = Store("jk")
    s.apply(msg(1, "a"))
    s.apply(msg(2, "b", ns="e"))
    s.apply(msg(3, "a", verb="update", labels={"x": "1"}))
    e = s.get(Key("root", "", "configmaps", "d", "a"))
    assert e is not None and e.seq == 3 and e.labels == {"x": "1"}
    obj = msgspec.json.decode(e.data)
    assert obj["metadata"]["resourceVersion"] == "3" and obj["metadata"]["name"] == "a"
    st = s.resource("root", "", "configmaps")
    assert [(ns, n) for ns, n, _ in st.iter_entries(None)] == [("d", "a"), ("e", "b")]
    assert st.count == 2
    s.apply(msg(4, "a", etype="delete", verb="delete"))
    assert s.get(Key("root", "", "configmaps", "d", "a")) is None and st.count == 1
    assert [c.type for c in st.changes_after(0)] == [ADDED, ADDED, MODIFIED, DELETED]
    assert [c.seq for c in st.changes_after(2)] == [3, 4]
    with pytest.raises(ValueError):
        s.apply(msg(4, "z"))


def test_ring_floor_rises_with_eviction() -> None:
    s = Store("jk", ring_size=3)
    for i in range(1, 6):
        s.apply(msg(i, f"o{i}"))
    st = s.resource("root", "", "configmaps")
    assert st.ring_floor == 2 and [c.seq for c in st.ring] == [3, 4, 5]
    # Invariant: every change after the floor is in the ring.
    assert [c.seq for c in st.changes_after(st.ring_floor)] == [3, 4, 5]


def test_foreign_messages_are_skipped() -> None:
    s = Store("jk")
    assert s.apply(LogMessage(1, "jk.x", b"junk")) is None
    assert s.apply(LogMessage(2, object_subject("jk", Key("t", "", "r", "", "n")), b"not json")) is None
    assert s.skipped == 2 and s.applied == 2


async def test_watch_stream_transitions_and_overflow() -> None:
    s = Store("jk")
    flt = WatchFilter("d", parse_label_selector("app=web"), parse_field_selector(""))
    w = WatchStream(flt, bookmarks=True, max_queued=3)
    s.resource("root", "", "configmaps").watchers.add(w)
    s.apply(msg(1, "a", labels={"app": "web"}))
    s.apply(msg(2, "a", labels={"app": "db"}, verb="update"))
    s.apply(msg(3, "b", labels={"app": "db"}))  # never matches: nothing
    s.apply(msg(4, "a", labels={"app": "web"}, verb="update"))
    got = [w.receive.receive_nowait() for _ in range(3)]
    assert [(t, c.seq) for t, c in got] == [(ADDED, 1), (DELETED, 2), (ADDED, 4)]
    for i in range(5, 9):
        s.apply(msg(i, f"n{i}", labels={"app": "web"}))
    assert w.overflowed
    items = []
    async for item in w.receive:
        items.append(item)
    assert len(items) == 3  # what fit, then the channel closed
    s.bookmark_all()  # a closed watcher takes no more


def test_bookmarks_only_when_asked() -> None:
    s = Store("jk")
    s.apply(msg(1, "a"))
    quiet = WatchStream(ALL, bookmarks=False, max_queued=10)
    loud = WatchStream(ALL, bookmarks=True, max_queued=10)
    st = s.resource("root", "", "configmaps")
    st.watchers |= {quiet, loud}
    s.bookmark_all()
    with pytest.raises(trio.WouldBlock):
        quiet.receive.receive_nowait()
    assert loud.receive.receive_nowait() == ("BOOKMARK", 1)


def test_histogram_buckets_are_cumulative() -> None:
    from bus import Histogram

    h = Histogram((0.01, 0.1))
    for v in (0.005, 0.01, 0.05, 2.0):
        h.observe(v)
    assert h.cumulative() == [(0.01, 2), (0.1, 3), (float("inf"), 4)]
    assert h.count == 4 and h.total == pytest.approx(2.065)
    with pytest.raises(ValueError):
        Histogram((0.1, 0.01))


def test_reads_allocate_nothing_and_prune() -> None:
    s = Store("jk")
    for i in range(100):
        st = s.peek(f"nobody-{i}", "", "configmaps")
        assert st.count == 0 and not list(st.iter_entries(None))
    assert s.resources == {}
    s.apply(msg(1, "a"))
    assert s.peek("root", "", "configmaps").count == 1
    m = msg(2, "a")
    s.apply(LogMessage(2, object_subject("jk", Key("t1", "", "configmaps", "d", "a")), m.data))
    assert s.peek("t1", "", "configmaps").count == 1 and s.peek("root", "", "configmaps").count == 1
    s.prune("t1")  # not empty: kept
    assert ("t1", "", "configmaps") in s.resources
    s.apply(LogMessage(3, object_subject("jk", Key("t1", "", "configmaps", "d", "a")), msg(3, "a", "delete").data))
    s.prune("t1")
    assert ("t1", "", "configmaps") not in s.resources and ("root", "", "configmaps") in s.resources


def test_entries_and_changes_are_not_tracked_by_the_cyclic_collector() -> None:
    """The store's per-object data (live entries, the rings' changes) is outside gc's generations: a
    full collection does not walk tens of thousands of them (projections/_store.py ``Entry``)."""
    import gc

    s = Store("jk", ring_size=8)
    for i in range(1, 41):
        s.apply(msg(i, f"o{i % 20}", labels={"a": "b"} if i % 2 else None,
                    verb="create" if i <= 20 else "update"))
    st = s.resource("root", "", "configmaps")
    entries = [e for _, _, e in st.iter_entries(None)]
    assert len(entries) == 20 and len(st.ring) == 8
    assert not any(gc.is_tracked(e) for e in entries)
    assert not any(gc.is_tracked(c) or gc.is_tracked(c.entry) for c in st.ring)
    # identity semantics, as the plain objects they replace: hashable, equal only to themselves
    e = entries[0]
    assert e != type(e)(e.seq, e.data, dict(e.labels), dict(e.fields), e.rv_at) and {e: 1}[e] == 1
    # one shared empty dict for objects without labels
    bare = [x for x in entries if not x.labels]
    assert bare and all(x.labels is bare[0].labels for x in bare)
