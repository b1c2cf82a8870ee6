"""Watch event classification (projections._watch.classify): kube cacher's convertToWatchEvent."""

from __future__ import annotations

import pytest

from projections import (
    ADDED,
    DELETED,
    MODIFIED,
    Change,
    Entry,
    WatchFilter,
    parse_field_selector,
    parse_label_selector,
)
from projections._watch import classify


def _e(seq: int, app: str | None, reason: str = "") -> Entry:
    return Entry(seq, b"{}", {"app": app} if app else {}, {"reason": reason} if reason else {})


def _f(labels: str = "", fields: str = "", namespace: str | None = None) -> WatchFilter:
    return WatchFilter(namespace, parse_label_selector(labels), parse_field_selector(fields))


A, B = _e(1, "a", "A"), _e(1, "b", "B")


@pytest.mark.parametrize("flt", [_f(labels="app=a"), _f(fields="reason=A"), _f("app=a", "reason=A")])
@pytest.mark.parametrize(("type_", "prev", "now", "want"), [
    (ADDED, None, A, ADDED),          # created matching
    (ADDED, None, B, None),           # created not matching
    (MODIFIED, B, A, ADDED),          # starts matching
    (MODIFIED, A, B, DELETED),        # stops matching
    (MODIFIED, A, A, MODIFIED),       # keeps matching
    (MODIFIED, B, B, None),           # never matches
    (DELETED, A, A, DELETED),         # deleted while matching
    (DELETED, B, B, None),            # deleted while not matching
    (DELETED, None, A, None),         # a tombstone of nothing
])
def test_selector_transitions(flt: WatchFilter, type_: str, prev: Entry | None, now: Entry, want: str | None) -> None:
    assert classify(flt, Change(2, type_, "ns", "x", now, prev)) == want


@pytest.mark.parametrize("type_", [ADDED, MODIFIED, DELETED])
def test_without_selectors_the_change_type_stands(type_: str) -> None:
    # The log path knows no previous state without selectors: none is needed.
    assert classify(_f(), Change(2, type_, "ns", "x", B, None)) == type_
    assert classify(_f(namespace="ns"), Change(2, type_, "ns", "x", B, None)) == type_
    assert classify(_f(namespace="other"), Change(2, type_, "ns", "x", B, None)) is None
    assert classify(_f("app=a", namespace="other"), Change(2, type_, "ns", "x", A, A)) is None


def test_an_object_leaving_the_selection_is_sent_as_it_was_with_the_new_version() -> None:
    at = len(b'{"metadata":{"resourceVersion":"')
    before = Entry(7, b'{"metadata":{"resourceVersion":"7","labels":{"app":"a"}}}', {"app": "a"}, {}, rv_at=at)
    after = Entry(12, b'{"metadata":{"resourceVersion":"12","labels":{"app":"b"}}}', {"app": "b"}, {}, rv_at=at)
    ch = Change(12, MODIFIED, "ns", "x", after, before)
    assert classify(_f("app=a"), ch) == DELETED
    assert ch.object(DELETED) == b'{"metadata":{"resourceVersion":"12","labels":{"app":"a"}}}'
    assert ch.line(DELETED) == b'{"type":"DELETED","object":%s}\n' % ch.object(DELETED)
    assert ch.object(MODIFIED) == after.data and ch.object(ADDED) == after.data
    tomb = Change(13, DELETED, "ns", "x", Entry(13, b"{}", {}, {}), after)
    assert tomb.object(DELETED) == b"{}"  # a deletion carries its final state already
    assert Entry(5, b"{}", {}, {}).data_at(9) == b"{}"  # offset unknown: unchanged
