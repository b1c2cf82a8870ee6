"""The bridge builds PUB/HPUB commands itself (a header block once per append, one flusher wake-up
per batch): the bytes must be exactly those nats-py's own ``publish`` puts on the wire."""

from __future__ import annotations

import asyncio

import nats.aio.client
import nats.errors
import pytest

from bus._bridge import encode_append_headers, encode_headers, publish_command

HEADERS = [
    {"Nats-Msg-Id": "b5-0b6f0d8e-1c1e-4c4e-9d59-4d7f8d1e5f11", "Nats-Expected-Last-Subject-Sequence": "0"},
    {"Nats-Msg-Id": "m1"},
    {"Nats-Msg-Id": "  padded\t", " Spaced-Name ": "v", "": "skipped", "   ": "skipped too"},
    {"Nats-Msg-Id": "line\r\nbreak\rand\nmore", "X": ""},
    {"Nats-Msg-Id": "caf\u00e9 \u2603", "Nats-Expected-Last-Subject-Sequence": "18446744073709551615"},
    {},
]
PAYLOADS = [b"", b"x", b"{\"type\":\"put\"}\r\n with CRLF", bytes(range(256)) * 6]


def nats_py_command(subject: str, reply: str, payload: bytes, headers: dict[str, str] | None) -> bytes:
    """What nats-py 2.x queues for ``publish(subject, payload, reply=reply, headers=headers)``."""
    client = nats.aio.client.Client()
    sent: list[bytes] = []

    async def capture(cmd: bytes, priority: bool = False) -> None:
        sent.append(cmd)

    client._send_command = capture  # type: ignore[method-assign]
    client._flush_queue = None
    asyncio.run(client._send_publish(subject, reply, payload, len(payload), headers))
    assert len(sent) == 1
    return sent[0]


@pytest.mark.parametrize("headers", HEADERS)
@pytest.mark.parametrize("payload", PAYLOADS)
def test_same_commands_as_nats_py(headers: dict[str, str], payload: bytes) -> None:
    subject, reply = "jk.default._.configmaps.ns.a-b", "_INBOX.abc.17"
    ours = publish_command(subject, reply, payload, encode_headers(headers))
    assert ours == nats_py_command(subject, reply, payload, headers)
    assert encode_headers(headers) == encode_headers(dict(headers))  # the name cache changes nothing


@pytest.mark.parametrize("payload", PAYLOADS)
def test_without_headers_a_plain_pub(payload: bytes) -> None:
    assert publish_command("$JS.API.STREAM.INFO.JK", "_INBOX.x.1", payload, None) == \
        nats_py_command("$JS.API.STREAM.INFO.JK", "_INBOX.x.1", payload, None)


@pytest.mark.parametrize("name", ["Bad Name", "bad:name", "caf\u00e9", "a\r\nb"])
def test_invalid_header_names_refused_as_nats_py_does(name: str) -> None:
    with pytest.raises(nats.errors.BadHeaderError):
        encode_headers({name: "v"})
    with pytest.raises(nats.errors.BadHeaderError):
        nats_py_command("s", "r", b"", {name: "v"})


@pytest.mark.parametrize("msg_id", ["b5-0b6f0d8e-1c1e-4c4e-9d59-4d7f8d1e5f11", " padded\t", "line\r\nbreak",
                                    "caf\u00e9", "compaction-17-42", ""])
@pytest.mark.parametrize("expected_seq", [None, 0, 1, 18446744073709551615])
def test_append_headers_fast_path(msg_id: str, expected_seq: int | None) -> None:
    fields = {"Nats-Msg-Id": msg_id}
    if expected_seq is not None:
        fields["Nats-Expected-Last-Subject-Sequence"] = str(expected_seq)
    assert encode_append_headers(msg_id, expected_seq) == encode_headers(fields)
    assert publish_command("s", "r", b"p", encode_append_headers(msg_id, expected_seq)) == \
        nats_py_command("s", "r", b"p", fields)
