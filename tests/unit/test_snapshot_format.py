"""Projection snapshots without NATS: snapshot + tail folds to exactly what a full replay folds, and
every kind of damaged or foreign snapshot is refused (projections/_snapshot.py)."""

from __future__ import annotations

import base64
import hashlib
import random
from array import array
from typing import Any

import msgspec
import pytest

from bus import (
    Actor,
    EncryptionConfig,
    Event,
    Key,
    Log,
    LogMessage,
    StreamConfig,
    encode_event,
    encode_object_with_rv_slot,
    object_subject,
)
from projections import Projection, Store
from projections._snapshot import (
    FORMAT,
    MAGIC,
    SnapshotHeader,
    SnapshotInvalid,
    build_resources,
    capture,
    decode,
    encode,
    rebuild_views,
)

PREFIX = "jk"
IDENTITY = "JETKUBE@2026-11-29T22:00:00.000000000Z"
TENANTS = ("root", "acme", "globex")
# (group, resource, namespaced)
KINDS = (("", "configmaps", True), ("", "secrets", True), ("", "namespaces", False), ("apps", "deployments", True),
         ("rbac.authorization.k8s.io", "roles", True), ("rbac.authorization.k8s.io", "rolebindings", True),
         ("rbac.authorization.k8s.io", "clusterroles", False),
         ("rbac.authorization.k8s.io", "clusterrolebindings", False),
         ("apiextensions.k8s.io", "customresourcedefinitions", False))
ACTOR = Actor(user="admin", groups=("system:masters",))


def _object(group: str, resource: str, ns: str, name: str, gen: int, rnd: random.Random) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": f"uid-{name}-{gen}", "labels": {"gen": str(gen % 3),
                                                                                "app": rnd.choice("abc")}}
    if ns:
        meta["namespace"] = ns
    obj: dict[str, Any] = {"kind": resource.capitalize(), "apiVersion": "v1", "metadata": meta}
    if resource == "secrets":
        obj["data"] = {"password": base64.b64encode(f"hunter{gen}-{name}".encode()).decode()}
    elif resource in ("roles", "clusterroles"):
        obj["rules"] = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"][: 1 + gen % 2]}]
    elif resource in ("rolebindings", "clusterrolebindings"):
        obj["roleRef"] = {"kind": "ClusterRole", "name": f"cr-{gen % 4}", "apiGroup": "rbac.authorization.k8s.io"}
        obj["subjects"] = [{"kind": "User", "name": f"user-{rnd.randrange(5)}"},
                           {"kind": "Group", "name": f"group-{rnd.randrange(3)}"}]
    elif resource == "customresourcedefinitions":
        obj["spec"] = {"group": "example.com", "names": {"plural": name.split(".")[0], "kind": "Widget"},
                       "scope": "Namespaced", "versions": [{"name": "v1", "served": True, "storage": True}]}
    else:
        obj["data"] = {"k": "v" * rnd.randrange(1, 200), "gen": str(gen)}
    return obj


def make_log(n: int, seed: int = 7) -> list[LogMessage]:
    """``n`` messages: creates, updates (labels and fields change), deletes and re-creates of objects
    of several kinds (namespaced and cluster-scoped, RBAC, CRDs) in several tenants, plus a few
    messages that are not ours (skipped by the store)."""
    rnd = random.Random(seed)
    live: dict[tuple[str, str, str, str, str], int] = {}
    out: list[LogMessage] = []
    for seq in range(1, n + 1):
        if seq % 997 == 0:
            out.append(LogMessage(seq, f"{PREFIX}.not.an.object", b"junk"))
            continue
        tenant = rnd.choice(TENANTS)
        group, resource, namespaced = rnd.choice(KINDS)
        ns = f"ns-{rnd.randrange(6)}" if namespaced else ""
        name = f"o-{rnd.randrange(60)}" if resource != "customresourcedefinitions" else f"w{rnd.randrange(4)}.example.com"
        k = (tenant, group, resource, ns, name)
        gen = live.get(k, 0) + 1
        delete = k in live and rnd.random() < 0.25
        obj = _object(group, resource, ns, name, gen, rnd)
        data, rv_at = encode_object_with_rv_slot(obj)
        ev = Event(type="delete" if delete else "put", object=msgspec.Raw(data), rv_at=rv_at,
                   verb="delete" if delete else ("update" if k in live else "create"), audit_id=f"a{seq}",
                   time="2026-11-29T00:00:00Z", actor=ACTOR, labels=obj["metadata"]["labels"],
                   fields={"spec.x": str(gen)} if resource == "configmaps" else {})
        if delete:
            del live[k]
        else:
            live[k] = gen
        out.append(LogMessage(seq, object_subject(PREFIX, Key(*k)), encode_event(ev), f"a{seq}"))
    return out


