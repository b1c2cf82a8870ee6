"""Exact LISTs through a projection (``Projection.list_at``) against a fold of the same log: versions
the resource's ring still covers (answered from memory) and older ones (read from the log) give the
same objects, for two tenants, two kinds, namespaces, a label selector, deletes, objects created after
the version and pages whose continue token names an old version. Older versions are answered from the
store's revision index (and, with it off, by asking the log); a message the index names that the log
no longer returns sends the read the log's way; a projection started from a snapshot answers from
the index from the snapshot's sequence on and from the log below it, unless the snapshot carried the
index."""

from __future__ import annotations

import dataclasses
import random

import msgspec
import pytest
import trio

from bus import (
    Actor,
    Event,
    Key,
    StreamConfig,
    encode_event,
    encode_object_with_rv_slot,
    open_bridge,
    open_log,
)
from kinds import Registry
from projections import Projection, ProjectionSettings, WatchFilter, decode_continue
from projections._revindex import Revisions
from projections._snapshot import build_resources, capture, decode, encode

pytestmark = pytest.mark.trio

KINDS = (("", "configmaps", "ConfigMap", "v1"), ("apps", "deployments", "Deployment", "apps/v1"))
TENANTS = ("root", "t1")
NAMESPACES = ("a", "b")


def _event(key: Key, kind: str, api_version: str, i: int, verb: str, delete: bool) -> bytes:
    labels = {"tier": "odd" if i % 2 else "even"}
    obj = {"apiVersion": api_version, "kind": kind,
           "metadata": {"name": key.name, "namespace": key.namespace, "labels": labels}, "data": {"i": str(i)}}
    data, rv_at = encode_object_with_rv_slot(obj)
    return encode_event(Event(type="delete" if delete else "put", object=msgspec.Raw(data), rv_at=rv_at, verb=verb,
                              audit_id=f"a{i}", time="2026-01-01T00:00:00Z", actor=Actor(user="t"), labels=labels))


