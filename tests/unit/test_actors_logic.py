"""Pure decisions of the actor side: tokens, authorization, strategies, managed fields, runtime."""

from __future__ import annotations

import base64

import pytest
import trio

from actors import (
    Actor,
    BadRequest,
    TokenAuthenticator,
    Unauthorized,
    UserInfo,
    parse_token_csv,
)
from actors._managed import manager_from_user_agent, record_update
from actors._runtime import ReplySlot
from kinds import Registry
from kinds._strategy import NamespaceStrategy, SecretStrategy

REG = Registry()


def test_token_csv_and_authn() -> None:
    tokens = parse_token_csv('t1,alice,u1,"a,b"\n# comment\n\nt2,bob,u2\n')
    assert tokens["t1"] == UserInfo(name="alice", uid="u1", groups=("a", "b"))
    auth = TokenAuthenticator(tokens)
    assert auth.authenticate("t2").groups == ("system:authenticated",)
    for bad in ("", "t3"):
        with pytest.raises(Unauthorized):
            auth.authenticate(bad)
    with pytest.raises(ValueError):
        parse_token_csv("onlytoken\n")


def test_secret_strategy() -> None:
    s = SecretStrategy()
    obj = {"metadata": {}, "data": {"a": base64.b64encode(b"1").decode()}, "stringData": {"b": "2"}}
    s.prepare_for_create(obj)
    assert obj["type"] == "Opaque" and "stringData" not in obj and base64.b64decode(obj["data"]["b"]) == b"2"
    with pytest.raises(BadRequest):
        s.prepare_for_create({"metadata": {}, "data": {"a": "%%"}})


def test_namespace_strategy_keeps_status_and_spec_on_update() -> None:
    s = NamespaceStrategy()
    new = {"metadata": {"name": "n"}, "status": {"phase": "Terminating"}, "spec": {"finalizers": []}}
    old = {"metadata": {"name": "n"}, "status": {"phase": "Active"}, "spec": {"finalizers": ["kubernetes"]}}
    s.prepare_for_update(new, old)
    assert new["status"] == {"phase": "Active"} and new["spec"] == {"finalizers": ["kubernetes"]}
    assert new["metadata"]["labels"] == {"kubernetes.io/metadata.name": "n"}


def test_managed_fields_record_changed_fields() -> None:
    assert manager_from_user_agent("kubectl/v1.31.0 (linux/amd64)") == "kubectl"
    old = {"kind": "ConfigMap", "metadata": {"name": "a", "uid": "u", "managedFields": [
        {"manager": "c", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1",
         "fieldsV1": {"f:data": {".": {}, "f:k": {}}}}]}, "data": {"k": "v"}}
    new = {"kind": "ConfigMap", "metadata": {"name": "a", "uid": "u", "labels": {"x": "1"}},
           "data": {"k": "v", "j": "w"}}
    record_update(old, new, manager="m", api_version="v1", now="t")
    (_, entry) = new["metadata"]["managedFields"]
    assert entry["fieldsV1"] == {"f:metadata": {"f:labels": {".": {}, "f:x": {}}}, "f:data": {"f:j": {}}}
    assert entry["manager"] == "m" and entry["operation"] == "Update"


async def test_actor_supervision_and_full_mailbox() -> None:
    async def handler(msg: int, reply: ReplySlot) -> None:
        if msg == 0:
            raise RuntimeError("boom")
        if msg == 1:
            raise BadRequest("nope")
        if msg == 2:
            await trio.sleep_forever()
        reply.set(msg * 10)

    a: Actor[int] = Actor("t", handler, mailbox_size=1, workers=1)
    async with trio.open_nursery() as n:
        await n.start(a.run)
        from actors import InternalError, TooManyRequests

        with pytest.raises(InternalError):
            await a.ask(0, timeout_s=5)
        with pytest.raises(BadRequest):
            await a.ask(1, timeout_s=5)
        assert await a.ask(3, timeout_s=5) == 30  # the worker survived both
        with trio.fail_after(5):
            async with trio.open_nursery() as inner:
                inner.start_soon(lambda: a.ask(2, timeout_s=60))  # occupies the only worker
                await trio.testing.wait_all_tasks_blocked()
                inner.start_soon(lambda: a.ask(4, timeout_s=60))  # fills the mailbox of one
                await trio.testing.wait_all_tasks_blocked()
                with pytest.raises(TooManyRequests):
                    await a.ask(5, timeout_s=5)
                inner.cancel_scope.cancel()
        n.cancel_scope.cancel()


async def test_ask_deadline(autojump_clock: trio.abc.Clock) -> None:
    from actors import Timeout

    async def never(msg: int, reply: ReplySlot) -> None:
        await trio.sleep_forever()

    a: Actor[int] = Actor("slow", never, mailbox_size=4, workers=1)
    async with trio.open_nursery() as n:
        await n.start(a.run)
        with pytest.raises(Timeout):
            await a.ask(1, timeout_s=30)
        n.cancel_scope.cancel()