def dump(store: Store) -> dict[str, Any]:
    """Everything a read can see of a store, in the store's own order."""
    return {
        "applied": store.applied, "skipped": store.skipped,
        "resources": [(k, st.count, [(ns, n, e.seq, e.data, dict(e.labels), dict(e.fields), e.rv_at)
                                     for ns, n, e in st.iter_entries(None)])
                      for k, st in store.resources.items()],
    }


def dump_views(p: Projection) -> dict[str, Any]:
    rbac = {t: (sorted(tr.roles), sorted(tr.clusterroles), sorted(tr.bindings),
                {k: list(v) for k, v in tr.by_subject.items()},
                {k: [r.raw for r in e.rules] for k, e in tr.clusterroles.items()})
            for t, tr in p.rbac.tenants.items() if tr.roles or tr.clusterroles or tr.bindings}
    crds = {t: dict(sorted(c.items())) for t, c in p.crds.crds.items() if c}
    return {"rbac": rbac, "crds": crds}


def fresh_projection() -> Projection:
    """A projection fed by hand: a real Log object (nothing is connected until it is used)."""
    return Projection(Log(None, StreamConfig(prefix=PREFIX)))  # type: ignore[arg-type]


def snapshot_of(msgs: list[LogMessage], **kw: Any) -> bytes:
    s = Store(PREFIX)
    for m in msgs:
        s.apply(m)
    return encode(capture(s), identity=IDENTITY, prefix=PREFIX, **kw)


def restore(blob: bytes, head: int, ring_size: int = 10_000, **kw: Any) -> Projection:
    header, blocks = decode(blob, identity=IDENTITY, prefix=PREFIX, head=head, **kw)
    p = fresh_projection()
    p.store.restore(header.seq, build_resources(blocks, ring_size), header.skipped)
    rebuild_views(p.store, p.rbac, p.crds)
    return p


LOG = make_log(6000)
_FULL: list[dict[str, Any]] = []


def full_replay() -> dict[str, Any]:
    """The whole log folded from sequence 1 (once per test session)."""
    if not _FULL:
        full = fresh_projection()
        full.apply_batch(LOG)
        _FULL.append({"store": dump(full.store), "views": dump_views(full)})
    return _FULL[0]


def test_the_log_covers_what_it_should() -> None:
    full = Store(PREFIX)
    for m in LOG:
        full.apply(m)
    kinds = {(g, r) for (_, g, r), st in full.resources.items() if st.count}
    assert len(kinds) == len(KINDS) and {t for t, _, _ in full.resources} == set(TENANTS)
    assert sum(st.count for st in full.resources.values()) > 1000
    assert full.skipped == len(LOG) // 997
    deletes = sum(1 for m in LOG if m.data.startswith(b'{"type":"delete"'))
    assert deletes > 500


@pytest.mark.parametrize("cut", [0, 1, 997, 2500, 5999, 6000])
def test_snapshot_plus_tail_equals_a_full_replay(cut: int) -> None:
    full = full_replay()
    p = restore(snapshot_of(LOG[:cut]), head=len(LOG))
    assert p.store.applied == p.store.base == cut
    for i in range(cut, len(LOG), 500):
        p.apply_batch(LOG[i:i + 500])
    assert dump(p.store) == full["store"]
    assert dump_views(p) == full["views"]


