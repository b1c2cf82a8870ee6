"""The resource actor's optimistic-concurrency loops against an in-memory log with CAS: a lost
race without a client precondition is decided again on the winner's state; with one it is the
client's 409; dryRun appends nothing; a create goes over a tombstone but never over a live
object (actors/_resource.py ``guaranteed_update``, actors/_cas.py ``append_new``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from actors import (
    AlreadyExists,
    Conflict,
    Create,
    Delete,
    Preconditions,
    Request,
    ResourceCore,
    Stored,
    Update,
)
from actors import UserInfo as User
from bus import Key, WrongLastSequence, decode_event, object_bytes
from kinds import Registry
from projections import Entry

CM = Registry().by_resource("", "configmaps")
USER = User(name="alice")


class _Store:
    applied = 0


class FakeProjection:
    """The state the log's appends produced, applied at once."""

    def __init__(self) -> None:
        self.entries: dict[Key, Entry] = {}
        self.store = _Store()

    def get(self, key: Key) -> Entry | None:
        return self.entries.get(key)

    async def consistent(self) -> int:
        return self.store.applied

    async def wait_for(self, seq: int, timeout_s: float | None = None) -> None:
        assert seq <= self.store.applied


class FakeLog:
    """JetStream's per-subject compare-and-swap, in memory; ``before_append`` runs before each
    append (another writer winning the race)."""

    def __init__(self, projection: FakeProjection) -> None:
        self.projection = projection
        self.last: dict[str, int] = {}
        self.keys: dict[str, Key] = {}
        self.appends = 0
        self.before_append: list[Callable[[], None]] = []

    def subject(self, key: Key) -> str:
        s = "/".join(key)
        self.keys[s] = key
        return s

    def commit(self, subject: str, etype: str, data: bytes) -> int:
        seq = self.projection.store.applied + 1
        self.projection.store.applied = self.last[subject] = seq
        key = self.keys[subject]
        if etype == "delete":
            self.projection.entries.pop(key, None)
        else:
            self.projection.entries[key] = Entry(seq, data, {}, {})
        return seq

    async def append(self, subject: str, data: bytes, *, msg_id: str, expected_seq: int) -> int:
        if self.before_append:
            self.before_append.pop(0)()
        current = self.last.get(subject, 0)
        if current != expected_seq:
            raise WrongLastSequence(expected_seq, current)
        self.appends += 1
        event = decode_event(data)
        seq = self.projection.store.applied + 1
        return self.commit(subject, event.type, object_bytes(event, seq))

    def other_writer(self, key: Key, data: dict[str, Any]) -> Callable[[], None]:
        """Another gateway's update of ``key`` (keeping its metadata), applied when called."""

        def write() -> None:
            current = msgspec.json.decode(self.projection.entries[key].data)
            current["data"] = {**(current.get("data") or {}), **data}
            self.commit(self.subject(key), "put", msgspec.json.encode(current))

        return write


def _core() -> tuple[ResourceCore, FakeLog, FakeProjection]:
    projection = FakeProjection()
    log = FakeLog(projection)
    return ResourceCore(log, projection), log, projection  # type: ignore[arg-type]


def _req(verb: str, name: str, body: Any = None, options: Any = None) -> Request:
    return Request(verb=verb, rdef=CM, namespace="default", name=name, body=body, user=USER, audit_id=f"a-{name}",
                   options=options)


def _cm(name: str, rv: str = "", **data: str) -> dict[str, Any]:
    meta = {"name": name, **({"resourceVersion": rv} if rv else {})}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def _key(name: str) -> Key:
    return Key("root", "", "configmaps", "default", name)


async def test_a_lost_race_is_decided_again_on_the_winners_state() -> None:
    core, log, projection = _core()
    for i in range(3):
        await core.write(_req("create", "", _cm(f"cm{i}", a="1"), Create()))
    for i in range(3):
        log.before_append.append(log.other_writer(_key(f"cm{i}"), {"other": str(i)}))
        appends = log.appends
        result = await core.write(_req("update", f"cm{i}", _cm(f"cm{i}", a="2"), Update()))
        assert isinstance(result, Stored) and not result.created
        assert not log.before_append and log.appends == appends + 1  # lost once, decided again, stored
        stored = msgspec.json.decode(result.object)
        assert stored["data"] == {"a": "2"}  # a PUT replaces: the winner's key is gone again
        assert stored["metadata"]["resourceVersion"] == str(projection.entries[_key(f"cm{i}")].seq)


async def test_a_lost_race_with_a_precondition_is_a_conflict() -> None:
    core, log, projection = _core()
    await core.write(_req("create", "", _cm("cm", a="1"), Create()))
    rv = str(projection.entries[_key("cm")].seq)
    log.before_append.append(log.other_writer(_key("cm"), {"other": "1"}))
    with pytest.raises(Conflict) as e:
        await core.write(_req("update", "cm", _cm("cm", rv, a="2"), Update()))
    assert e.value.message == ('Operation cannot be fulfilled on configmaps "cm": the object has been modified; '
                               'please apply your changes to the latest version and try again')
    assert msgspec.json.decode(projection.entries[_key("cm")].data)["data"] == {"a": "1", "other": "1"}
    stale = str(projection.entries[_key("cm")].seq - 1)
    with pytest.raises(Conflict):
        await core.write(_req("delete", "cm", None, Delete(preconditions=Preconditions(resource_version=stale))))
    assert _key("cm") in projection.entries


async def test_dry_run_appends_nothing() -> None:
    core, log, projection = _core()
    await core.write(_req("create", "", _cm("cm", a="1"), Create()))
    seq, appends = projection.entries[_key("cm")].seq, log.appends
    created = await core.write(_req("create", "", _cm("new", a="1"), Create(dry_run=True)))
    assert isinstance(created, Stored) and created.created
    updated = await core.write(_req("update", "cm", _cm("cm", a="2"), Update(dry_run=True)))
    assert isinstance(updated, Stored)
    assert msgspec.json.decode(updated.object)["metadata"]["resourceVersion"] == str(seq)  # decided on
    await core.write(_req("delete", "cm", None, Delete(dry_run=True)))
    assert log.appends == appends and _key("new") not in projection.entries
    assert projection.entries[_key("cm")].seq == seq


async def test_create_goes_over_a_tombstone_never_over_a_live_object() -> None:
    core, _, projection = _core()
    for i in range(3):
        await core.write(_req("create", "", _cm(f"cm{i}", a="1"), Create()))
        with pytest.raises(AlreadyExists):
            await core.write(_req("create", "", _cm(f"cm{i}", a="2"), Create()))
        await core.write(_req("delete", f"cm{i}", None, Delete()))
        assert _key(f"cm{i}") not in projection.entries
        again = await core.write(_req("create", "", _cm(f"cm{i}", a="3"), Create()))
        assert isinstance(again, Stored) and again.created
        assert msgspec.json.decode(again.object)["data"] == {"a": "3"}
