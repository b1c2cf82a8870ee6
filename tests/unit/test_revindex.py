"""The revision index (projections/_revindex.py) against a brute-force model of the same revisions, and
as the store keeps it (``Store.apply``, ``restore``, ``forget``, ``trim_revisions``)."""

from __future__ import annotations

import random

import msgspec

from bus import Actor, Event, Key, LogMessage, encode_event, encode_object_with_rv_slot, object_subject
from projections import Store
from projections._revindex import Revisions


def _model_at(revs: list[tuple[int, bool]], seq: int) -> int:
    got = 0
    for s, deleted in revs:
        if s > seq:
            break
        got = 0 if deleted else s
    return got


def _random_history(rng: random.Random, n: int) -> tuple[Revisions, dict[tuple[str, str], list[tuple[int, bool]]]]:
    idx = Revisions()
    model: dict[tuple[str, str], list[tuple[int, bool]]] = {}
    seq = 0
    for _ in range(n):
        seq += rng.randint(1, 3)
        key = (rng.choice(["", "a", "b"]), f"o{rng.randrange(30)}")
        deleted = rng.random() < 0.2
        idx.add(*key, seq, deleted)
        model.setdefault(key, []).append((seq, deleted))
    return idx, model


def test_at_matches_a_scan_of_every_revision() -> None:
    for seed in range(8):
        rng = random.Random(seed)
        idx, model = _random_history(rng, 600)
        top = max(s for revs in model.values() for s, _ in revs)
        assert idx.revisions == 600 and len(idx) == len(model)
        for seq in list(range(top + 2)):
            for key, revs in model.items():
                assert idx.at(*key, seq) == _model_at(revs, seq), (seed, key, seq)
        assert idx.at("zz", "nope", top) == 0


def test_keys_are_in_row_key_order() -> None:
    idx, model = _random_history(random.Random(3), 300)
    want = sorted(f"{ns}\x00{n}" for ns, n in model)
    assert [rk for rk, _, _ in idx.keys(None)] == want
    assert [(ns, n) for _, ns, n in idx.keys(None)] == [tuple(k.split("\x00")) for k in want]
    assert [rk for rk, _, _ in idx.keys("a")] == [k for k in want if k.startswith("a\x00")]
    # A new name invalidates the cached order.
    idx.add("a", "0-first", 10_000, False)
    assert idx.keys(None)[want.index(next(k for k in want if k.startswith("a\x00")))][2] == "0-first"
    assert idx.keys("a")[0][2] == "0-first"


def test_trim_keeps_every_answer_at_or_above_the_point() -> None:
    for seed in range(6):
        rng = random.Random(100 + seed)
        idx, model = _random_history(rng, 500)
        top = max(s for revs in model.values() for s, _ in revs)
        point = rng.randrange(top)
        before = {(key, seq): idx.at(*key, seq) for key in model for seq in range(point, top + 2)}
        held = sum(len(a) for _, _, a in idx.items())
        idx.trim(point)
        assert idx.floor == point
        assert all(idx.at(*key, seq) == v for (key, seq), v in before.items())
        # Nothing older than each object's last revision <= point is left, and no object that was
        # deleted at or before the point and never written again.
        for ns, name, a in idx.items():
            assert sum(1 for v in a if v >> 1 <= point) <= 1
            assert not (a[-1] >> 1 <= point and a[-1] & 1)
        assert sum(len(a) for _, _, a in idx.items()) < held
        for key, revs in model.items():
            if revs[-1][0] <= point and revs[-1][1]:
                assert key[1] not in idx.by_ns.get(key[0], {})


def test_forget_drops_an_object() -> None:
    idx = Revisions()
    idx.add("a", "x", 5, False)
    idx.add("a", "y", 6, False)
    assert [n for _, _, n in idx.keys(None)] == ["x", "y"]
    idx.forget("a", "x")
    assert idx.at("a", "x", 10) == 0 and [n for _, _, n in idx.keys(None)] == ["y"]
    idx.forget("a", "y")
    assert idx.by_ns == {} and idx.keys(None) == []


def _msg(seq: int, key: Key, deleted: bool = False) -> LogMessage:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": key.name, "namespace": key.namespace}}
    data, rv_at = encode_object_with_rv_slot(obj)
    ev = Event(type="delete" if deleted else "put", object=msgspec.Raw(data), rv_at=rv_at, verb="update",
               audit_id=f"a{seq}", time="2026-01-01T00:00:00Z", actor=Actor(user="t"))
    return LogMessage(seq, object_subject("p", key), encode_event(ev))


def test_the_store_keeps_the_index() -> None:
    store = Store("p")
    a, b = Key("t", "", "configmaps", "ns", "a"), Key("t", "", "configmaps", "ns", "b")
    for seq, key, deleted in [(1, a, False), (2, b, False), (3, a, False), (4, b, True), (6, a, False)]:
        store.apply(_msg(seq, key, deleted))
    st = store.resources[("t", "", "configmaps")]
    assert st.revs.floor == 0 and st.revs.revisions == 5
    assert [st.revs.at("ns", "a", s) for s in range(8)] == [0, 1, 1, 3, 3, 3, 6, 6]
    assert [st.revs.at("ns", "b", s) for s in range(8)] == [0, 0, 2, 2, 0, 0, 0, 0]
    # The compaction point at 4: b (deleted at 4) is gone, a keeps 3 and 6.
    store.trim_revisions(4)
    assert list(st.revs.by_ns["ns"]) == ["a"] and list(st.revs.by_ns["ns"]["a"]) == [6, 12]
    assert st.revs.floor == 4
    store.forget(a)
    assert st.revs.by_ns == {}
    # A store restored from a snapshot at 10 knows each object's revision then, and what follows.
    snap = Store("p")
    src = Store("p")
    for seq, key in [(2, a), (7, b)]:
        src.apply(_msg(seq, key))
    snap.restore(10, src.resources)
    st = snap.resources[("t", "", "configmaps")]
    assert st.revs.floor == 10 and st.revs.revisions == 0
    snap.apply(_msg(12, a))
    assert [st.revs.at("ns", "a", s) for s in (10, 11, 12)] == [2, 2, 12]
    assert st.revs.at("ns", "b", 12) == 7
    # A state created after a tenant prune starts its index there.
    store.apply(_msg(20, Key("u", "", "configmaps", "ns", "z"), deleted=False))
    store.apply(_msg(21, Key("u", "", "configmaps", "ns", "z"), deleted=True))
    store.prune("u")
    store.apply(_msg(30, Key("u", "", "configmaps", "ns", "z")))
    assert store.resources[("u", "", "configmaps")].revs.floor == 21
