"""The fast path's look for a client that went away (gateway/_fast.py ``_gone``): hypercorn's
``http.disconnect`` queued for the request, found without waiting; the request's own body messages
before it are consumed, nothing else is taken for a disconnect."""

from __future__ import annotations

from typing import Any

import trio

from gateway._fast import _gone, _plain_json


async def test_a_queued_disconnect_is_seen_without_waiting() -> None:
    send, recv = trio.open_memory_channel[Any](10)
    assert not _gone(recv.receive)  # nothing queued
    await send.send({"type": "http.request", "body": b"", "more_body": False})
    assert not _gone(recv.receive)
    assert recv.statistics().current_buffer_used == 0  # (the request's own end: consumed)
    await send.send({"type": "http.request", "body": b"x", "more_body": True})
    await send.send({"type": "http.disconnect"})
    assert _gone(recv.receive)
    await send.aclose()
    assert not _gone(recv.receive)  # a closed channel: nothing more will come
    assert not _gone(lambda: None)  # a receive that is not a channel's: never taken for gone


def test_plain_json_accept_headers() -> None:
    for accept in ("application/json", "application/json, */*", "*/*", "application/json;charset=utf-8"):
        assert _plain_json(accept), accept
    # application/* is left to the app: kube's router refuses it on resource routes (406).
    for accept in ("application/*;q=0.8", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
                   "application/vnd.kubernetes.protobuf,application/json", "application/yaml",
                   "application/json; as=PartialObjectMetadataList; v=v1; g=meta.k8s.io", "text/html"):
        assert not _plain_json(accept), accept


def test_the_audit_webhooks_blocking_modes_are_left_to_the_app() -> None:
    """In ``blocking``/``blocking-strict`` the app sends RequestReceived and waits for it: no request
    is planned for the fast path, whatever it is."""
    from types import SimpleNamespace

    from gateway._fast import FastPath

    ctx = SimpleNamespace(audit=SimpleNamespace(blocking=object()))
    scope = {"type": "http", "method": "GET", "path": "/api/v1/namespaces/default/configmaps/x",
             "headers": [(b"authorization", b"Bearer t")], "query_string": b""}
    assert FastPath(ctx, None)._plan(scope) is None


async def test_a_queued_body_is_read_without_waiting_and_the_rest_is_waited_for() -> None:
    """``_read_body``: a body hypercorn already queued is taken at once (no checkpoint); a body
    whose end is not there yet is waited for, its queued part kept; a disconnect is the client
    gone; nothing in time is the body timeout."""
    import pytest
    import trio.testing

    from gateway._fast import _Gone, _read_body
    from gateway._status import BodyTimeout

    send, recv = trio.open_memory_channel[Any](10)
    await send.send({"type": "http.request", "body": b"ab", "more_body": True})
    await send.send({"type": "http.request", "body": b"c", "more_body": False})
    with trio.CancelScope() as cs:
        cs.cancel()  # any checkpoint would raise Cancelled
        assert await _read_body(recv.receive, 3, 5.0) == b"abc"
    await send.send({"type": "http.request", "body": b"abc"})
    assert await _read_body(recv.receive, 3, 5.0) == b"abc"

    async def rest() -> None:
        await trio.testing.wait_all_tasks_blocked()  # the reader waits for the rest
        await send.send({"type": "http.request", "body": b"cd", "more_body": False})

    await send.send({"type": "http.request", "body": b"ab", "more_body": True})
    async with trio.open_nursery() as n:
        n.start_soon(rest)
        assert await _read_body(recv.receive, 4, 5.0) == b"abcd"
    await send.send({"type": "http.request", "body": b"ab", "more_body": True})
    await send.send({"type": "http.disconnect"})
    with pytest.raises(_Gone):
        await _read_body(recv.receive, 4, 5.0)
    with pytest.raises(BodyTimeout):
        await _read_body(recv.receive, 4, 0.01)