async def test_exact_list_from_the_ring_and_from_the_log_agree_with_a_fold(nats_url: str) -> None:
    rng = random.Random(11)
    reg = Registry()
    async with open_bridge(nats_url) as bridge:
        log = await open_log(bridge, StreamConfig(name="EL", prefix="el"))
        # Each resource's ring holds its last 150 changes: recent versions come from memory, older
        # ones from the log.
        projection = Projection(log, ProjectionSettings(ring_size=150))
        history: list[tuple[int, Key, bool, int]] = []  # (seq, key, deleted, i)
        live: set[Key] = set()
        last: dict[str, int] = {}
        with trio.fail_after(180):
            async with trio.open_nursery() as nursery:
                await nursery.start(projection.run)
                for i in range(2400):
                    group, resource, kind, api_version = KINDS[i % 2]
                    key = Key(TENANTS[(i // 2) % 2], group, resource, rng.choice(NAMESPACES), f"o{rng.randrange(90)}")
                    delete = key in live and rng.random() < 0.1
                    subject = log.subject(key)
                    verb = "delete" if delete else "update" if key in live else "create"
                    seq = await log.append(subject, _event(key, kind, api_version, i, verb, delete), msg_id=f"m{i}",
                                           expected_seq=last.get(subject, 0))
                    last[subject] = seq
                    history.append((seq, key, delete, i))
                    (live.discard if delete else live.add)(key)
                head = history[-1][0]
                await projection.wait_for(head)

                def fold(at: int, tenant: str, group: str, resource: str, flt: WatchFilter) -> list[tuple[str, str, str]]:
                    state: dict[tuple[str, str], tuple[int, int]] = {}
                    for seq, key, deleted, i in history:
                        if seq > at:
                            break
                        if (key.tenant, key.group, key.resource) != (tenant, group, resource):
                            continue
                        if deleted:
                            state.pop((key.namespace, key.name), None)
                        else:
                            state[(key.namespace, key.name)] = (seq, i)
                    tier = flt.labels.empty or None
                    return [(ns, n, f"{seq}:{i}") for (ns, n), (seq, i) in sorted(state.items())
                            if (flt.namespace is None or ns == flt.namespace)
                            and (tier or ("odd" if i % 2 else "even") == "odd")]

                def shown(items: list[bytes]) -> list[tuple[str, str, str]]:
                    out = []
                    for data in items:
                        m = msgspec.json.decode(data)["metadata"]
                        out.append((m["namespace"], m["name"],
                                    f'{m["resourceVersion"]}:{msgspec.json.decode(data)["data"]["i"]}'))
                    return out

                async def check(p: Projection, versions: list[int], *, pages: bool = True) -> None:
                    for at in versions:
                        for tenant in TENANTS:
                            for group, resource, *_ in KINDS:
                                rdef = reg.by_resource(group, resource)
                                for ns, labels in ((None, ""), ("a", ""), (None, "tier=odd")):
                                    flt = WatchFilter.for_request(rdef, ns, labels, "")
                                    want = fold(at, tenant, group, resource, flt)
                                    got = await p.list_at(tenant, group, resource, flt, at)
                                    assert got.resource_version == at
                                    assert shown(got.items) == want, (at, tenant, resource, ns, labels)
                                    if ns is None and not labels:
                                        # GET at the version (resourceVersionMatch=Exact) of some objects,
                                        # present or not then.
                                        for n in ("o1", "o2", "o3", "o5", "o8", "o13", "o21", "o34", "o55"):
                                            for nsx in NAMESPACES:
                                                e = await p.get_at(Key(tenant, group, resource, nsx, n), at)
                                                rv = next((r for x, y, r in want if (x, y) == (nsx, n)), None)
                                                assert (e and f"{e.seq}:") == (rv and rv.split(":")[0] + ":"), \
                                                    (at, tenant, resource, nsx, n)
                                    if not pages:
                                        continue
                                    # Pages of 7: each next page comes from its continue token.
                                    items: list[bytes] = []
                                    res = await p.list_at(tenant, group, resource, flt, at, limit=7)
                                    while True:
                                        items += res.items
                                        if not res.continue_token:
                                            break
                                        rv, start = decode_continue(res.continue_token)
                                        assert rv == at
                                        res = await p.list_at(tenant, group, resource, flt, rv, limit=7,
                                                              start_after=start)
                                    assert shown(items) == want

                versions = [history[k][0] for k in (30, 600, 1500, 2200, 2350, 2390)] + [head - 1]
                # The ring for recent versions, the revision index for older ones.
                await check(projection, versions)
                reads = projection.exact_reads
                assert reads["ring"] > 0 and reads["index"] > 0 and reads["log"] == 0, reads
                floors = [st.ring_floor for st in projection.store.resources.values()]
                assert min(floors) > versions[0] and max(floors) < versions[-2]
                # Without the index: the log alone.
                indexed = dict(reads)
                projection.settings = dataclasses.replace(projection.settings, revision_index=False)
                await check(projection, versions[:4])
                assert reads["index"] == indexed["index"] and reads["log"] > 0, reads
                projection.settings = dataclasses.replace(projection.settings, revision_index=True)
                # A message the index names that the log no longer returns: the log's way instead.
                real = log.messages_by_seq
                dropped = 0

                async def lossy(filter_subject: str, seqs: set[int], **kw):  # type: ignore[no-untyped-def]
                    nonlocal dropped
                    got = await real(filter_subject, seqs, **kw)
                    if got:
                        dropped += 1
                        del got[max(got)]
                    return got

                log.messages_by_seq = lossy  # type: ignore[method-assign]
                before = dict(reads)
                try:
                    await check(projection, versions[1:2], pages=False)
                finally:
                    log.messages_by_seq = real  # type: ignore[method-assign]
                assert dropped > 0 and reads["log"] > before["log"], reads
                # A projection started from a snapshot at ``mid`` (its store restored with the objects then):
                # the index answers from ``mid`` on, the log below it.
                mid = history[1500][0]
                at_mid = Projection(log, ProjectionSettings(ring_size=150, stop_at=mid))
                nursery.start_soon(at_mid.run)
                await at_mid.ready.wait()
                blocks = [(t, g, r, [(ns, n, e.seq, e.data, e.labels, e.fields, e.rv_at)
                                     for ns, n, e in st.iter_entries(None)])
                          for (t, g, r), st in at_mid.store.resources.items()]
                restored = Projection(log, ProjectionSettings(ring_size=150))
                restored.store.restore(mid, build_resources(blocks, 150))
                await nursery.start(restored.run)
                await restored.wait_for(head)
                await check(restored, [versions[1], mid, history[1650][0], history[1750][0], versions[-1]])
                assert restored.exact_reads["index"] > 0 and restored.exact_reads["log"] > 0, restored.exact_reads
                # From a snapshot that carries the revision index (format 2): older versions from the index too.
                indexes: dict[tuple[str, str, str], Revisions] = {}
                blob = encode(capture(at_mid.store), identity=await log.identity(), prefix=log.prefix)
                header, blocks2 = decode(blob, identity=await log.identity(), prefix=log.prefix, head=head,
                                         indexes=indexes)
                carried = Projection(log, ProjectionSettings(ring_size=150))
                carried.store.restore(header.seq, build_resources(blocks2, 150), header.skipped, indexes=indexes)
                await nursery.start(carried.run)
                await carried.wait_for(head)
                await check(carried, [versions[0], versions[1], mid, history[1650][0]])
                assert carried.exact_reads["index"] > 0 and carried.exact_reads["log"] == 0, carried.exact_reads
                # The index's own bound (projections/_store.py index_max_revisions): past it the floor rises
                # (trimmed in steps between slices); versions below it are read from the log, right.
                capped = Projection(log, ProjectionSettings(ring_size=20, revision_index_max=600))
                await nursery.start(capped.run)
                await capped.wait_for(head)
                cut = {st.revs.floor for st in capped.store.resources.values()}
                assert len(cut) == 1 and head - 600 < min(cut) <= head - 300, (cut, head)
                assert capped.store._index_held[0] <= 600 + 2 * 2 * len(NAMESPACES) * 90  # + one per object
                assert versions[1] < min(cut) < versions[3]
                await check(capped, [versions[1], versions[3], versions[4], versions[-1]], pages=False)
                assert capped.exact_reads["index"] > 0 and capped.exact_reads["log"] > 0, capped.exact_reads
                nursery.cancel_scope.cancel()


async def test_exact_reads_from_the_index_after_a_retention_purge(nats_url: str) -> None:
    """History retention purges old revisions and aged tombstones while a projection runs: it trims its
    revision index at the compaction point it applies, answers every version from that point on from
    the index exactly as a fold of the appended history, and 410 below it; so does a projection
    started afterwards (its fold sees only what the log retains)."""
    from datetime import datetime, timedelta

    from actors import RetentionSettings, RetentionStats
    from actors._retention import run_pass
    from projections import TooOldResourceVersion
    from tests.integration.test_retention import _fold, _seed

    cm = Registry().by_resource("", "configmaps")
    flt = WatchFilter.for_request(cm, None, "", "")

    def shown(items: list[bytes]) -> dict[str, str]:
        return {msgspec.json.decode(d)["metadata"]["name"]: msgspec.json.decode(d)["data"]["i"] for d in items}

    async with open_bridge(nats_url) as bridge:
        log = await open_log(bridge, StreamConfig(name="ELR", prefix="elr"))
        with trio.fail_after(180):
            async with trio.open_nursery() as nursery:
                running = Projection(log, ProjectionSettings(ring_size=50))
                await nursery.start(running.run)
                history = await _seed(log, 2400, 200, 5)
                head = history[-1][0]
                cut = (await log.subject_messages(log.subject(Key("root", "", "configmaps", "ns", history[1500][1])),
                                                  history[1500][0], limit=1))[0][0]
                stored = datetime.fromisoformat(cut.stored_at.replace("Z", "+00:00")[:26] + "+00:00")
                await run_pass(log, RetentionSettings(max_age_s=3600), RetentionStats(),
                               now=stored + timedelta(hours=1), done={})
                point, _ = await log.compaction_point()
                assert history[0][0] < point < head
                await running.wait_for(await log.head())  # (the compaction record applied)
                st = running.store.resources[("root", "", "configmaps")]
                assert st.revs.floor == point
                assert all(sum(1 for v in a if v >> 1 <= point) <= 1 for _, _, a in st.revs.items())
                restarted = Projection(log, ProjectionSettings(ring_size=50))
                await nursery.start(restarted.run)
                for p in (running, restarted):
                    for at in sorted({point, head} | {history[k][0] for k in (1700, 2000, 2300)} - set(range(point))):
                        got = await p.list_at("root", "", "configmaps", flt, at)
                        assert shown(got.items) == _fold(history, at), at
                    with pytest.raises(TooOldResourceVersion):
                        await p.list_at("root", "", "configmaps", flt, point - 1)
                    assert p.exact_reads["index"] >= 3 and p.exact_reads["log"] == 0, p.exact_reads
                nursery.cancel_scope.cancel()
