"""The Python load generator: a separate process, asyncio protocols, HTTP/1.1 keep-alive.

``python -m bench._loadgen SPEC.json OUT.json`` runs one spec and writes the result. It is the
fallback for wrk (B1, B2, B3, C1) and the client for what wrk cannot do: consistent-read probes
with per-path statistics (B7), single large LISTs (B4), paced writes that record their
acknowledgement times (B6), and watch streams (B6, B10).

Every loop is bounded by ``duration_s`` and ``max_requests`` (and a hard wall-clock cap). The
process reports its own CPU time over the measurement window, so the orchestrator can show the
load generator was not the bottleneck.

Spec (``kind`` "http"): targets [[host, port]...] (connections round-robin over them), token,
connections, duration_s, max_requests, rate (0: closed loop; else requests/s for the process),
target {collection, create, update} (the path and body templates of bench._util; ConfigMaps of
``body_bytes`` in ``ns`` when absent), op one of:
  create  POST collection, unique names ``prefix-<conn>-<n>`` (``embed_time`` puts the send time
          into the object's data, ``record_acks`` returns [rv, ack_time] for every 201)
  get     GET collection/<names_prefix><i % names_count> (+ ``query``)
  update  PUT collection/<name> with resourceVersion; each connection owns some of ``objects`` [[name, rv]...]
          and tracks each object's rv from the answers, so no two requests conflict
  paths   GET of ``paths`` [[label, path]...] in turn, statistics per label
  raw     the same ``method`` ``path`` ``body`` every time (the C1 no-op server)
Spec (``kind`` "watch"): targets, token, path, watchers, max_s, then either ``until_rv`` (stop
when every watcher has seen it) or a ``finish ACKFILE GRACE_S`` line on stdin (stop when every
watcher has seen every acknowledged write, or after the grace).
"""

from __future__ import annotations

import array
import asyncio
import functools
import json
import resource
import sys
import time
from typing import Any

from ._util import NAME, RV, TIME, Hist, cm_target, fill_body, split_body, write_result

RV_MARK = b'"resourceVersion":"'
now = time.monotonic


def _cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ---- plain request/response ------------------------------------------------------------------------

class Stats:
    def __init__(self) -> None:
        self.hist = Hist()
        self.ttfb = Hist()  # request sent -> response headers received
        self.codes: dict[int, int] = {}
        self.ok = 0
        self.bytes = 0


class HttpConn(asyncio.Protocol):
    def __init__(self, run: HttpRun, idx: int) -> None:
        self.run = run
        self.idx = idx
        self.t: asyncio.Transport | None = None
        self.buf = bytearray()
        self.hdr_end = -1
        self.need = -1
        self.chunked = False
        self.status = 0
        self.t_sent = 0.0
        self.label = ""
        self.ctx: Any = None
        self.busy = False
        self.closed = False
        self.n = 0

    def connection_made(self, transport: Any) -> None:
        self.t = transport  # the run starts sending once every connection is open

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.run.on_lost(self)

    def send(self, data: bytes, label: str, ctx: Any, due: float = 0.0) -> None:
        self.label, self.ctx = label, ctx
        self.busy = True
        t = now()
        # Paced (open-loop) requests count from when they were due: a request sent late because its
        # connection was still busy waited that long too (no coordinated omission).
        self.t_sent = min(t, due) if due else t
        assert self.t is not None
        self.t.write(data)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while True:
            if self.hdr_end < 0:
                e = buf.find(b"\r\n\r\n")
                if e < 0:
                    return
                self.hdr_end = e
                self.run.stat(self.label).ttfb.add(now() - self.t_sent)
                head = bytes(buf[:e]).lower()
                self.status = int(head[9:12])
                cl = head.find(b"\r\ncontent-length:")
                if cl >= 0:
                    end = head.find(b"\r\n", cl + 2)
                    self.need = e + 4 + int(head[cl + 17: end if end > 0 else len(head)].strip())
                    self.chunked = False
                else:
                    self.chunked = b"transfer-encoding: chunked" in head
                    self.need = -1
            if self.chunked:
                body = _dechunk(buf, self.hdr_end + 4)
                if body is None:
                    return
                payload, consumed = body
                del buf[:consumed]
            else:
                if len(buf) < self.need:
                    return
                payload = bytes(buf[self.hdr_end + 4: self.need])
                del buf[: self.need]
            self.hdr_end = -1
            self.busy = False
            self.run.on_response(self, self.status, payload)
            if not buf:
                return


