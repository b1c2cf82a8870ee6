"""A write's allocation transaction: what ``abort`` releases depends on whether the object's own
append may have been applied (then the repair pass decides, never a blind release)."""

from __future__ import annotations

from typing import Any

import trio

from actors._allocation import Txn
from actors.messages import Request
from bus import BusDisconnected, BusTimeout, Key, WrongLastSequence
from kinds import AlreadyExists


class FakeOwner:
    def __init__(self) -> None:
        self.released: list[str] = []

    async def release(self, req: Request, key: Key, ns: str, name: str, *, any_parent: bool = False) -> None:
        self.released.append(key.name)


def txn() -> tuple[Txn, FakeOwner]:
    owner = FakeOwner()
    t = Txn(owner, Request(verb="create"))  # type: ignore[arg-type]
    t.claimed = [Key("t", "networking.k8s.io", "ipaddresses", "", "10.96.0.5")]
    t.to_release = [(Key("t", "networking.k8s.io", "ipaddresses", "", "10.96.0.4"), "ns", "svc")]
    return t, owner


async def test_definite_failures_release_the_claims() -> None:
    for err in (WrongLastSequence(0, 5), AlreadyExists("x"), ValueError("bad"), None):
        t, owner = txn()
        await t.abort(err)
        assert owner.released == ["10.96.0.5"], err


async def test_ambiguous_failures_leave_it_to_repair() -> None:
    errs: list[Any] = [BusTimeout("t"), BusDisconnected("d"), trio.TooSlowError(),
                       BaseExceptionGroup("g", [BusTimeout("t")])]
    for err in errs:
        t, owner = txn()
        await t.abort(err)
        assert owner.released == [], err


async def test_commit_releases_what_the_write_gave_up() -> None:
    t, owner = txn()
    await t.commit()
    assert owner.released == ["10.96.0.4"]
