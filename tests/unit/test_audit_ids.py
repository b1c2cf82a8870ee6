"""Audit IDs and audit timestamps, as every request takes them: ``new_audit_id`` is a random
version-4 UUID string like ``str(uuid.uuid4())``; ``now_micro`` is ``datetime.now(UTC)`` formatted
with microseconds, like the ``strftime`` it replaces."""

from __future__ import annotations

import datetime
import os
import re
import time
import uuid

import pytest

from projections import _audit as audit
from projections import new_audit_id, now_micro

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def test_audit_ids_are_random_version_4_uuids() -> None:
    ids = [new_audit_id() for _ in range(3000)]  # more than one block of random bytes
    assert len(set(ids)) == len(ids)
    for i in ids:
        assert _UUID.fullmatch(i), i
        u = uuid.UUID(i)
        assert (u.version, u.variant, str(u)) == (4, uuid.RFC_4122, i)
    # Every hex digit outside the fixed version and variant bits varies across the IDs.
    for pos in (0, 9, 15, 20, 35):
        assert len({i[pos] for i in ids}) > 8, pos
    assert {i[19] for i in ids} == set("89ab")


def test_a_forked_child_does_not_repeat_its_parents_audit_ids() -> None:
    new_audit_id()  # the parent holds a block of random bytes
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(w, ",".join(new_audit_id() for _ in range(5)).encode())
        os._exit(0)
    os.close(w)
    child = os.read(r, 4096).decode().split(",")
    os.close(r)
    os.waitpid(pid, 0)
    parent = [new_audit_id() for _ in range(5)]
    assert len(child) == 5 and not set(child) & set(parent)


def test_now_micro_is_datetime_now_formatted() -> None:
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    for _ in range(2000):
        before = datetime.datetime.now(datetime.UTC).strftime(fmt)
        got = now_micro()
        after = datetime.datetime.now(datetime.UTC).strftime(fmt)
        assert before <= got <= after, (before, got, after)
        assert datetime.datetime.strptime(got, fmt).strftime(fmt) == got


def test_now_micro_at_second_boundaries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Across second (and day, year) boundaries the cached part is formatted again."""
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    for ns in (1_798_761_599_999_999_999, 1_798_761_600_000_000_000, 1_798_761_600_000_000_999,
               1_798_761_600_000_001_000, 1_798_761_599_000_000_000, 86_399_999_999_000):
        monkeypatch.setattr(time, "time_ns", lambda ns=ns: ns)
        want = datetime.datetime.fromtimestamp(ns // 1_000_000_000, datetime.UTC).replace(
            microsecond=ns // 1000 % 1_000_000).strftime(fmt)
        assert now_micro() == want, ns
    assert audit._CLOCK.second == 86_399
