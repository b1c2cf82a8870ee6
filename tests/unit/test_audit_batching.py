"""The audit stream's batches (gateway/_audit.py): which queued records share a message, the one
writer appending what queued while its last append was in flight, and the webhook forwarder reading
a batch's records (its position past a message only with its last record); the policy's decisions remembered."""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from bus import BusError, BusTimeout, BusUnavailable, JetStreamError, LogMessage, MsgIdCollision, NoResponders
from gateway import _audit as audit_mod
from gateway._audit import SENT_MARK_ID, AuditSink, _messages
from gateway._audit_webhook import SENT_SUFFIX, AuditForwarder, WebhookOptions
from projections import (
    DEFAULT_POLICY,
    Attributes,
    decode_records,
    encode_records,
    level_and_stages,
    parse_policy,
)


def _rec(i: int) -> dict[str, Any]:
    return {"kind": "Event", "auditID": f"id{i}", "stage": "ResponseComplete"}


def _enc(i: int) -> bytes:
    return msgspec.json.encode(_rec(i))


def test_records_of_a_subject_share_a_message_in_order_marks_alone() -> None:
    a, b = "jkaudit.a", "jkaudit.b"
    items = [(a, _enc(1), "id1:ResponseComplete", False), (b, _enc(2), "id2:ResponseComplete", False),
             (a, _enc(3), "id3:ResponseComplete", False), ("jkaudit._sys.webhook-sent", b'{"seqs":[4]}',
                                                           "id9" + SENT_MARK_ID, False),
             (a, _enc(4), "id4:ResponseComplete", True), (a, _enc(5), "id5:ResponseComplete", False)]
    got = _messages(items)
    assert [[(s, decode_records(p) if s != "jkaudit._sys.webhook-sent" else p, m, n) for s, p, m, n in lane]
            for lane in got] == [
        [("jkaudit._sys.webhook-sent", b'{"seqs":[4]}', "id9" + SENT_MARK_ID, 1)],
        [(a, [_rec(1), _rec(3)], "id1:ResponseComplete+2", 2),  # b's record between: still one run of a's
         (a, [_rec(4)], "id4:ResponseComplete" + SENT_SUFFIX, 1),
         (a, [_rec(5)], "id5:ResponseComplete", 1)],
        [(b, [_rec(2)], "id2:ResponseComplete", 1)],
    ]
    assert got[2][0][1] == _enc(2)  # one record: the message is the record itself (as before batches)
    assert decode_records(encode_records([_enc(1)])) == [_rec(1)]


class _Log:
    """Appends held until released, one at a time; the second one fails at once (it is tried again)."""

    prefix = "jkaudit"

    def __init__(self) -> None:
        self.appended: list[tuple[str, list[dict[str, Any]], str]] = []
        self.release = trio.Event()
        self.started = trio.Event()

    async def append(self, subject: str, payload: bytes, *, msg_id: str, expected_seq: None, deadline_s: float) -> int:
        self.started.set()
        await self.release.wait()
        self.appended.append((subject, decode_records(payload), msg_id))
        if len(self.appended) == 2:
            raise BusTimeout("no ack")
        return len(self.appended)


async def _until(done: Callable[[], bool], within_s: float) -> None:
    """Wait (on the test's mock clock: virtual time, nothing waits for real) until ``done()``: the
    sink's counters have no event to wait on."""
    with trio.fail_after(within_s):
        while not done():
            await trio.sleep(0.01)


async def test_the_writer_appends_what_queued_meanwhile_in_one_message_per_tenant(
        autojump_clock: trio.testing.MockClock) -> None:
    log = _Log()
    sink = AuditSink(log)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.run)
        sink.submit(_rec(0), "t1")
        await log.started.wait()  # the first append is in flight: the next records queue
        for i in range(1, 6):
            sink.submit(_rec(i), "t1" if i != 3 else "t2")
        log.release.set()
        await _until(lambda: sink.written == 6, 1)
        nursery.cancel_scope.cancel()
    assert log.appended[0] == ("jkaudit.t1", [_rec(0)], "id0:ResponseComplete")
    batch = {("jkaudit.t1", "id1:ResponseComplete+4"): [_rec(1), _rec(2), _rec(4), _rec(5)],
             ("jkaudit.t2", "id3:ResponseComplete"): [_rec(3)]}
    # The failed one (the second append) tried again with its Msg-Id, and stored.
    assert len(log.appended) == 4 and log.appended[3] == log.appended[1]
    assert {(s, m): r for s, r, m in log.appended[1:]} == batch
    assert sink.dropped["failed"] == 0 and sink.written == 6  # counted by record