def _dechunk(buf: bytearray, start: int) -> tuple[bytes, int] | None:
    pos = start
    out = bytearray()
    while True:
        j = buf.find(b"\r\n", pos)
        if j < 0:
            return None
        size = int(bytes(buf[pos:j]).split(b";")[0], 16)
        if size == 0:
            k = buf.find(b"\r\n\r\n", j)
            if k < 0 and not buf.startswith(b"\r\n", j + 2):
                return None
            return bytes(out), (j + 4 if buf.startswith(b"\r\n", j + 2) else k + 4)
        if len(buf) < j + 2 + size + 2:
            return None
        out += buf[j + 2: j + 2 + size]
        pos = j + 2 + size + 2


class HttpRun:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.loop = asyncio.get_event_loop()
        self.stats: dict[str, Stats] = {}
        self.duration = float(spec["duration_s"])
        self.max_requests = int(spec.get("max_requests", 10_000_000))
        self.rate = float(spec.get("rate", 0) or 0)
        self.issued = 0
        self.t0 = 0.0
        self.t_end = 0.0
        self.stopping = False
        self.done = asyncio.Event()
        self.conns: list[HttpConn] = []
        self.errors: dict[str, int] = {}
        self.acks: list[tuple[int, float]] = []
        self.late = 0
        # The generator's own loop lag (how late a 5 ms timer fires): a client that is late to read a
        # response adds that to the latency it records, so a tail is the server's only when this is small.
        self.lag = Hist()
        tok = spec["token"]
        self.hdr = f"Host: 127.0.0.1\r\nAuthorization: Bearer {tok}\r\nUser-Agent: jetkube-bench\r\n".encode()
        op = spec["op"]
        self.op = op
        ns = spec.get("ns", "default")
        self.embed_time = bool(spec.get("embed_time"))
        # What is written and read: a collection and body templates (bench._util); ConfigMaps by default.
        target = spec.get("target") or cm_target(ns, int(spec.get("body_bytes", 1024)), with_time=self.embed_time)
        self.base = target["collection"].encode()
        if op == "create":
            self.parts, self.slots = split_body(target["create"])
            if self.embed_time and TIME not in self.slots:
                raise ValueError("embed_time: the create template has no time marker")
            self.prefix = spec.get("prefix", "lg").encode()
        elif op in ("update", "apply"):
            # "apply": the update's body sent as a server-side apply (PATCH apply-patch+yaml; JSON is
            # YAML) by one field manager with force, so the two differ only in how they are written.
            self.parts, self.slots = split_body(target["update"])
            objs = spec["objects"]
            self.owned: list[list[list[Any]]] = [[] for _ in range(int(spec["connections"]))]
            for i, (name, rv) in enumerate(objs):
                self.owned[i % len(self.owned)].append([name.encode(), int(rv)])
        elif op == "get":
            self.names_prefix = spec["names_prefix"].encode()
            self.names_count = int(spec["names_count"])
            q = spec.get("query", "")
            self.query = (b"?" + q.encode()) if q else b""
            self.get_i = 0
        elif op == "paths":
            self.paths = [(lbl, p.encode()) for lbl, p in spec["paths"]]
        elif op == "raw":
            body = spec.get("body", "").encode()
            self.raw = (spec["method"].encode() + b" " + spec["path"].encode() + b" HTTP/1.1\r\n" + self.hdr +
                        (b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body) if body else b"") +
                        b"\r\n" + body)

    def stat(self, label: str) -> Stats:
        s = self.stats.get(label)
        if s is None:
            s = self.stats[label] = Stats()
        return s

    def build(self, c: HttpConn) -> tuple[bytes, str, Any]:
        op = self.op
        if op == "get":
            i = self.get_i % self.names_count
            self.get_i += 1
            path = self.base + b"/" + self.names_prefix + str(i).encode() + self.query
            return b"GET " + path + b" HTTP/1.1\r\n" + self.hdr + b"\r\n", "get", None
        if op == "raw":
            return self.raw, "raw", None
        if op == "paths":
            lbl, path = self.paths[c.n % len(self.paths)]
            return b"GET " + path + b" HTTP/1.1\r\n" + self.hdr + b"\r\n", lbl, None
        if op == "create":
            name = self.prefix + b"-%d-%d" % (c.idx, c.n)
            values = {NAME: name, TIME: b"%.6f" % now()} if self.embed_time else {NAME: name}
            body = fill_body(self.parts, self.slots, values)
            return (b"POST " + self.base + b" HTTP/1.1\r\n" + self.hdr +
                    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body, "create", None)
        if op == "update":
            owned = self.owned[c.idx]
            obj = owned[c.n % len(owned)]
            body = fill_body(self.parts, self.slots, {NAME: obj[0], RV: str(obj[1]).encode()})
            return (b"PUT " + self.base + b"/" + obj[0] + b" HTTP/1.1\r\n" + self.hdr +
                    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body, "update", obj)
        if op == "apply":
            owned = self.owned[c.idx]
            obj = owned[c.n % len(owned)]
            body = fill_body(self.parts, self.slots, {NAME: obj[0], RV: str(obj[1]).encode()})
            return (b"PATCH " + self.base + b"/" + obj[0] + b"?fieldManager=bench-apply&force=true HTTP/1.1\r\n" +
                    self.hdr + b"Content-Type: application/apply-patch+yaml\r\nContent-Length: %d\r\n\r\n"
                    % len(body) + body, "apply", obj)
        raise ValueError(op)

    def on_lost(self, c: HttpConn) -> None:
        if c.busy:
            self.errors["connection_lost"] = self.errors.get("connection_lost", 0) + 1
            c.busy = False
        self.check_done()

    def next(self, c: HttpConn) -> None:
        if self.stopping or c.closed:
            self.check_done()
            return
        t = now()
        if t >= self.t_end or self.issued >= self.max_requests:
            self.stopping = True
            self.check_done()
            return
        due = 0.0
        if self.rate:
            due = self.t0 + self.issued / self.rate
            if due > t:
                self.issued += 1
                self.loop.call_at(due, self._send, c, due)
                return
            if t - due > 0.05:
                self.late += 1
        self.issued += 1
        self._send(c, due)

    def _send(self, c: HttpConn, due: float = 0.0) -> None:
        if c.closed:
            self.check_done()
            return
        data, label, ctx = self.build(c)
        c.send(data, label, ctx, due)

    def on_response(self, c: HttpConn, status: int, body: bytes) -> None:
        t = now()
        s = self.stat(c.label)
        s.hist.add(t - c.t_sent)
        s.codes[status] = s.codes.get(status, 0) + 1
        s.bytes += len(body)
        c.n += 1
        if 200 <= status < 300:
            s.ok += 1
            if self.op in ("update", "apply") or self.spec.get("record_acks"):
                i = body.find(RV_MARK)
                if i >= 0:
                    rv = int(body[i + 19: body.index(b'"', i + 19)])
                    if self.op in ("update", "apply"):
                        c.ctx[1] = rv
                    if self.spec.get("record_acks"):
                        self.acks.append((rv, t))
        self.next(c)

    def check_done(self) -> None:
        if self.stopping and not any(c.busy and not c.closed for c in self.conns):
            self.done.set()

    def _lag_tick(self, due: float) -> None:
        t = now()
        self.lag.add(max(t - due, 1e-6))
        if not self.stopping:
            self.loop.call_at(t + 0.005, self._lag_tick, t + 0.005)

    async def main(self) -> dict[str, Any]:
        targets = self.spec["targets"]
        n = int(self.spec["connections"])
        conns = []
        for i in range(n):
            host, port = targets[i % len(targets)]
            _, c = await self.loop.create_connection(functools.partial(HttpConn, self, i), host, port)
            conns.append(c)
        self.conns = conns
        cpu0 = _cpu_self()
        self.t0 = now()
        self.t_end = self.t0 + self.duration
        for c in self.conns:
            self.next(c)
        self.loop.call_at(self.t0 + 0.005, self._lag_tick, self.t0 + 0.005)
        try:
            await asyncio.wait_for(self.done.wait(), self.duration + float(self.spec.get("drain_s", 30)))
        except TimeoutError:
            self.errors["unfinished_at_deadline"] = sum(1 for c in self.conns if c.busy)
        elapsed = now() - self.t0
        cpu = _cpu_self() - cpu0
        for c in self.conns:
            if c.t is not None:
                c.t.close()
        total = Hist()
        codes: dict[int, int] = {}
        ok = 0
        for s in self.stats.values():
            total.merge(s.hist)
            ok += s.ok
            for k, v in s.codes.items():
                codes[k] = codes.get(k, 0) + v
        return {
            "requests": total.n, "ok": ok, "codes": {str(k): v for k, v in codes.items()}, "errors": self.errors,
            "elapsed_s": elapsed, "cpu_s": cpu, "hist": total.to_json(), "late": self.late,
            "loop_lag": self.lag.to_json(),
            "per_label": {k: {"hist": s.hist.to_json(), "ttfb": s.ttfb.to_json(), "ok": s.ok, "codes": {str(a): b for a, b in s.codes.items()},
                              "bytes": s.bytes} for k, s in self.stats.items()},
            "acks": self.acks,
        }