def test_restored_rings_start_at_the_snapshot() -> None:
    """Watches and continue tokens from before the snapshot go to the log: no ring claims them."""
    p = restore(snapshot_of(LOG[:3000]), head=len(LOG))
    assert all(st.ring_floor == 3000 and not st.ring for st in p.store.resources.values())
    assert p.store.peek("nobody", "", "pods").ring_floor == 3000
    p.apply_batch(LOG[3000:3100])
    new = p.store.resource("new-tenant", "", "configmaps")  # a state first seen after the snapshot
    assert new.ring_floor == 3000
    assert all(ch.seq > 3000 for st in p.store.resources.values() for ch in st.ring)


def test_a_restored_store_refuses_out_of_order_and_restoring_twice() -> None:
    p = restore(snapshot_of(LOG[:100]), head=len(LOG))
    with pytest.raises(ValueError):
        p.store.apply(LOG[50])
    with pytest.raises(ValueError):
        p.store.restore(10, {})


def _header(blob: bytes) -> tuple[SnapshotHeader, bytes]:
    hl = int.from_bytes(blob[8:12], "big")
    return msgspec.msgpack.decode(blob[12:12 + hl], type=SnapshotHeader), blob[12 + hl:]


def _with_header(header: SnapshotHeader, body: bytes) -> bytes:
    hb = msgspec.msgpack.encode(header)
    return MAGIC + len(hb).to_bytes(4, "big") + hb + body


def _resealed(header: SnapshotHeader, body: bytes) -> bytes:
    """``body`` with a header whose length and checksum match it (damage the checksum cannot see)."""
    return _with_header(msgspec.structs.replace(header, body_bytes=len(body),
                                                body_sha256=hashlib.sha256(body).hexdigest()), body)


GOOD = snapshot_of(LOG[:2000])


def _corruptions() -> list[tuple[str, bytes, str]]:
    header, body = _header(GOOD)
    flipped = bytearray(GOOD)
    flipped[-100] ^= 0x40
    frame = b"\x00\x00\x00\x05hello"
    import zstandard

    bad_rows = zstandard.ZstdCompressor().compress(
        len(m := msgspec.msgpack.encode(("root", "", "configmaps", msgspec.msgpack.encode([["ns", "n", "x"]]))))
        .to_bytes(4, "big") + m)
    future_row = zstandard.ZstdCompressor().compress(
        len(m2 := msgspec.msgpack.encode(("root", "", "configmaps", msgspec.msgpack.encode(
            [["ns", "n", 99_999, b"{}", {}, {}, -1]])))).to_bytes(4, "big") + m2)
    return [
        ("not a snapshot", b"hello world, not a snapshot", "corrupt"),
        ("empty", b"", "corrupt"),
        ("header cut", GOOD[:20], "corrupt"),
        ("body truncated", GOOD[:-1000], "corrupt"),
        ("a bit flipped", bytes(flipped), "corrupt"),
        ("garbage with a matching checksum", _resealed(header, zstandard.ZstdCompressor().compress(frame)), "corrupt"),
        ("not zstd", _resealed(header, b"\x00" * 64), "corrupt"),
        ("rows of the wrong shape", _resealed(header, bad_rows), "corrupt"),
        ("a row newer than the snapshot", _resealed(header, future_row), "corrupt"),
        ("objects missing", _resealed(msgspec.structs.replace(header, objects=header.objects + 1), body), "corrupt"),
        ("another stream", _with_header(msgspec.structs.replace(header, stream="OTHER@2026"), body), "mismatch"),
        ("the same name, recreated", _with_header(msgspec.structs.replace(
            header, stream="JETKUBE@2026-11-30T00:00:00Z"), body), "mismatch"),
        ("another prefix", _with_header(msgspec.structs.replace(header, prefix="kj"), body), "mismatch"),
        ("beyond the head", _with_header(msgspec.structs.replace(header, seq=7000), body), "mismatch"),
        ("a newer format", _with_header(msgspec.structs.replace(header, format=FORMAT + 1), body), "format"),
    ]