class _OrderLog:
    """Appends that take a few scheduler turns each, noting how many are in flight per subject."""

    prefix = "jkaudit"

    def __init__(self) -> None:
        self.appended: list[tuple[str, list[dict[str, Any]], str]] = []
        self.in_flight: dict[str, int] = {}
        self.most: dict[str, int] = {}
        self.most_at_once = 0
        self.release = trio.Event()

    async def append(self, subject: str, payload: bytes, *, msg_id: str, expected_seq: None, deadline_s: float) -> int:
        await self.release.wait()
        self.in_flight[subject] = self.in_flight.get(subject, 0) + 1
        self.most[subject] = max(self.most.get(subject, 0), self.in_flight[subject])
        self.most_at_once = max(self.most_at_once, sum(self.in_flight.values()))
        for _ in range(3):
            await trio.lowlevel.checkpoint()
        self.in_flight[subject] -= 1
        self.appended.append((subject, decode_records(payload), msg_id))
        return len(self.appended)


async def test_a_tenants_sent_and_unsent_records_are_stored_in_the_order_recorded() -> None:
    """Blocking webhook modes: a record is ``sent`` or not (its webhook send failed); one tenant's
    batch of both is several messages, appended one after another, its records in their order
    (review s7, finding 6); another tenant's are appended meanwhile."""
    log = _OrderLog()
    sink = AuditSink(log)  # type: ignore[arg-type]
    sent = [False, True, False, False, True, True, False, True]
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.run)
        for i, s in enumerate(sent):
            sink.submit(_rec(i), "t1", sent=s)
            sink.submit(_rec(100 + i), "t2")
        log.release.set()
        with trio.fail_after(5):
            while sink.written < 2 * len(sent):
                await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    t1 = [(records, msg_id) for subject, records, msg_id in log.appended if subject == "jkaudit.t1"]
    assert [r for records, _ in t1 for r in records] == [_rec(i) for i in range(len(sent))]
    assert [m.endswith(SENT_SUFFIX) for _, m in t1] == [False, True, False, True, False, True]
    assert [r for s, records, _ in log.appended if s == "jkaudit.t2" for r in records] == \
        [_rec(100 + i) for i in range(len(sent))]
    assert log.most == {"jkaudit.t1": 1, "jkaudit.t2": 1}  # one tenant's messages: one at a time
    assert log.most_at_once == 2  # two tenants': concurrently


class _StalledLog:
    """A stream that does not acknowledge: an append waits out its deadline, then raises as
    ``Log.append`` does; once ``healed``, appends succeed at once."""

    prefix = "jkaudit"

    def __init__(self) -> None:
        self.tried: list[tuple[str, float]] = []
        self.appended: list[list[dict[str, Any]]] = []
        self.healed = False

    async def append(self, subject: str, payload: bytes, *, msg_id: str, expected_seq: None, deadline_s: float) -> int:
        self.tried.append((subject, deadline_s))
        if not self.healed:
            await trio.sleep(deadline_s)
            raise BusTimeout("not acknowledged")
        self.appended.append(decode_records(payload))
        return len(self.appended)


SENT = [False, True, False, True, False]  # t1's five records in one lane: sent (blocking webhook) or not


def _submit_lanes(sink: AuditSink) -> float:
    """t1's five records (``SENT``) and one of t2's: two lanes. Returns when (mock clock)."""
    for i, s in enumerate(SENT):
        sink.submit(_rec(i), "t1", sent=s)
    sink.submit(_rec(100), "t2")
    return trio.current_time()