async def test_hand_off_runs_in_the_senders_task_within_the_worker_bound() -> None:
    """A hand-off runs the message in the sender's task while the mailbox is empty and a slot is
    free; beyond ``workers`` messages at once it queues (in order) and a full mailbox answers
    429; a handler's crash is supervised as on the channel path."""
    from actors import InternalError, TooManyRequests

    release = trio.Event()
    running: list[int] = []
    tasks: dict[int, object] = {}

    async def handler(msg: int, reply: ReplySlot) -> None:
        tasks[msg] = trio.lowlevel.current_task()
        if msg < 0:
            raise RuntimeError("boom")
        running.append(msg)
        if msg < 100:
            await release.wait()
        reply.set(msg)

    a: Actor[int] = Actor("h", handler, mailbox_size=1, workers=1)
    async with trio.open_nursery() as n:
        await n.start(a.run)
        # Inline: the caller's own task ran it.
        assert await a.ask(100, timeout_s=5, inline=True) == 100
        assert tasks[100] is trio.lowlevel.current_task()
        slot = ReplySlot()
        await a.hand_off(-1, slot)  # supervised in the sender's task
        with pytest.raises(InternalError):
            await slot.wait()
        replies = [ReplySlot() for _ in range(4)]
        with trio.fail_after(5):
            async with trio.open_nursery() as senders:
                senders.start_soon(a.hand_off, 1, replies[0])  # takes the only slot
                await trio.testing.wait_all_tasks_blocked()
                await a.hand_off(2, replies[1])  # no slot: to the worker, which waits for one
                await trio.testing.wait_all_tasks_blocked()
                await a.hand_off(3, replies[2])  # queued in the mailbox
                await a.hand_off(4, replies[3])  # the mailbox of one is full: 429
                with pytest.raises(TooManyRequests):
                    await replies[3].wait()
                await trio.testing.wait_all_tasks_blocked()
                assert running == [100, 1]  # one at a time: the worker bound
                release.set()
            assert [await r.wait() for r in replies[:3]] == [1, 2, 3]
        assert running == [100, 1, 2, 3]
        assert tasks[1] is not tasks[2] and tasks[2] is tasks[3]  # the sender's task, then the worker
        n.cancel_scope.cancel()


async def test_hand_off_does_not_overtake_a_queued_message() -> None:
    order: list[int] = []
    gate = trio.Event()

    async def handler(msg: int, reply: ReplySlot) -> None:
        if msg == 0:
            await gate.wait()
        order.append(msg)
        reply.set(msg)

    a: Actor[int] = Actor("o", handler, mailbox_size=4, workers=1)
    async with trio.open_nursery() as n:
        await n.start(a.run)
        first, second, third = ReplySlot(), ReplySlot(), ReplySlot()
        a.forward(0, first)
        await trio.testing.wait_all_tasks_blocked()  # 0 holds the only slot
        a.forward(1, second)  # waits in the mailbox (then for the slot)
        n.start_soon(a.hand_off, 2, third)  # must not run before 1
        await trio.testing.wait_all_tasks_blocked()
        gate.set()
        assert [await r.wait() for r in (first, second, third)] == [0, 1, 2]
        assert order == [0, 1, 2]
        n.cancel_scope.cancel()


async def test_an_inline_ask_is_answered_without_a_scheduling_round_and_bounded_by_its_caller() -> None:
    """An inline ask whose handler completes in the caller's task returns its answer (or raises its
    error) without yielding to the scheduler; ``timeout_s=None`` leaves the bound to the caller's
    own cancel scope, which abandons the reply as the ask's own deadline does."""
    from actors import Forbidden, Timeout, ask_timeout

    gate = trio.Event()
    slots: list[ReplySlot] = []

    async def handler(msg: int, reply: ReplySlot) -> None:
        slots.append(reply)
        if msg < 0:
            raise Forbidden("no")
        if msg == 0:
            await gate.wait()
        reply.set(msg * 2)

    class Steps(trio.abc.Instrument):
        def __init__(self) -> None:
            self.n = 0

        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            self.n += 1

    a: Actor[int] = Actor("i", handler, workers=2)
    async with trio.open_nursery() as n:
        await n.start(a.run)
        await trio.testing.wait_all_tasks_blocked()
        steps = Steps()
        trio.lowlevel.add_instrument(steps)
        try:
            for ask_timeout_s in (5.0, None):
                assert await a.ask(21, timeout_s=ask_timeout_s, inline=True) == 42
                with pytest.raises(Forbidden):
                    await a.ask(-1, timeout_s=ask_timeout_s, inline=True)
        finally:
            trio.lowlevel.remove_instrument(steps)
        assert steps.n == 0  # no task step anywhere: nothing was rescheduled
        with trio.move_on_after(0.05) as caller:
            await a.ask(0, timeout_s=None, inline=True)
        assert caller.cancelled_caught and slots[-1].abandoned
        with pytest.raises(Timeout) as e:
            await a.ask(0, timeout_s=0.05, inline=True)
        assert str(e.value) == str(ask_timeout(0.05)) and slots[-1].abandoned
        gate.set()
        n.cancel_scope.cancel()
