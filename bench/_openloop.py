"""An open-loop HTTP/1.1 flood: ``python -m bench._openloop --url U --path P --token T --rate R --seconds S``.

wrk (the only load generator here) is closed-loop: a connection sends its next request when the
last one is answered, so a slow server is offered only what it answers. This sends ``rate``
requests per second for ``seconds`` whatever happens to them (B12/B13's "10x capacity"): each goes
out on an idle keep-alive connection, or a new one while fewer than ``--max-conns`` are open; when
all are busy it is counted as not sent (the client's bound, never an unbounded backlog). Loopback
only (the URL must be 127.0.0.1 or localhost). A request unanswered after ``--timeout`` s is counted
and its connection closed. Prints one JSON line: attempted, sent, answered, codes, 429s without
Retry-After, not sent (all connections busy), errors, timeouts, the connections opened, and when
each of ``--max-conns`` connections had had its first answer (the flood established: until then
the server is also accepting connections and reading their first requests).

``--closed-conns N`` (instead of ``--rate``) runs closed loop instead: N connections, each sending
its next request when the last is answered, for ``seconds`` (B12/B13's "A at capacity" beside B,
in a process of its own so that B's client does not share an event loop with A's answers).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import trio

RECEIVE_BYTES = 262_144  # one read's most (a LIST of 500 ConfigMaps is ~150 KB)


class _Conn:
    __slots__ = ("answered", "buf", "stream")

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream, self.buf = stream, b""
        self.answered = False

    async def _more(self) -> None:
        chunk = await self.stream.receive_some(RECEIVE_BYTES)
        if not chunk:
            raise EOFError
        self.buf = self.buf + chunk if self.buf else chunk

    async def _skip(self, n: int) -> None:
        """Drop the next ``n`` bytes (a body), without gathering them: a LIST's answer is read in
        pieces and forgotten, so the generator's CPU does not grow with the body's size squared."""
        if len(self.buf) >= n:
            self.buf = self.buf[n:]
            return
        n -= len(self.buf)
        self.buf = b""
        while n > 0:
            chunk = await self.stream.receive_some(RECEIVE_BYTES)
            if not chunk:
                raise EOFError
            if len(chunk) > n:
                self.buf = chunk[n:]
            n -= len(chunk)

    async def response(self) -> tuple[int, dict[bytes, bytes]]:
        """One response (status, lower-cased headers); its body read and dropped."""
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            await self._more()
        head, self.buf = self.buf[:end], self.buf[end + 4:]
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(b":")
            headers[k.strip().lower()] = v.strip()
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            while True:
                while (eol := self.buf.find(b"\r\n")) < 0:
                    await self._more()
                size = int(self.buf[:eol].split(b";")[0], 16)
                self.buf = self.buf[eol + 2:]
                await self._skip(size + 2)
                if size == 0:
                    break
        else:
            await self._skip(int(headers.get(b"content-length", b"0")))
        return status, headers


def _target(url: str, path: str, token: str) -> tuple[str, int, bytes]:
    """(host, port, the request's bytes); loopback only."""
    u = urlsplit(url)
    host, port = u.hostname or "", u.port or 80
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("loopback only")
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
               "User-Agent: jetkube-bench-openloop\r\nAccept: application/json\r\n\r\n").encode()
    return host, port, request


async def closed(url: str, path: str, token: str, conns: int, seconds: float, *,
                 timeout_s: float = 20.0) -> dict[str, Any]:
    """Closed loop: ``conns`` connections, each sending its next request when the last is answered,
    until ``seconds`` have passed (a request in flight then is waited for, at most ``timeout_s``)."""
    host, port, request = _target(url, path, token)
    s: dict[str, Any] = {"sent": 0, "answered": 0, "codes": {}, "errors": 0, "timeouts": 0}
    t0 = trio.current_time()
    deadline = t0 + seconds

    async def loop() -> None:
        conn: _Conn | None = None
        try:
            while trio.current_time() < deadline:
                with trio.fail_after(timeout_s):
                    if conn is None:
                        conn = _Conn(await trio.open_tcp_stream(host, port))
                    await conn.stream.send_all(request)
                    s["sent"] += 1
                    status, headers = await conn.response()
                s["answered"] += 1
                s["codes"][status] = s["codes"].get(status, 0) + 1
                if headers.get(b"connection", b"").lower() == b"close":
                    await trio.aclose_forcefully(conn.stream)
                    conn = None
        except trio.TooSlowError:
            s["timeouts"] += 1
        except (OSError, EOFError, ValueError, IndexError, trio.BrokenResourceError):
            s["errors"] += 1
        finally:
            if conn is not None:
                await trio.aclose_forcefully(conn.stream)

    async with trio.open_nursery() as n:
        for _ in range(conns):
            n.start_soon(loop)
    s["seconds"] = round(trio.current_time() - t0, 3)
    return s