async def _lanes_failed(sink: AuditSink) -> float:
    """Submit both lanes (``_submit_lanes``), wait until every record is counted as failed; the
    time it took (mock clock)."""
    start = _submit_lanes(sink)
    await _until(lambda: sink.dropped["failed"] == len(SENT) + 1, 4 * audit_mod.APPEND_DEADLINE_S)
    return trio.current_time() - start


async def test_a_stalled_stream_holds_the_writer_one_deadline_per_batch(autojump_clock: trio.testing.MockClock) -> None:
    """Review s7b finding 3: a lane of several messages (a tenant's sent and unsent records) shares
    one append deadline, and after its first failure the rest are counted as failed, not appended
    (nothing after a gap): a stalled stream holds the writer ``APPEND_DEADLINE_S`` per batch, not
    that once per message. Every record is either written or counted."""
    log = _StalledLog()
    sink = AuditSink(log)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.run)
        took = await _lanes_failed(sink)
        assert took <= audit_mod.APPEND_DEADLINE_S + 0.1  # before: 5 x 10 s for t1's lane
        assert sorted(log.tried) == [("jkaudit.t1", audit_mod.APPEND_DEADLINE_S),
                                     ("jkaudit.t2", audit_mod.APPEND_DEADLINE_S)]  # one try per lane
        assert sink.written == 0
        log.healed = True  # the writer is free for the next batch
        for i in range(3):
            sink.submit(_rec(200 + i), "t1")
        await _until(lambda: sink.written == 3, 1)
        nursery.cancel_scope.cancel()
    assert log.appended == [[_rec(200), _rec(201), _rec(202)]]
    assert sink.dropped == {"read": 0, "denial": 0, "failed": len(SENT) + 1}


class _FlakyLog:
    """A stream that refuses every append at once (``BusUnavailable``: not connected, as
    ``Log.append`` raises it) until ``down_until`` on trio's clock; then appends succeed."""

    prefix = "jkaudit"

    def __init__(self, down_until: float, error: Callable[[], BusError] = lambda: BusUnavailable("not connected to NATS"),
                 ) -> None:
        self.down_until = down_until
        self.error = error
        self.tried: list[tuple[str, str, float]] = []  # (subject, Msg-Id, deadline_s) of each try
        self.refused: list[tuple[str, str, float]] = []  # (subject, Msg-Id, when) of each refused
        self.appended: list[tuple[str, list[dict[str, Any]], str]] = []

    async def append(self, subject: str, payload: bytes, *, msg_id: str, expected_seq: None, deadline_s: float) -> int:
        self.tried.append((subject, msg_id, deadline_s))
        await trio.lowlevel.checkpoint()
        if trio.current_time() < self.down_until:
            self.refused.append((subject, msg_id, trio.current_time()))
            raise self.error()
        self.appended.append((subject, decode_records(payload), msg_id))
        return len(self.appended)


async def test_a_fast_failure_is_tried_again_within_the_lanes_deadline(autojump_clock: trio.testing.MockClock) -> None:
    """Review s8a finding 7: an append that fails at once (the connection down for 3 s) is tried
    again, same Msg-Id, after pauses that double (0.05 s up to 1 s), while its lane's deadline has time:
    the whole batch is stored, each tenant's records in their order, nothing counted as failed
    (before: the first failure dropped the rest of the tenant's batch)."""
    log = _FlakyLog(down_until=trio.current_time() + 3.0)
    sink = AuditSink(log)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.run)
        start = _submit_lanes(sink)
        await _until(lambda: sink.written + sink.dropped["failed"] == len(SENT) + 1, 2 * audit_mod.APPEND_DEADLINE_S)
        took = trio.current_time() - start
        nursery.cancel_scope.cancel()
    assert sink.dropped["failed"] == 0 and sink.written == len(SENT) + 1
    assert [r for s, records, _ in log.appended if s == "jkaudit.t1" for r in records] == [_rec(i) for i in range(5)]
    assert [records for s, records, _ in log.appended if s == "jkaudit.t2"] == [[_rec(100)]]
    assert 3.0 <= took <= 3.0 + audit_mod.RETRY_PAUSE_MAX_S + 0.1
    # While down, only each lane's first message was tried (nothing after it before it is stored),
    # with its one Msg-Id, at 0, 0.05, 0.15, 0.35, 0.75, 1.55 (pauses doubling), 2.55 (1 s at most), and
    # each try within what the lane's deadline had left.
    first_ids = {"jkaudit.t1": "id0:ResponseComplete", "jkaudit.t2": "id100:ResponseComplete"}
    assert {(s, m) for s, m, _ in log.refused} == set(first_ids.items())
    for subject in first_ids:
        at = [round(t - start, 2) for s, _, t in log.refused if s == subject]
        assert at == [0.0, 0.05, 0.15, 0.35, 0.75, 1.55, 2.55]
        deadlines = [d for s, _, d in log.tried if s == subject]
        assert deadlines[0] == audit_mod.APPEND_DEADLINE_S and deadlines == sorted(deadlines, reverse=True)