# ---- watch streams -----------------------------------------------------------------------------------

class WatchConn(asyncio.Protocol):
    def __init__(self, run: WatchRun, idx: int) -> None:
        self.run = run
        self.idx = idx
        self.t: Any = None
        self.buf = bytearray()
        self.pending = bytearray()
        self.headers_done = False
        self.status = 0
        self.left = 0
        self.data_left = 0
        self.rvs = array.array("q")
        self.times = array.array("d")
        self.last_rv = 0
        self.t_open = 0.0
        self.t_first = 0.0
        self.errors = 0
        self.error_line = b""
        self.bookmarks = 0
        self.ended = False

    def connection_made(self, transport: Any) -> None:
        self.t = transport
        self.t_open = now()
        transport.write(b"GET " + self.run.path + b" HTTP/1.1\r\n" + self.run.hdr + b"\r\n")

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self.run.check()

    def data_received(self, data: bytes) -> None:
        t = now()
        buf = self.buf
        buf += data
        if not self.headers_done:
            e = buf.find(b"\r\n\r\n")
            if e < 0:
                return
            self.status = int(buf[9:12])
            del buf[: e + 4]
            self.headers_done = True
            if self.status != 200:
                self.errors += 1
                self.error_line = bytes(buf[:300])
                self.ended = True
                self.t.close()
                return
        pos, n = 0, len(buf)
        pend = self.pending
        while pos < n:
            if self.left == 0:
                j = buf.find(b"\r\n", pos)
                if j < 0:
                    break
                size = int(bytes(buf[pos:j]).split(b";")[0], 16)
                pos = j + 2
                if size == 0:
                    self.ended = True
                    break
                self.left = size + 2
                self.data_left = size
            take = min(self.left, n - pos)
            d = min(take, self.data_left)
            if d:
                pend += buf[pos: pos + d]
                self.data_left -= d
            pos += take
            self.left -= take
        del buf[:pos]
        if b"\n" not in pend:
            return
        lines = bytes(pend).split(b"\n")
        rest = lines.pop()
        pend.clear()
        pend += rest
        for line in lines:
            if not line:
                continue
            i = line.find(RV_MARK)
            if line.startswith(b'{"type":"BOOKMARK"'):
                self.bookmarks += 1
                continue
            if line.startswith(b'{"type":"ERROR"'):
                self.errors += 1
                self.error_line = line[:300]
                continue
            if i < 0:
                continue
            rv = int(line[i + 19: line.index(b'"', i + 19)])
            if not self.t_first:
                self.t_first = t
            self.rvs.append(rv)
            self.times.append(t)
            self.last_rv = rv
        self.run.check()