@pytest.mark.parametrize("what,blob,reason", _corruptions(), ids=[c[0] for c in _corruptions()])
def test_damaged_or_foreign_snapshots_are_refused(what: str, blob: bytes, reason: str) -> None:
    with pytest.raises(SnapshotInvalid) as e:
        decode(blob, identity=IDENTITY, prefix=PREFIX, head=len(LOG))
    assert e.value.reason == reason, (what, str(e.value))


def test_the_good_one_still_decodes() -> None:
    header, blocks = decode(GOOD, identity=IDENTITY, prefix=PREFIX, head=2000)
    assert header.seq == 2000 and header.objects == sum(len(rows) for *_, rows in blocks)
    assert header.raw_bytes > 2 * header.body_bytes  # compressed


K32 = base64.b64encode(b"k" * 32).decode()


def _encryption(keys: list[tuple[str, str]]) -> EncryptionConfig:
    return EncryptionConfig.from_dict({
        "apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
        "resources": [{"resources": ["secrets"], "providers": [
            {"aesgcm": {"keys": [{"name": n, "secret": s} for n, s in keys]}}, {"identity": {}}]}]})


def test_encrypted_resources_stay_encrypted_in_the_snapshot() -> None:
    import zstandard

    enc = _encryption([("key1", K32)])
    blob = snapshot_of(LOG[:3000], encrypt=enc.encrypt)
    _, body = _header(blob)
    raw = zstandard.ZstdDecompressor().stream_reader(body).read()
    assert b"k8s:enc:aesgcm:v1:key1:" in raw
    assert b"hunter" not in raw and base64.b64encode(b"hunter")[:6] not in raw
    full = fresh_projection()
    full.apply_batch(LOG[:3000])
    assert dump(restore(blob, 3000, decrypt=enc.decrypt).store) == dump(full.store)
    # Without the key the snapshot is refused (and the start folds the log, which needs the key too).
    other = _encryption([("key2", base64.b64encode(b"z" * 32).decode())])
    with pytest.raises(SnapshotInvalid) as e:
        decode(blob, identity=IDENTITY, prefix=PREFIX, head=3000, decrypt=other.decrypt)
    assert e.value.reason == "corrupt"


def _index_dump(store: Store) -> dict[tuple[str, str, str], tuple[int, int, dict[tuple[str, str], list[int]]]]:
    return {k: (st.revs.floor, st.revs.revisions, {(ns, n): list(a) for ns, n, a in st.revs.items()})
            for k, st in store.resources.items()}


@pytest.mark.parametrize("cut", [0, 997, 3000, 6000])
def test_a_snapshot_carries_the_revision_index(cut: int) -> None:
    """Format 2: the store restored with the index a full fold had, so a read older than the snapshot
    still knows each object's revisions; after the tail, the index is the full fold's."""
    from projections._revindex import Revisions

    folded = Store(PREFIX)
    for m in LOG[:cut]:
        folded.apply(m)
    blob = encode(capture(folded), identity=IDENTITY, prefix=PREFIX)
    indexes: dict[tuple[str, str, str], Revisions] = {}
    header, blocks = decode(blob, identity=IDENTITY, prefix=PREFIX, head=len(LOG), indexes=indexes)
    assert header.format == FORMAT == 2
    store = Store(PREFIX)
    store.restore(header.seq, build_resources(blocks, 100), header.skipped, indexes=indexes)
    assert _index_dump(store) == _index_dump(folded)
    for m in LOG[cut:]:
        store.apply(m)
        folded.apply(m)
    assert _index_dump(store) == _index_dump(folded)
    # Without ``indexes`` (as from a format 1 snapshot) the index starts at the snapshot.
    header, blocks = decode(blob, identity=IDENTITY, prefix=PREFIX, head=len(LOG))
    bare = Store(PREFIX)
    bare.restore(header.seq, build_resources(blocks, 100), header.skipped)
    assert all(st.revs.floor == cut for st in bare.resources.values())