async def test_what_a_lanes_deadline_leaves_is_counted_and_logged_once(autojump_clock: trio.testing.MockClock,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """A stream that refuses every append at once: the lane tries again until its deadline is spent
    (not spinning: pauses up to 1 s), then counts the batch's records as failed with one warning per
    lane; the writer is then free for the next batch."""
    log = _FlakyLog(down_until=float("inf"))
    sink = AuditSink(log)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.run)
        took = await _lanes_failed(sink)
        assert audit_mod.APPEND_DEADLINE_S - audit_mod.RETRY_PAUSE_MAX_S <= took <= audit_mod.APPEND_DEADLINE_S + 0.1
        assert {(s, m) for s, m, _ in log.tried} == {("jkaudit.t1", "id0:ResponseComplete"),
                                                   ("jkaudit.t2", "id100:ResponseComplete")}
        assert len(log.tried) <= 2 * 16  # ~14 tries a lane in 10 s, not a spin
        warnings = [r.getMessage() for r in caplog.records if r.name == "jetkube.audit"]
        assert sorted(warnings) == ["1 audit record(s) not written: not connected to NATS",
                                    "5 audit record(s) not written: not connected to NATS"]
        log.down_until = 0.0
        for i in range(3):
            sink.submit(_rec(200 + i), "t1")
        await _until(lambda: sink.written == 3, 1)
        nursery.cancel_scope.cancel()
    assert [r for _, records, _ in log.appended for r in records] == [_rec(200), _rec(201), _rec(202)]
    assert sink.dropped == {"read": 0, "denial": 0, "failed": len(SENT) + 1}


@pytest.mark.parametrize("error", [
    lambda: MsgIdCollision("id0:ResponseComplete", "jkaudit.t1", 7),
    lambda: JetStreamError(400, 10077, "maximum messages exceeded"),
    lambda: JetStreamError(404, 10059, "stream not found"),
])
async def test_a_permanent_error_gives_the_lane_up_at_once(autojump_clock: trio.testing.MockClock,
                                                          caplog: pytest.LogCaptureFixture,
                                                          error: Callable[[], BusError]) -> None:
    """Review s8b LOW 3: an error that would be the same on every try (a Msg-Id collision, a JetStream
    4xx answer) is not tried again for the lane's 10 s deadline: the lane's records are counted as
    failed and logged at once, one try each lane, and the writer is free for the next batch."""
    log = _FlakyLog(down_until=float("inf"), error=error)
    sink = AuditSink(log)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.run)
        assert await _lanes_failed(sink) < audit_mod.RETRY_PAUSE_S
        assert sorted((s, m) for s, m, _ in log.tried) == [("jkaudit.t1", "id0:ResponseComplete"),
                                                            ("jkaudit.t2", "id100:ResponseComplete")]
        warnings = sorted(r.getMessage() for r in caplog.records if r.name == "jetkube.audit")
        assert warnings == [f"1 audit record(s) not written: {error()}", f"5 audit record(s) not written: {error()}"]
        log.down_until = 0.0
        sink.submit(_rec(200), "t1")
        await _until(lambda: sink.written == 1, 1)
        nursery.cancel_scope.cancel()
    assert sink.dropped == {"read": 0, "denial": 0, "failed": 6}