async def flood(url: str, path: str, token: str, rate: float, seconds: float, *, max_conns: int = 1000,
                timeout_s: float = 20.0) -> dict[str, Any]:
    host, port, request = _target(url, path, token)
    idle: list[_Conn] = []
    s: dict[str, Any] = {"attempted": 0, "sent": 0, "answered": 0, "codes": {}, "c429": 0, "c429_no_retry_after": 0,
                         "not_sent_all_busy": 0, "errors": 0, "timeouts": 0, "connections_opened": 0,
                         "connections_answered": 0, "all_connections_answered_s": None,
                         "all_connections_answered_at": None}
    open_conns = 0

    async def one(conn: _Conn | None) -> None:
        nonlocal open_conns
        try:
            with trio.fail_after(timeout_s):
                if conn is None:
                    conn = _Conn(await trio.open_tcp_stream(host, port))
                    s["connections_opened"] += 1
                await conn.stream.send_all(request)
                s["sent"] += 1
                status, headers = await conn.response()
        except trio.TooSlowError:
            s["timeouts"] += 1
        except (OSError, EOFError, ValueError, IndexError, trio.BrokenResourceError):
            s["errors"] += 1
        else:
            s["answered"] += 1
            if not conn.answered:  # the connection's first answer: the flood is established when all have one
                conn.answered = True
                s["connections_answered"] += 1
                if s["connections_answered"] == max_conns:
                    s["all_connections_answered_s"] = round(trio.current_time() - t0, 3)
                    s["all_connections_answered_at"] = time.time()
            s["codes"][status] = s["codes"].get(status, 0) + 1
            if status == 429:
                s["c429"] += 1
                s["c429_no_retry_after"] += b"retry-after" not in headers
            if headers.get(b"connection", b"").lower() != b"close":
                idle.append(conn)
                return
        if conn is not None:
            await trio.aclose_forcefully(conn.stream)
        open_conns -= 1

    total = math.floor(rate * seconds)
    t0 = trio.current_time()  # (read by one() too)
    async with trio.open_nursery() as n:
        k = 0
        while k < total:
            due = min(total, math.floor((trio.current_time() - t0) * rate) + 1)
            while k < due:
                k += 1
                s["attempted"] += 1
                if idle:
                    n.start_soon(one, idle.pop())
                elif open_conns < max_conns:
                    open_conns += 1
                    n.start_soon(one, None)
                else:
                    s["not_sent_all_busy"] += 1
            await trio.sleep(0.002)
        s["send_seconds"] = round(trio.current_time() - t0, 3)
    s["seconds"] = round(trio.current_time() - t0, 3)
    for c in idle:
        await trio.aclose_forcefully(c.stream)
    s["rate"] = rate
    return s


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="python -m bench._openloop", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--path", required=True)
    ap.add_argument("--token", required=True)
    how = ap.add_mutually_exclusive_group(required=True)
    how.add_argument("--rate", type=float, help="requests per second (open loop)")
    how.add_argument("--closed-conns", type=int, help="closed loop on this many connections instead")
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--max-conns", type=int, default=1000)
    ap.add_argument("--timeout", type=float, default=20.0)
    ns = ap.parse_args()
    if ns.closed_conns is not None:
        out = trio.run(lambda: closed(ns.url, ns.path, ns.token, ns.closed_conns, ns.seconds, timeout_s=ns.timeout))
    else:
        out = trio.run(lambda: flood(ns.url, ns.path, ns.token, ns.rate, ns.seconds, max_conns=ns.max_conns,
                                     timeout_s=ns.timeout))
    sys.stdout.write("OPENLOOP " + json.dumps(out) + "\n")