class WatchRun:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.path = spec["path"].encode()
        self.hdr = f"Host: 127.0.0.1\r\nAuthorization: Bearer {spec['token']}\r\nUser-Agent: jetkube-bench\r\n".encode()
        self.conns: list[WatchConn] = []
        self.until_rv = int(spec.get("until_rv", 0))
        self.done = asyncio.Event()
        self.acked: list[tuple[int, float]] | None = None

    def check(self) -> None:
        target = self.until_rv
        if not target:
            return
        if all(c.ended or c.last_rv >= target for c in self.conns):
            self.done.set()

    async def main(self) -> dict[str, Any]:
        loop = asyncio.get_event_loop()
        targets = self.spec["targets"]
        n = int(self.spec["watchers"])
        cpu0 = _cpu_self()
        t0 = now()
        for i in range(n):
            host, port = targets[i % len(targets)]
            _, c = await loop.create_connection(functools.partial(WatchConn, self, i), host, port)
            self.conns.append(c)
        max_s = float(self.spec.get("max_s", 60))
        if not self.until_rv:
            # Wait for "finish ACKFILE GRACE" on stdin.
            reader = asyncio.StreamReader()
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
            try:
                line = await asyncio.wait_for(reader.readline(), max_s)
            except TimeoutError:
                line = b""
            parts = line.decode().split()
            grace = 0.0
            if len(parts) == 3 and parts[0] == "finish":
                with open(parts[1]) as f:  # noqa: ASYNC230 - a small file, once
                    self.acked = [(int(a), float(b)) for a, b in json.load(f)]
                grace = float(parts[2])
                self.until_rv = max((a for a, _ in self.acked), default=0)
            self.check()
            if self.until_rv:
                try:
                    await asyncio.wait_for(self.done.wait(), grace)
                except TimeoutError:
                    pass
        else:
            self.check()
            try:
                await asyncio.wait_for(self.done.wait(), max_s)
            except TimeoutError:
                pass
        t_stop = now()
        for c in self.conns:
            if c.t is not None:
                c.t.close()
        cpu = _cpu_self() - cpu0
        return self.summarize(t0, t_stop, cpu)

    def summarize(self, t0: float, t_stop: float, cpu: float) -> dict[str, Any]:
        out: dict[str, Any] = {"watchers": len(self.conns), "cpu_s": cpu, "elapsed_s": t_stop - t0,
                               "events": sum(len(c.rvs) for c in self.conns),
                               "errors": sum(c.errors for c in self.conns),
                               "bad_status": sum(1 for c in self.conns if c.status != 200),
                               "error_sample": next((c.error_line.decode(errors="replace") for c in self.conns
                                                     if c.error_line), "")}
        firsts = [c.t_first - c.t_open for c in self.conns if c.t_first]
        out["first_event_s"] = firsts
        lasts = [(c.times[-1] - c.t_first, len(c.rvs)) for c in self.conns if len(c.rvs) > 1]
        out["stream_s"] = lasts
        if self.until_rv:
            out["reached"] = sum(1 for c in self.conns if c.last_rv >= self.until_rv)
        if self.acked is not None:
            ack_at = dict(self.acked)
            want = sorted(ack_at)
            want_set = set(want)
            hist = Hist()
            missing = 0
            complete = 0
            in_order = 0
            for c in self.conns:
                rvs = c.rvs
                ok_order = all(rvs[i] < rvs[i + 1] for i in range(len(rvs) - 1))
                in_order += ok_order
                got = 0
                for rv, t in zip(rvs, c.times):
                    a = ack_at.get(rv)
                    if a is not None:
                        got += 1
                        hist.add(max(t - a, 1e-6))
                missing += len(want) - got
                if got == len(want) and ok_order and len(set(rvs) - want_set) == 0:
                    complete += 1
            out.update({"acked": len(want), "deliveries": hist.n, "missing": missing, "complete": complete,
                        "in_order": in_order, "hist": hist.to_json()})
        return out


def main() -> None:
    spec_path, out_path = sys.argv[1], sys.argv[2]
    with open(spec_path) as f:
        spec = json.load(f)
    try:
        import resource as _r
        _, hard = _r.getrlimit(_r.RLIMIT_NOFILE)
        _r.setrlimit(_r.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    run: Any = HttpRun(spec) if spec["kind"] == "http" else WatchRun(spec)
    try:
        result = loop.run_until_complete(asyncio.wait_for(run.main(), float(spec.get("hard_cap_s", 600))))
    except Exception as e:  # noqa: BLE001 - reported to the orchestrator
        result = {"error": f"{type(e).__name__}: {e}"}
    write_result(out_path, result)


if __name__ == "__main__":
    main()
