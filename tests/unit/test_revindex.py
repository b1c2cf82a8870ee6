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


def _reference_trim(model: dict[tuple[str, str], list[tuple[int, bool]]], point: int) -> None:
    """The trim's meaning on the brute-force model: the old whole-index scan."""
    for key, revs in list(model.items()):
        i = sum(1 for s, _ in revs if s <= point)
        if i == 0:
            continue
        if i == len(revs) and revs[-1][1]:
            del model[key]
        else:
            del revs[:i - 1]


def test_incremental_trims_in_bounded_steps_equal_the_whole_scan() -> None:
    """Adds, seeds, forgets and trims at rising points, each trim done in steps of random budgets while
    more revisions come: once a trim is done the index holds exactly what the old whole-index scan
    kept, every answer at or above the floor is the model's, and the revisions held are counted."""
    for seed in range(10):
        rng = random.Random(500 + seed)
        tally = [0]
        idx = Revisions(0, tally)
        model: dict[tuple[str, str], list[tuple[int, bool]]] = {}
        seq = point = 0
        for _round in range(40):
            for _ in range(rng.randint(0, 60)):
                seq += rng.randint(1, 40)  # some gaps span whole buckets (1,024 sequences): not here
                key = (rng.choice(["", "a", "b"]), f"o{rng.randrange(25)}")
                deleted = rng.random() < 0.2
                idx.add(*key, seq, deleted)
                model.setdefault(key, []).append((seq, deleted))
            if rng.random() < 0.1 and model:
                key = rng.choice(sorted(model))
                idx.forget(*key)
                del model[key]
            if rng.random() < 0.05:
                seq += rng.randint(2000, 5000)  # a jump over buckets
            point = rng.randint(point, max(point, seq))
            budget = rng.choice([None, 0, 1, 3, 17])
            idx.trim(point, budget)
            assert idx.floor == point
            # An unfinished trim changes no answer at or above the point.
            for key, revs in model.items():
                for s in (point, (point + seq) // 2, seq):
                    assert idx.at(*key, s) == _model_at(revs, s), (seed, key, s)
            for _ in range(1000):  # (a step may only drop stale entries: it then trims nothing)
                if not idx.trimming:
                    break
                idx.trim_step(rng.choice([1, 2, 5]))
            assert not idx.trimming
            _reference_trim(model, point)
            got = {(ns, name): [(v >> 1, bool(v & 1)) for v in a] for ns, name, a in idx.items()}
            assert got == model, seed
            assert idx.held == tally[0] == sum(len(r) for r in model.values())


def test_a_carried_index_is_reindexed_and_counted() -> None:
    src, model = _random_history(random.Random(7), 400)
    carried = Revisions(0)
    for ns, name, a in src.items():  # as a snapshot's decode builds it: arrays put in directly
        carried.by_ns.setdefault(ns, {})[name] = a
    tally = [0]
    carried.reindex()
    carried.share(tally)
    assert carried.held == tally[0] == 400
    top = max(s for revs in model.values() for s, _ in revs)
    carried.trim(top // 2)
    _reference_trim(model, top // 2)
    assert {(ns, n): [(v >> 1, bool(v & 1)) for v in a] for ns, n, a in carried.items()} == model
    assert tally[0] == sum(len(r) for r in model.values())


def test_the_store_bounds_its_indexes_and_trims_in_steps() -> None:
    """Past ``index_max_revisions`` the store raises every index's floor (Exact reads below it take the
    log's path) to ``cap // 2`` sequences back: it then holds at most that many revisions plus one per
    object; and a trim goes on in steps of ``TRIM_STEP`` objects between the batches applied."""
    cap = 400
    store = Store("p", index_max_revisions=cap)
    keys = [Key(t, "", "configmaps", "ns", f"o{i}") for t in ("t", "u") for i in range(30)]
    seq = 0
    for _ in range(60):
        for k in keys:
            seq += 1
            store.apply(_msg(seq, k))
            held = sum(st.revs.held for st in store.resources.values())
            assert held == store._index_held[0]
            assert held <= cap + len(keys) + 1
    floors = {st.revs.floor for st in store.resources.values()}
    assert len(floors) == 1 and seq - cap < floors.pop() <= seq - cap // 2
    st = store.resources[("t", "", "configmaps")]
    assert st.revs.at("ns", "o3", seq) == seq - 56  # the current revision is still known
    # A trim of many objects goes in bounded steps.
    many = Store("p", index_max_revisions=0)
    ks = [Key("t", "", "configmaps", "ns", f"m{i}") for i in range(3000)]
    seq = 0
    for _ in range(3):
        for k in ks:
            seq += 1
            many.apply(_msg(seq, k))
    many.trim_revisions(seq - 1)
    assert many.trimming
    steps = 0
    while many.trimming:
        many.trim_step()
        steps += 1
    revs = many.resources[("t", "", "configmaps")].revs
    assert steps == 2 and revs.held == 3000 + 1  # (the last object's last two: its second is the point)
    assert all(revs.at("ns", f"m{i}", seq) == 2 * 3000 + i + 1 for i in range(2999))


def test_the_density_is_of_the_revisions_held() -> None:
    """The resource's messages per stream sequence (the cost of a range read in ``rows_indexed``): two
    resources written in turn are half the stream each, and still about half after trims raised the
    floor (held revisions: those above it plus one per object), not drifting to 1 as the count of every
    revision ever added would."""
    store = Store("p")
    keys = [Key("t", "", res, "ns", f"o{i}") for i in range(100) for res in ("configmaps", "secrets")]
    seq = 0
    for _round in range(40):
        for k in keys:
            seq += 1
            store.apply(_msg(seq, k))
        if _round % 10 == 9:
            store.trim_revisions(seq - 1000)
            while store.trimming:
                store.trim_step()
    revs = store.resources[("t", "", "configmaps")].revs
    assert revs.floor == seq - 1000 and revs.revisions == 4000
    assert 0.5 <= revs.density(store.applied) <= 0.5 + 100 / 1000  # (+ one revision at or below the floor each)
    assert Revisions(10).density(10) == 0.0


def test_a_pruned_state_leaves_the_stores_tally_and_its_trim() -> None:
    """A tenant's state pruned while its index's trim is unfinished: the store's tally loses its revisions
    once (not again by the later steps of a trim it no longer runs), and equals what its states hold."""
    store = Store("p", index_max_revisions=0)
    ks = [Key(t, "", "configmaps", "ns", f"m{i}") for t in ("t", "u") for i in range(3000)]
    seq = 0
    for _ in range(3):
        for k in ks:
            seq += 1
            store.apply(_msg(seq, k))
    for k in ks[3000:]:  # u's objects deleted: its state holds nothing, so a prune may drop it
        seq += 1
        store.apply(_msg(seq, k, deleted=True))
    store.trim_revisions(seq - 1)
    assert store.trimming
    u = store.resources[("u", "", "configmaps")].revs
    store.prune("u")
    assert ("u", "", "configmaps") not in store.resources and u not in store._trimming
    while store.trimming:
        store.trim_step()
    held = sum(st.revs.held for st in store.resources.values())
    assert store._index_held[0] == held == 3000  # t's: each object's last revision
