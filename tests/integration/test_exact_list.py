"""Exact LISTs through a projection (``Projection.list_at``) against a fold of the same log: versions
the resource's ring still covers (answered from memory) and older ones (read from the log) give the
same objects, for two tenants, two kinds, namespaces, a label selector, deletes, objects created after
the version and pages whose continue token names an old version."""

from __future__ import annotations

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
from projections import Projection, ProjectionSettings, WatchFilter, _projection, decode_continue

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

                from_log = 0
                rows_at = _projection.rows_at

                async def counted(*a, **kw):  # type: ignore[no-untyped-def]
                    nonlocal from_log
                    from_log += 1
                    return await rows_at(*a, **kw)

                _projection.rows_at = counted  # type: ignore[assignment]
                try:
                    versions = [history[k][0] for k in (30, 600, 1500, 2200, 2350, 2390)] + [head - 1]
                    for at in versions:
                        for tenant in TENANTS:
                            for group, resource, *_ in KINDS:
                                rdef = reg.by_resource(group, resource)
                                for ns, labels in ((None, ""), ("a", ""), (None, "tier=odd")):
                                    flt = WatchFilter.for_request(rdef, ns, labels, "")
                                    want = fold(at, tenant, group, resource, flt)
                                    got = await projection.list_at(tenant, group, resource, flt, at)
                                    assert got.resource_version == at
                                    assert shown(got.items) == want, (at, tenant, resource, ns, labels)
                                    # Pages of 7: each next page comes from its continue token.
                                    pages: list[bytes] = []
                                    res = await projection.list_at(tenant, group, resource, flt, at, limit=7)
                                    while True:
                                        pages += res.items
                                        if not res.continue_token:
                                            break
                                        rv, start = decode_continue(res.continue_token)
                                        assert rv == at
                                        res = await projection.list_at(tenant, group, resource, flt, rv, limit=7,
                                                                       start_after=start)
                                    assert shown(pages) == want
                finally:
                    _projection.rows_at = rows_at  # type: ignore[assignment]
                # Both sources were taken: the oldest versions are below every ring's floor.
                assert from_log > 0
                floors = [st.ring_floor for st in projection.store.resources.values()]
                assert min(floors) > versions[0] and max(floors) < versions[-2]
                nursery.cancel_scope.cancel()
