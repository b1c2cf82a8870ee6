"""The bridge's protocol parser (bus/_bridge._Parser) hands every message of a raw subscription to its
handler, and everything else to nats-py, exactly as nats-py's own parser would, however the bytes
arrive cut into reads."""

from __future__ import annotations

import random
from typing import Any

import trio
from nats.protocol.parser import Parser

from bus._bridge import _Parser

RAW_SID = 7


def _hmsg(subject: bytes, sid: int, reply: bytes, headers: bytes, payload: bytes) -> bytes:
    hdr = b"NATS/1.0\r\n" + headers + b"\r\n"
    args = [subject, b"%d" % sid, *([reply] if reply else []), b"%d" % len(hdr), b"%d" % (len(hdr) + len(payload))]
    return b"HMSG " + b" ".join(args) + b"\r\n" + hdr + payload + b"\r\n"


def _stream(rng: random.Random) -> bytes:
    out = []
    for i in range(300):
        r = rng.random()
        payload = bytes(rng.randrange(256) for _ in range(rng.choice((0, 1, 5, 300))))
        if r < 0.6:  # a JetStream delivery to the raw subscription
            out.append(_hmsg(b"jk.default._.configmaps.ns.o%d" % i, RAW_SID,
                             b"$JS.ACK.JK.c.1.%d.%d.1700000000.0" % (i, i), b"Nats-Msg-Id: m%d\r\n" % i, payload))
        elif r < 0.65:  # a status message to it (a heartbeat)
            hdr = b"NATS/1.0 100 Idle Heartbeat\r\nA: b\r\n\r\n"
            out.append(b"HMSG _INBOX.x %d %d %d\r\n" % (RAW_SID, len(hdr), len(hdr)) + hdr + b"\r\n")
        elif r < 0.75:  # another subscription, with and without headers
            out.append(_hmsg(b"_INBOX.r.%d" % i, 3, b"", b"Nats-Sequence: %d\r\n" % i, payload))
        elif r < 0.85:
            out.append(b"MSG _INBOX.r.%d 3 %d\r\n" % (i, len(payload)) + payload + b"\r\n")
        elif r < 0.9:
            out.append(b"MSG x %d r.%d %d\r\n" % (RAW_SID, i, len(payload)) + payload + b"\r\n")
        elif r < 0.95:
            out.append(b"PING\r\n")
        else:
            out.append(b"+OK\r\n")
    return b"".join(out)


class _Nc:
    def __init__(self, raw: bool) -> None:
        self.seen: list[tuple[Any, ...]] = []
        self.raw = {RAW_SID: self._raw} if raw else {}

    def _raw(self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        self.seen.append(("msg", RAW_SID, bytes(subject), bytes(reply), data, headers))

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        # What _Client._process_msg does: raw subscriptions to their handler, others to nats-py.
        if sid in self.raw:
            self.raw[sid](subject, reply, data, headers)
        else:
            self.seen.append(("msg", sid, bytes(subject), bytes(reply), data, headers))

    async def _process_ping(self) -> None:
        self.seen.append(("ping",))

    async def _process_pong(self) -> None:
        self.seen.append(("pong",))


async def _feed(parser: Parser, data: bytes, rng: random.Random) -> None:
    i = 0
    while i < len(data):
        n = rng.choice((1, 2, 7, 64, 1000, 70000))
        await parser.parse(data[i:i + n])
        i += n


def test_same_messages_as_nats_py_whatever_the_reads() -> None:
    async def main() -> None:
        for seed in range(12):
            data = _stream(random.Random(seed))
            want = _Nc(raw=False)
            want.raw = {RAW_SID: want._raw}
            await Parser(want).parse(data)  # nats-py's parser, everything in one read
            got = _Nc(raw=True)
            await _feed(_Parser(got), data, random.Random(seed + 100))
            assert got.seen == want.seen
            assert len(want.seen) > 250

    trio.run(main)
