"""A ``/metrics`` scrape renders its text off the event loop: the same bytes as rendering it in the
loop, while the loop keeps running other tasks (issue 15: a scrape of many series was one step of
14-27 ms of CPU that stalled every request)."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import trio
import trio.testing
from prometheus_client import generate_latest

from bus import FAST_BUCKETS, Histogram
from gateway._metrics import WATCH_EVENT_SIZE_BUCKETS, ServerMetrics
from kinds import Registry

TENANTS = [f"t{i}" for i in range(4)]
VERBS = (("GET", "resource", "200"), ("LIST", "namespace", "200"), ("CREATE", "resource", "201"),
         ("UPDATE", "resource", "409"), ("PATCH", "resource", "200"), ("DELETE", "resource", "404"))
LEVELS = ("exempt", "system", "leader-election", "workload-high", "workload-low", "global-default")


async def _head() -> int:
    await trio.lowlevel.checkpoint()
    return 1234


def populated(tenants: list[str] = TENANTS, kinds: int = 8) -> ServerMetrics:
    """A server's metrics with many series: every tenant × kind × verb, watches, APF levels."""
    registry = Registry()
    tflows = {t: SimpleNamespace(levels={lv: SimpleNamespace(queued_requests=i, queued_seats=2 * i,
                                                               executing_requests=i + 1, executing_seats=i + 2,
                                                               limit=10 + i) for i, lv in enumerate(LEVELS)},
                                 nominal={lv: 5 for lv in LEVELS}) for t in tenants}
    fc = SimpleNamespace(dispatched={}, rejected={}, dispatcher=SimpleNamespace(tenants=tflows, seat_limit=lambda t, qs: qs.limit), on_wait=None)
    stages = [SimpleNamespace(name=f"stage{i}", latency=Histogram(FAST_BUCKETS)) for i in range(8)]
    pipeline = SimpleNamespace(flow_control=fc, apf_fleet=None, apf_leases=None, stages=stages,
                               actors=[SimpleNamespace(name=f"actor{i}", mailbox_depth=i, mailbox_size=1000)
                                       for i in range(8)],
                               chain=SimpleNamespace(webhooks=SimpleNamespace(
                                   fail_open={("hook", "validating", "t1"): 2},
                                   rejections={("hook", "admit", "CREATE", 400, "t2"): 3})))
    defs = [d for d in registry.for_tenant("root").defs if d.stored and not d.storage and not d.create_as][:kinds]
    resources = {(t, d.group, d.plural): SimpleNamespace(watchers=[object()] * (i % 3), count=i * 7)
                 for t in tenants for i, d in enumerate(defs)}
    log = SimpleNamespace(head=_head, append_latency=Histogram(FAST_BUCKETS), conflicts=3,
                          bridge=SimpleNamespace(connected=True, connections=2))
    projection = SimpleNamespace(store=SimpleNamespace(resources=resources, applied=1200), log=log,
                                 watch_starts={"state": 4, "ring": 2, "log": 1}, start_s=0.5, start_from=0,
                                 snapshots=None, consistent_wait=Histogram(FAST_BUCKETS), compacted=0,
                                 feed_drops=0, feed_resyncs=0)
    m = ServerMetrics(pipeline, projection, registry)  # type: ignore[arg-type]
    n = 0
    for t in tenants:
        for d in defs:
            for verb, scope, code in VERBS:
                n += 1
                labels = (verb, "All" if verb == "CREATE" else "", d.group, d.version, d.plural, "", scope)
                m.observe(labels, int(code), (n % 97) / 50, (n % 13) * 900, t)
                m.tenant_request(t, verb, int(code))
            watch = ("WATCH", "", d.group, d.version, d.plural, "", "namespace")
            m.longrunning[(watch[0], *watch[2:], t)] = 1
            m.aborts[(watch[0], *watch[2:], t)] = 1
            gvk = (d.group, d.version, d.kind, t)
            m.watch_events[gvk] = 5
            m.watch_event_sizes[gvk] = h = Histogram(WATCH_EVENT_SIZE_BUCKETS)
            h.observe(900)
        for lv in LEVELS:
            for schema in ("a", "b", "c"):
                fc.dispatched[(t, lv, schema)] = 9
                fc.rejected[(t, lv, schema, "queue-full")] = 1
                m.flow_control.on_wait((t, lv, schema), True, 0.01)  # type: ignore[union-attr]
    for s in stages:
        s.latency.observe(0.001)
    return m


def _ours(text: bytes) -> bytes:
    """The text without the process and Python samples (they change between two renderings)."""
    return b"\n".join(line for line in text.split(b"\n")
                      if not line.startswith((b"process_", b"python_gc_")))


async def test_the_scrape_renders_what_rendering_in_the_loop_renders() -> None:
    m = populated()
    m.head = await _head()
    in_loop = generate_latest(m.registry)  # every collector run in the loop, as before
    scraped = await m.render()
    assert scraped.count(b"\n") > 5000
    assert _ours(scraped) == _ours(in_loop)
    assert b"process_cpu_seconds_total" in scraped and b"python_gc_objects_collected_total" in scraped
    # Again, with a request in flight between two scrapes (the gauge keeps the maximum since the last).
    m.end(m.begin("GET"))
    m.head = await _head()
    assert _ours(await m.render()) == _ours(generate_latest(m.registry).replace(
        b'request_kind="readOnly"} 0.0', b'request_kind="readOnly"} 1.0'))


class _Steps(trio.abc.Instrument):
    """The main thread's CPU in each task step, by task name; steps in the loop while ``scraping``."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.scraping = False
        self.others_during = 0
        self._c0 = 0.0

    def before_task_step(self, task: Any) -> None:
        self._c0 = time.thread_time()

    def after_task_step(self, task: Any) -> None:
        cpu = time.thread_time() - self._c0
        self.cpu[task.name] = max(self.cpu.get(task.name, 0.0), cpu)
        if self.scraping and task.name != "scrape":
            self.others_during += 1


async def test_the_loop_runs_other_tasks_while_a_scrape_renders() -> None:
    m = populated()
    m.head = await _head()
    c0 = time.thread_time()
    generate_latest(m.registry)
    in_loop_cpu = time.thread_time() - c0
    steps = _Steps()
    ticks = 0

    async def scrape() -> None:
        steps.scraping = True
        try:
            await m.render()
        finally:
            steps.scraping = False

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.sleep(0.001)

    trio.lowlevel.add_instrument(steps)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker, name="ticker")
            await trio.testing.wait_all_tasks_blocked()
            async with trio.open_nursery() as inner:
                inner.start_soon(scrape, name="scrape")
            nursery.cancel_scope.cancel()
    finally:
        trio.lowlevel.remove_instrument(steps)
    # The scrape's longest step in the loop (copying the counters) is a small part of rendering it there.
    assert steps.cpu["scrape"] < in_loop_cpu / 4, (steps.cpu["scrape"], in_loop_cpu)
    assert steps.others_during >= 3, steps.others_during
