"""The bridge's header parser gives what nats-py's own gives, for JetStream's headers and odd ones."""

from __future__ import annotations

import nats.aio.client

from bus._bridge import _Client

SAMPLES = [
    (b"Nats-Stream: JK\r\nNats-Subject: jk.default._.configmaps.ns.a\r\nNats-Sequence: 42\r\n"
    b"Nats-Time-Stamp: 2026-01-01T00:00:00.123Z\r\nNats-Num-Pending: 3\r\nNats-Last-Sequence: 41\r\n"
    b"Nats-Msg-Id: abc\r\nNats-Expected-Last-Subject-Sequence: 7\r\n\r\n"),
    b"A:1\r\nB:\tx \r\nbad name: y\r\n: empty\r\nno colon\r\n\r\nC: caf\xc3\xa9\r\n\xff\xfe: z\r\nD: \xff\r\n",
    b"X\x1cY: 1\r\n Lead: 2\r\nTrail : 3\r\n",
    b"",
]


def test_same_headers_as_nats_py() -> None:
    for raw in SAMPLES:
        assert _Client._parse_header_lines(raw) == nats.aio.client.Client._parse_header_lines(raw), raw
