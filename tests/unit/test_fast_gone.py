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
    for accept in ("application/json", "application/json, */*", "*/*", "application/json;charset=utf-8",
                   "application/*;q=0.8"):
        assert _plain_json(accept), accept
    for accept in ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
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
