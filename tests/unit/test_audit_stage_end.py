"""A request's last audit stage in a cancellation path (gateway/_audit.py): a watch's ResponseComplete
at the end of its stream and a gone client's ResponseComplete are sent to a blocking webhook shielded
and bounded by END_SEND_S, then queued for the audit stream; the cancellation is not swallowed.
Driven by trio's autojump clock (no real waiting)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing

from actors import UserInfo
from gateway._audit import END_SEND_S, AuditNote, AuditSink, audit_gone, audit_watch_body, audit_watch_end
from projections._audit import parse_policy


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


class _Hanging:
    """A blocking webhook that never answers (or answers at once: ``ok``)."""

    strict = False

    def __init__(self, ok: bool = False) -> None:
        self.ok = ok
        self.sent: list[list[dict[str, Any]]] = []

    async def send(self, items: list[dict[str, Any]]) -> bool:
        self.sent.append(items)
        if not self.ok:
            await trio.sleep_forever()
        return True


#: Everything at Metadata, every stage.
_ALL = parse_policy({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{"level": "Metadata"}]})


class _Sink(AuditSink):
    def __init__(self, blocking: _Hanging | None) -> None:
        super().__init__(None, _ALL)
        self.blocking = blocking  # type: ignore[assignment]
        self.queued: list[tuple[dict[str, Any], bool]] = []

    def submit(self, record: dict[str, Any], tenant: str, *, sent: bool = False) -> None:
        self.queued.append((record, sent))


def _note(verb: str = "watch") -> AuditNote:
    note = AuditNote(verb)
    note.user = UserInfo(name="alice", uid="u", groups=("system:masters",))
    note.received = "2026-11-30T08:00:00.000000Z"
    return note


async def test_a_watch_end_under_cancellation_is_sent_bounded_and_the_cancel_goes_on(autojump_clock: Any) -> None:
    wh = _Hanging()
    sink = _Sink(wh)
    note = _note()
    note.ending = {"auditID": "a1", "stage": "ResponseComplete", "responseStatus": {"metadata": {}, "code": 200}}
    t0 = trio.current_time()
    with trio.CancelScope() as scope:
        scope.cancel()
        await audit_watch_end(sink, note)
        await trio.lowlevel.checkpoint()
        raise AssertionError("the cancellation was swallowed")
    assert scope.cancelled_caught
    assert trio.current_time() - t0 == pytest.approx(END_SEND_S)  # shielded, then given up at the bound
    assert [r["stage"] for r, sent in sink.queued] == ["ResponseComplete"] and not sink.queued[0][1]
    assert len(wh.sent) == 1 and note.ending is None
    await audit_watch_end(sink, note)  # once only
    assert len(sink.queued) == 1


async def test_a_watch_body_records_its_end_once_however_it_ends(autojump_clock: Any) -> None:
    for how in ("end", "cancel"):
        wh = _Hanging(ok=True)
        sink = _Sink(wh)
        note = _note()
        note.ending = {"auditID": "a2", "stage": "ResponseComplete"}
        closed: list[bool] = []

        async def body(how: str, closed: list[bool]) -> AsyncIterator[bytes]:
            try:
                yield b"1\n"
                if how == "cancel":
                    await trio.sleep_forever()
            finally:
                closed.append(True)

        got = []
        with trio.move_on_after(5) as scope:
            gen = audit_watch_body(sink, note, body(how, closed))
            try:
                async for chunk in gen:
                    got.append(chunk)
            finally:
                with trio.CancelScope(shield=True):
                    await gen.aclose()  # type: ignore[attr-defined]
        assert got == [b"1\n"] and closed == [True]
        assert scope.cancelled_caught == (how == "cancel")
        assert [(r["stage"], sent) for r, sent in sink.queued] == [("ResponseComplete", True)]
        assert "stageTimestamp" in sink.queued[0][0]


async def test_a_gone_clients_request_gets_kubes_response_complete(autojump_clock: Any) -> None:
    for blocking in (None, _Hanging(ok=True)):
        sink = _Sink(blocking)
        get = _note("get")
        await audit_gone(sink, get, "g1", get.received, ("/api/v1/namespaces", "/api/v1/namespaces", "1.2.3.4", "ua"))
        watch = _note("watch")
        await audit_gone(sink, watch, "w1", watch.received, ("/api/v1/pods", "/api/v1/pods?watch=1", "1.2.3.4", "ua"))
        nobody = AuditNote("get")  # not authenticated yet: kube's audit filter never saw it
        await audit_gone(sink, nobody, "n1", "", ("/api", "/api", "", ""))
        assert [(r["auditID"], r["stage"]) for r, _ in sink.queued] == [
            ("g1", "ResponseComplete"), ("w1", "ResponseStarted"), ("w1", "ResponseComplete")]
        assert all(r["responseStatus"] == {"metadata": {}, "status": "Success", "message": "Connection closed early",
                                           "code": 200} for r, _ in sink.queued)
        assert all(sent == (blocking is not None) for _, sent in sink.queued)
