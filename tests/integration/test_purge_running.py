"""A running projection behind a purge (projections/_projection.py ``_apply``): a store that is
serving lags behind tombstones, history retention purges them (and everything before them on their
subjects) before its reader gets there; the reader then never sees those deletions. Once it reads
the compaction record (appended before the purge, after the tombstones) it must drop those objects
- no GET, LIST or RBAC decision may see them any more, and their watchers get DELETED - instead of
serving them until a restart."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
import trio

from actors import RetentionSettings, RetentionStats
from actors._retention import run_pass
from bus import Key, all_filter, open_bridge, open_log
from projections import DELETED, Projection
from tests.integration.test_snapshots import ALL, append_all, full_fold, running, same_purged
from tests.unit.test_snapshot_format import make_log

pytestmark = pytest.mark.integration


async def _pause_reader(p: Projection) -> tuple[trio.Event, trio.Event]:
    """Stop ``p``'s reader, as the stall detector replaces it, and hold the new one until the
    returned ``resume`` is set: meanwhile the store serves what it applied and reads nothing."""
    paused, resume = trio.Event(), trio.Event()
    reopen = p._reopen_reader

    async def held(delay: float) -> Any:
        paused.set()
        await resume.wait()
        return await reopen(delay)

    p._reopen_reader = held  # type: ignore[method-assign]
    p._reading.cancel()
    with trio.fail_after(10):
        await paused.wait()
    return paused, resume


async def test_a_running_projection_behind_a_purged_tombstone_drops_the_object(nats_url: str) -> None:
    msgs = make_log(2500, seed=31)
    async with open_bridge(nats_url) as bridge:
        log = await open_log(bridge)
        await append_all(log, msgs[:1000])
        async with running(log, None) as p:
            with trio.fail_after(30):
                await p.wait_for(1000)
            assert p.store.applied == 1000
            _, resume = await _pause_reader(p)
            # Watchers of every resource from where the store stopped (the ring still holds it).
            watched = list(p.store.resources)
            await append_all(log, msgs[1000:])
            cut = (await log.subject_messages(msgs[1799].subject, 1800, limit=1))[0][0]
            stored = datetime.fromisoformat(cut.stored_at.replace("Z", "+00:00")[:26] + "+00:00")
            await run_pass(log, RetentionSettings(max_age_s=3600), RetentionStats(),
                           now=stored + timedelta(hours=1), done={})
            _, horizon, _ = await log.compaction_record()
            assert horizon > 1000
            present = set(await log.subjects(all_filter(log.prefix)))
            ghosts = {k for (t, g, r), st in p.store.resources.items() for ns, n, _ in st.iter_entries(None)
                      if log.subject(k := Key(t, g, r, ns, n)) not in present}
            assert len(ghosts) > 10  # deleted after what the store applied; their tombstones are gone
            assert any(k.group == "rbac.authorization.k8s.io" for k in ghosts)
            # Watches opened before the store goes on (from where it stopped) are told each was deleted.
            seen: dict[tuple[str, str, str], set[str]] = {}

            async def watch(res: tuple[str, str, str], mine: set[str],
                            task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
                got = seen.setdefault(res, set())
                async with p.watch(*res, ALL, resource_version=1000, send_initial=False, bookmarks=False) as gen:
                    task_status.started()
                    async for batch in gen:
                        got.update(ch.namespace + "/" + ch.name for ty, ch in batch  # type: ignore[union-attr]
                                   if ty == DELETED and not isinstance(ch, int))
                        if mine <= got:
                            return

            wanted = {res: {k.namespace + "/" + k.name for k in ghosts if (k.tenant, k.group, k.resource) == res}
                      for res in watched}
            with trio.fail_after(30):
                async with trio.open_nursery() as n:
                    for res, mine in wanted.items():
                        if mine:
                            await n.start(watch, res, mine)
                    resume.set()
                    await p.wait_for(await log.head())
                    assert not [k for k in ghosts if p.store.get(k) is not None]
                    assert p.tombstones >= horizon
                    # Every read sees what a fold of the log as it is now sees, RBAC and CRD views too.
                    same_purged(p, await full_fold(log))
            assert all(mine <= seen[res] for res, mine in wanted.items() if mine)
            assert not p._gap  # accounted for: the next record without a gap before it looks at nothing
