"""bus/_reader.py: a range read's pull accounting with several pulls outstanding. A status ends one pull
(408/404: the oldest, expired; 409 Exceeded MaxWaiting: the one just issued, refused), never all of
them: the reader keeps at most ``in_flight`` pulls at the server (below the consumer's ``max_waiting``)
and, refused, asks again only once one of its pulls ended. Driven against a model of JetStream's pull
queue (FIFO, ``max_waiting``) on a real asyncio loop; no NATS."""

from __future__ import annotations

import asyncio
import collections
import json
from typing import Any

from bus._reader import LogReader


class _Server:
    """JetStream's side of one pull consumer: waiting pulls served in order, at most ``max_waiting``
    (one more is refused: 409 Exceeded MaxWaiting, in order with the messages)."""

    def __init__(self, max_waiting: int, until: int) -> None:
        self.max_waiting, self.until = max_waiting, until
        self.waiting: collections.deque[int] = collections.deque()  # each pull's messages still due
        self.seq = self.cseq = 0
        self.peak = self.refused = self.pulls = 0
        self.reader: LogReader | None = None

    async def publish(self, subject: str, body: bytes, reply: str = "") -> None:
        assert subject.startswith("$JS.API.CONSUMER.MSG.NEXT.")
        self.pulls += 1
        if len(self.waiting) >= self.max_waiting:
            self.refused += 1
            asyncio.get_running_loop().call_soon(self._status, "409", "Exceeded MaxWaiting")
            return
        self.waiting.append(json.loads(body)["batch"])
        self.peak = max(self.peak, len(self.waiting))

    def _status(self, status: str, desc: str) -> None:
        assert self.reader is not None  # (as nats-py's parser cuts a status message: headers, no data)
        self.reader._a_on_raw(b"i", b"", b"", f"NATS/1.0 {status} {desc}\r\n\r\n".encode())

    def deliver(self, k: int) -> int:
        """Up to ``k`` messages to the oldest waiting pulls; how many were sent."""
        assert self.reader is not None
        sent = 0
        while sent < k and self.waiting and self.seq < self.until + 5:
            self.seq += 1
            self.cseq += 1
            self.waiting[0] -= 1
            if not self.waiting[0]:
                self.waiting.popleft()
            pending = self.until + 5 - self.seq  # (the stream goes on past the range)
            self.reader._a_keep(f"s.{self.seq}", f"$JS.ACK.S.c.1.{self.seq}.{self.cseq}.0.{pending}", b"x", None)
            sent += 1
        return sent

    def expire_oldest(self) -> None:
        self.waiting.popleft()
        self._status("408", "Request Timeout")


class _Bridge:
    def __init__(self, server: _Server, loop: asyncio.AbstractEventLoop) -> None:
        self.nc = server
        self.loop = loop
        self.trio_token = self

    def run_sync_soon(self, fn: Any) -> None:  # the trio side: not running here
        pass


async def _reader(server: _Server, *, batch: int, in_flight: int) -> LogReader:
    r = LogReader(_Bridge(server, asyncio.get_running_loop()), "S", "s.>", 1,  # type: ignore[arg-type]
                  batch=batch, until=server.until, in_flight=in_flight)
    server.reader = r
    r._consumer, r._inbox = "c", "i"
    await r._a_pull()
    await _settle()
    return r


async def _settle() -> None:
    for _ in range(10):  # the reader's scheduled pulls and statuses
        await asyncio.sleep(0)


def test_an_expired_pull_ends_only_itself() -> None:
    async def main() -> None:
        server = _Server(max_waiting=4, until=2000)
        r = await _reader(server, batch=100, in_flight=3)
        assert len(server.waiting) == 3 and r._outstanding == 300
        for step in range(12):
            server.deliver(150)
            await _settle()
            if step % 3 == 1 and len(server.waiting) > 1:
                server.expire_oldest()  # a pull part-received, or none of it
                await _settle()
                assert r._outstanding == sum(server.waiting), (r._outstanding, list(server.waiting))
            assert len(server.waiting) <= 3 and server.refused == 0, (step, list(server.waiting))
        while not r._done:
            assert server.deliver(41), "the read stalled"
            await _settle()
        assert server.refused == 0 and server.peak == 3
        assert sorted(r._kept) == sorted(f"s.{i}" for i in range(1, 2001))
        assert server.seq == 2000 and not server.waiting  # asked for exactly the range: nothing past it
    asyncio.run(main())


def test_a_refused_pull_waits_for_one_of_ours_to_end() -> None:
    """A server that takes fewer waiting pulls than the reader keeps (another client's, a stale one):
    one refusal, then a new pull only as one of ours ends, and no more pulls than the server took."""
    async def main() -> None:
        server = _Server(max_waiting=2, until=3000)
        r = await _reader(server, batch=100, in_flight=3)
        assert server.refused == 1 and len(server.waiting) == 2
        assert r._outstanding == 200
        while not r._done:
            assert server.deliver(30), "the read stalled"
            await _settle()
            assert r._outstanding == sum(server.waiting) or r._done
        assert server.refused == 1  # the reader keeps to the two pulls the server took from then on
        assert sorted(r._kept) == sorted(f"s.{i}" for i in range(1, 3001))
    asyncio.run(main())


def test_a_leadership_change_ends_every_pull() -> None:
    """The consumer's new leader sends one 409 Leadership Change per reply subject (the reader's pulls
    share one): every pull is gone, and the reader asks again, up to its pulls, and reads on."""
    async def main() -> None:
        server = _Server(max_waiting=4, until=1500)
        r = await _reader(server, batch=100, in_flight=3)
        server.deliver(120)
        await _settle()
        assert len(server.waiting) == 3
        server.waiting.clear()
        server._status("409", "Leadership Change")
        await _settle()
        assert len(server.waiting) == 3 and r._outstanding == sum(server.waiting) == 300
        while not r._done:
            assert server.deliver(50), "the read stalled"
            await _settle()
        assert server.refused == 0 and sorted(r._kept) == sorted(f"s.{i}" for i in range(1, 1501))
    asyncio.run(main())