def test_a_revision_index_that_disagrees_is_refused() -> None:
    from projections._revindex import Revisions

    folded = Store(PREFIX)
    for m in LOG[:2000]:
        folded.apply(m)
    cap = capture(folded)
    # One object's last revision dropped: its row's sequence is no longer the index's answer.
    b, (floor, revisions, entries) = next((i, x) for i, x in enumerate(cap.indexes)
                                          if any(len(s) > 16 for _, _, s in x[2]))
    j = next(i for i, (_, _, s) in enumerate(entries) if len(s) > 16)
    ns, name, seqs = entries[j]
    cap.indexes[b] = (floor, revisions, entries[:j] + [(ns, name, seqs[:-8])] + entries[j + 1:])
    blob = encode(cap, identity=IDENTITY, prefix=PREFIX)
    with pytest.raises(SnapshotInvalid) as e:
        decode(blob, identity=IDENTITY, prefix=PREFIX, head=len(LOG), indexes={})
    assert e.value.reason == "corrupt"
    # A revision after the snapshot.
    cap = capture(folded)
    floor, revisions, entries = cap.indexes[0]
    ns, name, seqs = entries[0]
    later = array("q", [(len(LOG) + 5) * 2])
    cap.indexes[0] = (floor, revisions, [(ns, name, seqs + later.tobytes())] + entries[1:])
    blob = encode(cap, identity=IDENTITY, prefix=PREFIX)
    indexes: dict[tuple[str, str, str], Revisions] = {}
    with pytest.raises(SnapshotInvalid):
        decode(blob, identity=IDENTITY, prefix=PREFIX, head=len(LOG) + 10, indexes=indexes)


def test_a_format_1_snapshot_is_still_read() -> None:
    """Frames of four elements (no revision index): restored with the index starting at the snapshot."""
    import io

    import zstandard

    folded = Store(PREFIX)
    for m in LOG[:1500]:
        folded.apply(m)
    cap = capture(folded)
    enc = msgspec.msgpack.Encoder()
    out = io.BytesIO()
    with zstandard.ZstdCompressor(write_checksum=True).stream_writer(out, closefd=False) as w:
        for t, g, r, nss in cap.blocks:
            rows = [(ns, n, e.seq, e.data, e.labels, e.fields, e.rv_at) for ns, d in nss for n, e in d.items()]
            frame = enc.encode((t, g, r, enc.encode(rows)))
            w.write(len(frame).to_bytes(4, "big") + frame)
    body = out.getvalue()
    header = SnapshotHeader(format=1, stream=IDENTITY, prefix=PREFIX, seq=1500, objects=cap.objects,
                            resources=len(cap.blocks), body_bytes=len(body), body_sha256=hashlib.sha256(body).hexdigest(),
                            skipped=cap.skipped)
    hb = enc.encode(header)
    indexes: dict[tuple[str, str, str], Any] = {}
    got, blocks = decode(MAGIC + len(hb).to_bytes(4, "big") + hb + body, identity=IDENTITY, prefix=PREFIX,
                         head=len(LOG), indexes=indexes)
    assert got.format == 1 and not indexes
    store = Store(PREFIX)
    store.restore(got.seq, build_resources(blocks, 100), got.skipped, indexes=indexes)
    assert dump(store) == dump(folded)
    assert all(st.revs.floor == 1500 for st in store.resources.values())


def test_index_rows_are_each_objects_revisions_in_item_order() -> None:
    """capture's index rows (one comprehension, projections/_snapshot.py ``_index_rows``): the same rows,
    in the same order, as one ``_le`` per item of ``Revisions.items()``."""
    from projections._revindex import Revisions
    from projections._snapshot import _index_rows, _le

    revs = Revisions()
    rng = random.Random(7)
    for seq in range(1, 400):
        revs.add(f"ns{rng.randrange(5)}", f"o{rng.randrange(60)}", seq, rng.random() < 0.1)
    rows = _index_rows(revs)
    assert rows == [(ns, n, _le(a)) for ns, n, a in revs.items()]
    assert len(rows) == sum(len(d) for d in revs.by_ns.values()) > 50