@pytest.mark.parametrize("error", [
    lambda: NoResponders("no stream leader"),
    lambda: BusTimeout("not acknowledged"),
    lambda: JetStreamError(503, 10008, "JetStream system temporarily unavailable"),
])
async def test_a_transient_error_is_tried_again(autojump_clock: trio.testing.MockClock,
                                                error: Callable[[], BusError]) -> None:
    log = _FlakyLog(down_until=trio.current_time() + 1.0, error=error)
    sink = AuditSink(log)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.run)
        for i in range(3):
            sink.submit(_rec(i), "t1")
        await _until(lambda: sink.written == 3, 2 * audit_mod.APPEND_DEADLINE_S)
        nursery.cancel_scope.cancel()
    assert sink.dropped["failed"] == 0 and len(log.refused) > 3


class _Reader:
    def __init__(self, batches: list[list[LogMessage]]) -> None:
        self.batches, self.pending = batches, 0

    async def next_batch(self) -> list[LogMessage]:
        if not self.batches:
            await trio.sleep_forever()
        return self.batches.pop(0)

    async def aclose(self) -> None:
        pass


async def test_the_forwarder_sends_a_batchs_records_and_moves_past_it_with_the_last() -> None:
    msgs = [LogMessage(5, "jkaudit.default", _enc(1), "id1:ResponseComplete"),
            LogMessage(6, "jkaudit.default", encode_records([_enc(2), _enc(3), _enc(4)]), "id2:ResponseComplete+3"),
            LogMessage(7, "jkaudit.default", encode_records([_enc(5), _enc(6)]), "id5:ResponseComplete+2" + SENT_SUFFIX),
            LogMessage(8, "jkaudit.default", b"[1, 2]", "x+2")]
    reader = _Reader([msgs[:2], msgs[2:]])

    async def open_reader(subject: str, start: int) -> _Reader:
        return reader

    audit = SimpleNamespace(prefix="jkaudit", open_reader=open_reader)
    f = AuditForwarder(None, WebhookOptions(config_file="-", mode="batch"), SimpleNamespace(prefix="jk"),  # type: ignore[arg-type]
                       audit, None, DEFAULT_POLICY, None)  # type: ignore[arg-type]
    f._versions = dict  # type: ignore[method-assign]
    send, recv = trio.open_memory_channel[Any](100)
    got = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(f._follow, audit, "audit", 5, send)
        with trio.fail_after(5):
            while len(got) < 6:
                got.append(await recv.receive())
        nursery.cancel_scope.cancel()
    assert got == [("audit", 5, _rec(1)), ("audit", 5, _rec(2)), ("audit", 5, _rec(3)), ("audit", 6, _rec(4)),
                   ("audit", 7, None),  # the request paths sent them (blocking modes)
                   ("audit", 8, None)]  # not records: logged, skipped


_NAMED = parse_policy({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"], "rules": [
    {"level": "None", "users": ["system:kube-proxy"], "verbs": ["watch"]},
    {"level": "None", "nonResourceURLs": ["/healthz*", "/version"]},
    {"level": "Request", "resources": [{"group": "", "resources": ["configmaps"], "resourceNames": ["c1"]}],
     "omitStages": ["ResponseStarted"]},
    {"level": "RequestResponse", "namespaces": ["kube-system"], "verbs": ["get"]},
    {"level": "None", "userGroups": ["system:nodes"]},
    {"level": "Metadata"}]})


def test_the_policys_decisions_are_remembered_by_what_they_depend_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_mod, "DECISIONS_CACHED", 16)  # refilled many times below
    rng = random.Random(7)
    for policy in (DEFAULT_POLICY, _NAMED):
        sink = AuditSink(None, policy)
        for _ in range(3000):
            resource_request = rng.random() < 0.8
            a = Attributes(rng.choice(["alice", "system:kube-proxy", "bob"]),
                           rng.choice([(), ("system:nodes",), ("system:masters", "system:authenticated")]),
                           rng.choice(["get", "list", "watch", "create"]), resource_request,
                           rng.choice(["", "apps"]), rng.choice(["configmaps", "secrets", "pods"]),
                           rng.choice(["", "status"]), rng.choice(["", "default", "kube-system"]),
                           rng.choice(["", "c1", "c2"]), rng.choice(["/healthz", "/healthz/ready", "/version", "/x"]))
            assert sink.decide(a) == level_and_stages(policy, a), a
            assert len(sink._decided) <= 16
        sink.policy = DEFAULT_POLICY if policy is _NAMED else _NAMED  # another policy: decided afresh
        assert sink.decide(a) == level_and_stages(sink.policy, a)


