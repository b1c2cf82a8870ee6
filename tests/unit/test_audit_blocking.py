"""Pieces of the audit webhook's blocking modes and of the running projection's purge check:
kube's strict refusal body, the forwarder skipping what the request paths marked sent, a store
forgetting an object with or without a DELETED change, the compaction record's H."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import msgspec

from bus import Key, LogMessage
from gateway._audit import AuditNote, AuditRefused, audit_gone
from gateway._audit_webhook import MAX_MARKS, SENT_SUFFIX, AuditForwarder, WebhookOptions, _WriteTap
from projections import DEFAULT_POLICY, DELETED, Change, Store
from projections._projection import _record_horizon
from tests.unit.test_snapshot_format import PREFIX, make_log


def test_strict_refusal_is_kubes_internal_error_text() -> None:
    e = AuditRefused('/api/v1/namespaces/d/configmaps?fieldManager=kubectl-create&x="y"')
    assert e.body == ('Internal Server Error: "/api/v1/namespaces/d/configmaps?fieldManager=kubectl-create'
                      '&x=\\"y\\"": failed to store audit event')


def test_compaction_record_horizon() -> None:
    assert _record_horizon(b'{"seq": 50, "tombstones": 31}') == 31
    assert _record_horizon(b'{"seq": 50}') == 50  # an old record: H = C
    assert _record_horizon(b"junk") == 0 and _record_horizon(b"[1]") == 0


class _Watcher:
    def __init__(self) -> None:
        self.changes: list[Change] = []

    def offer(self, change: Change) -> None:
        self.changes.append(change)

    def bookmark(self, seq: int) -> None:
        pass


def test_forget_at_a_sequence_tells_watchers_and_keeps_the_ring() -> None:
    store = Store(PREFIX)
    msgs = make_log(400, seed=3)
    for m in msgs:
        store.apply(m)
    live = [(k, st) for k, st in store.resources.items() if st.count >= 2]
    (tenant, group, resource), st = live[0]
    (ns, name, entry), (ns2, name2, _) = list(st.iter_entries(None))[:2]
    w = _Watcher()
    st.watchers.add(w)
    key = Key(tenant, group, resource, ns, name)
    count = st.count
    assert store.forget(key, at=store.applied + 1) is entry
    assert store.get(key) is None and st.count == count - 1
    (ch,) = w.changes
    assert (ch.type, ch.seq, ch.namespace, ch.name) == (DELETED, store.applied + 1, ns, name)
    assert b'"resourceVersion":"%d"' % (store.applied + 1) in ch.object(DELETED)
    assert st.ring[-1] is ch
    # At a start (no sequence): dropped, nobody told.
    key2 = key._replace(namespace=ns2, name=name2)
    assert store.forget(key2) is not None and len(w.changes) == 1
    assert store.forget(key2) is None


def _forwarder() -> AuditForwarder:
    main, audit = SimpleNamespace(prefix="jk"), SimpleNamespace(prefix="jkaudit")
    return AuditForwarder(None, WebhookOptions(config_file="-", mode="blocking"), main, audit,  # type: ignore[arg-type]
                          None, DEFAULT_POLICY, None)  # type: ignore[arg-type]


def test_the_forwarder_skips_what_the_request_paths_sent() -> None:
    f = _forwarder()
    main, audit = f.main, f.audit_log
    writes = [m for m in make_log(60, seed=9) if m.subject.count(".") == 5][:3]
    f.stats.position["log"] = writes[0].seq - 1
    mark = LogMessage(1, "jkaudit._sys.webhook-sent", msgspec.json.encode({"seqs": [writes[0].seq, writes[1].seq, 0]}))
    assert f._record(audit, "audit", mark, {}) is None
    assert f._record(main, "log", writes[0], {}) is None  # sent on the request path
    assert f._record(main, "log", writes[1], {}) is None
    assert f._record(main, "log", writes[2], {}) is not None  # not marked: the forwarder sends it
    assert not f._sent  # each mark used once
    rec: dict[str, Any] = {"kind": "Event", "auditID": "a", "stage": "ResponseComplete"}
    body = msgspec.json.encode(rec)
    assert f._record(audit, "audit", LogMessage(2, "jkaudit.default", body, "a:ResponseComplete" + SENT_SUFFIX),
                     {}) is None
    assert f._record(audit, "audit", LogMessage(3, "jkaudit.default", body, "a:ResponseComplete"), {}) == rec
    # Marks are bounded: the oldest go (their records would be sent twice, never lost).
    f._note_sent(msgspec.json.encode({"seqs": list(range(10**6, 10**6 + MAX_MARKS + 5))}))
    assert len(f._sent) == MAX_MARKS and 10**6 not in f._sent


async def test_a_cancelled_write_leaves_no_expectation() -> None:
    """Review finding 11: a write whose client went away after it was handed to the actors keeps
    no expectation in the blocking modes' tap (nobody waits for its events any more; if it reached
    the log, the forwarder audits it from there); before, the tap kept collecting its messages until
    evicted (MAX_EXPECTED)."""
    tap = _WriteTap(None)  # type: ignore[arg-type]
    sink = SimpleNamespace(blocking=SimpleNamespace(drop=tap.drop))
    note = AuditNote("create")
    note.user = SimpleNamespace(name="alice")  # type: ignore[assignment]
    note.req = SimpleNamespace(rdef=SimpleNamespace(stored=True), dry_run=False)  # type: ignore[assignment]
    note.submitted = True  # (audited from the log if it got there: no record from here)
    tap.expect("a1")
    tap.expect("a2")
    await audit_gone(sink, note, "a1", "")  # type: ignore[arg-type]
    assert list(tap._wanted) == ["a2"]