def test_the_trail_is_ordered_by_time_whatever_the_stream_order() -> None:
    """gateway._audit.by_time: a batch appended after another gateway's record can hold older
    records; the query's answer is still oldest first (it was merged as if each stream were sorted)."""
    from gateway._audit import by_time

    writes = [("2026-11-30T10:00:00.000002Z", 5, {"n": "w2"}), ("2026-11-30T10:00:00.000001Z", 6, {"n": "w1"})]
    others = [("2026-11-30T10:00:00.000004Z", 1, {"n": "g2"}), ("2026-11-30T10:00:00.000000Z", 2, {"n": "g1a"}),
              ("2026-11-30T10:00:00.000003Z", 2, {"n": "g1b"})]
    assert [r["n"] for r in by_time(writes, others, limit=10)] == ["g1a", "w1", "w2", "g1b", "g2"]
    assert [r["n"] for r in by_time(writes, others, limit=2)] == ["g1a", "w1"]


class _StoredLog:
    """A stream of audit records stored out of time order (each at most ``late`` seconds after its
    time), read in batches of four; counts the messages read."""

    prefix = "jkaudit"

    def __init__(self, times: list[float], late: list[float]) -> None:
        base = datetime.datetime(2026, 11, 30, 10, tzinfo=datetime.UTC)
        order = sorted(range(len(times)), key=lambda i: times[i] + late[i])  # by when stored
        self.messages = [LogMessage(seq, "jkaudit.t1", msgspec.json.encode(
            {"auditID": f"id{i}", "stage": "ResponseComplete", "verb": "get",
             "stageTimestamp": (base + datetime.timedelta(seconds=times[i])).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}))
            for seq, i in enumerate(order, 1)]
        self.read = 0

    async def stream_state(self) -> dict[str, int]:
        return {"last_seq": len(self.messages)}

    async def open_reader(self, filter_subject: str, start: int) -> Any:
        log = self
        at = start - 1

        class Reader:
            buffered = 0

            @property
            def pending(self) -> int:
                return len(log.messages) - at

            async def next_batch(self) -> list[LogMessage]:
                nonlocal at
                batch = log.messages[at:at + 4]
                at += len(batch)
                log.read += len(batch)
                return batch

            async def aclose(self) -> None:
                pass

        return Reader()


async def test_the_querys_limit_takes_the_oldest_records_whatever_the_stream_order() -> None:
    """Review s7b finding 2: each stream is read past its first ``limit`` matches until no later
    stored record can be older (records are stored at most ``LATE_S`` after their time), so a limited
    query answers the ``limit`` oldest, not the first ``limit`` stored; reading stops there."""
    from gateway._audit import Query, _collect

    rng = random.Random(7)
    n = 400
    times = [i * 0.5 for i in range(n)]  # a record every half second
    late = [rng.uniform(0, audit_mod.LATE_S / 2) if i % 3 else 0.0 for i in range(n)]
    log = _StoredLog(times, late)
    in_time_order = sorted(range(n), key=lambda i: times[i])
    for limit in (1, 7, 40, n, n + 5):
        log.read = 0
        got = await _collect(log, "jkaudit.t1", Query(limit=limit), trio.current_time() + 10,  # type: ignore[arg-type]
                             lambda m: [msgspec.json.decode(m.data)])
        assert [rec["auditID"] for _, _, rec in got] == [f"id{i}" for i in in_time_order[:limit]]
        if limit <= 40:  # read up to about LATE_S of records past the limit-th, not the whole stream
            assert log.read < limit + 2 * audit_mod.LATE_S / 0.5 + 8
    first_stored = [msgspec.json.decode(m.data)["auditID"] for m in log.messages[:7]]
    assert first_stored != [f"id{i}" for i in in_time_order[:7]]  # (what the cut in stream order answered)
