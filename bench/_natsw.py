"""Worker processes that talk to NATS or encode, each in a process of its own.

``python -m bench._natsw MODE SPEC.json OUT.json`` with MODE one of:

c2      The log ceiling: pipelined JetStream publishes from nats-py on its own asyncio loop, the
        fastest way this stack appends: one reply inbox, ``window`` publishes in flight, acks
        counted by one subscription callback. The stream is configured as jetkube's (file
        storage, R1, duplicate window, allow_direct) and every publish carries the same headers a
        jetkube append does (``Nats-Msg-Id`` and ``Nats-Expected-Last-Subject-Sequence``) and
        the same payload (a real jetkube event of a ~1 KiB ConfigMap), on a fresh subject.
b5      The same appends through jetkube's bus layer (trio, ``bus.Log.append`` over the
        bridge), ``window`` concurrent trio tasks. Nothing else: no HTTP, no actors.
seed    Writes objects straight onto jetkube's stream, exactly as the resource actor would
        (jetkube's own encoders: ``encode_object_with_rv_slot``, ``Event``, ``object_subject``),
        cloned from templates that a real jetkube created, pipelined like c2. Used to put 10k
        to 100k objects in place in seconds where the scenario is not about writing them.
replay  Folds the whole log into a ``projections.Projection`` in this process (replay from
        sequence 1), after reading it raw once (the read ceiling for the same messages).
c3      The encode ceiling: msgspec JSON encoding of the objects a LIST returned.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import resource
import sys
import time
import uuid
from typing import Any

from ._util import Hist, proc_mem, write_result

now = time.monotonic


def _cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def stream_config(name: str, prefix: str) -> dict[str, Any]:
    """jetkube's stream settings (bus/_log.py ensure_stream), for a stream of our own."""
    return {
        "name": name, "subjects": [f"{prefix}.>"], "retention": "limits", "storage": "file", "num_replicas": 1,
        "discard": "old", "duplicate_window": int(120 * 1e9), "allow_direct": True,
        "max_msg_size": 8 * 1024 * 1024, "max_msgs": -1, "max_bytes": -1, "max_age": 0, "max_msgs_per_subject": -1,
    }


def sample_event(ns: str = "bench", size: int = 1024) -> bytes:
    """A jetkube event for a ~1 KiB ConfigMap, built with jetkube's own encoders."""
    from bus import Actor, Event, encode_event, encode_object_with_rv_slot

    from ._util import cm_body

    obj = json.loads(cm_body(ns, "sample", size))
    obj["metadata"].update(uid=str(uuid.uuid4()), creationTimestamp="2026-11-27T00:00:00Z")
    data, rv_at = encode_object_with_rv_slot(obj)
    import msgspec

    ev = Event(type="put", object=msgspec.Raw(data), rv_at=rv_at, verb="create", audit_id=str(uuid.uuid4()),
               time="2026-11-27T00:00:00Z", actor=Actor(user="admin", groups=("system:masters",
                                                                              "system:authenticated"),
                                                       uid="admin", tenant="default", user_agent="bench",
                                                       source="127.0.0.1"),
               labels=obj["metadata"].get("labels", {}))
    return encode_event(ev)


# ---- pipelined publisher (c2 and seed) -------------------------------------------------------------

async def _pipelined(url: str, items: Any, *, window: int, duration_s: float, max_n: int,
                     want_seqs: int = 0, stream: dict[str, Any] | None = None) -> dict[str, Any]:
    import nats

    nc = await nats.connect(url, pending_size=64 * 1024 * 1024, max_reconnect_attempts=0)
    try:
        if stream is not None:
            r = await nc.request(f"$JS.API.STREAM.CREATE.{stream['name']}", json.dumps(stream).encode(), timeout=10)
            resp = json.loads(r.data)
            if "error" in resp and resp["error"].get("err_code") != 10058:
                raise RuntimeError(f"stream create: {resp['error']}")
        inbox = nc.new_inbox()
        sent_at: dict[int, float] = {}
        hist = Hist()
        state: dict[str, Any] = {"inflight": 0, "acked": 0, "errors": 0, "err_sample": ""}
        seqs: dict[int, int] = {}
        wake = asyncio.Event()

        async def on_ack(msg: Any) -> None:
            n = int(msg.subject.rsplit(".", 1)[1])
            t = sent_at.pop(n, None)
            if t is not None:
                hist.add(now() - t)
            d = msg.data
            if b'"seq"' in d and b'"error"' not in d:
                state["acked"] += 1
                if n < want_seqs:
                    seqs[n] = int(json.loads(d)["seq"])
            else:
                state["errors"] += 1
                state["err_sample"] = (d or repr(msg.headers).encode())[:200].decode(errors="replace")
            state["inflight"] -= 1
            if state["inflight"] <= window // 2:
                wake.set()

        await nc.subscribe(inbox + ".*", cb=on_ack, pending_msgs_limit=10_000_000, pending_bytes_limit=1 << 31)
        cpu0 = _cpu_self()
        t0 = now()
        end = t0 + duration_s
        n = 0
        it = iter(items)
        exhausted = False
        while not exhausted and n < max_n and now() < end:
            while state["inflight"] < window and n < max_n:
                try:
                    subject, payload, headers = next(it)
                except StopIteration:
                    exhausted = True
                    break
                sent_at[n] = now()
                state["inflight"] += 1
                await nc.publish(subject, payload, reply=f"{inbox}.{n}", headers=headers)
                n += 1
            wake.clear()
            if state["inflight"] >= window // 2:
                try:
                    await asyncio.wait_for(wake.wait(), 10)
                except TimeoutError:
                    break
        # Await the acks still in flight (bounded).
        deadline = now() + 15
        while state["inflight"] > 0 and now() < deadline:
            wake.clear()
            try:
                await asyncio.wait_for(wake.wait(), 0.2)
            except TimeoutError:
                pass
        elapsed = now() - t0
        cpu = _cpu_self() - cpu0
        return {"sent": n, "acked": state["acked"], "errors": state["errors"], "err_sample": state["err_sample"],
                "unacked": state["inflight"], "elapsed_s": elapsed, "cpu_s": cpu,
                "rate": state["acked"] / elapsed if elapsed else 0.0, "hist": hist.to_json(),
                "seqs": {str(k): v for k, v in seqs.items()}}
    finally:
        await nc.close()


def run_c2(spec: dict[str, Any]) -> dict[str, Any]:
    prefix, name = spec["prefix"], spec["stream"]
    payload = sample_event()

    def items() -> Any:
        i = 0
        while True:
            i += 1
            yield (f"{prefix}.default._.configmaps.bench.c2-{i}", payload,
                   {"Nats-Msg-Id": f"c2-{uuid.uuid4()}", "Nats-Expected-Last-Subject-Sequence": "0"})

    out = asyncio.run(_pipelined(spec["url"], items(), window=int(spec["window"]),
                                 duration_s=float(spec["duration_s"]), max_n=int(spec["max_requests"]),
                                 stream=stream_config(name, prefix)))
    out["payload_bytes"] = len(payload)
    return out


# ---- b5: the bus layer ---------------------------------------------------------------------------------

def run_b5(spec: dict[str, Any]) -> dict[str, Any]:
    import itertools

    import trio

    from bus import BusError, StreamConfig, open_bridge, open_log

    payload = sample_event()
    prefix, name = spec["prefix"], spec["stream"]

    async def main() -> dict[str, Any]:
        async with open_bridge(spec["url"]) as bridge:
            log = await open_log(bridge, StreamConfig(name=name, prefix=prefix))
            counter = itertools.count(1)
            hist = Hist()
            state: dict[str, Any] = {"ok": 0, "errors": 0, "err_sample": ""}
            max_n = int(spec["max_requests"])
            cpu0 = _cpu_self()
            t0 = trio.current_time()
            end = t0 + float(spec["duration_s"])

            async def worker() -> None:
                while True:
                    i = next(counter)
                    if i > max_n or trio.current_time() >= end:
                        return
                    t = trio.current_time()
                    try:
                        await log.append(f"{prefix}.default._.configmaps.bench.b5-{i}", payload,
                                         msg_id=f"b5-{uuid.uuid4()}", expected_seq=0)
                        state["ok"] += 1
                        hist.add(trio.current_time() - t)
                    except (BusError, trio.TooSlowError) as e:
                        state["errors"] += 1
                        state["err_sample"] = repr(e)[:200]

            with trio.move_on_after(float(spec["duration_s"]) + 20):
                async with trio.open_nursery() as nursery:
                    for _ in range(int(spec["window"])):
                        nursery.start_soon(worker)
            elapsed = trio.current_time() - t0
            return {"acked": state["ok"], "errors": state["errors"], "err_sample": state["err_sample"],
                    "elapsed_s": elapsed, "cpu_s": _cpu_self() - cpu0,
                    "rate": state["ok"] / elapsed if elapsed else 0.0, "hist": hist.to_json(),
                    "payload_bytes": len(payload)}

    return trio.run(main)


# ---- seed: objects straight onto jetkube's stream ------------------------------------------------------

def seed_items(spec: dict[str, Any], stats: dict[str, Any], keep: list[tuple[str, bytes, Any]] | None = None) -> Any:
    """(subject, event bytes, headers) for every object of every group in ``spec['groups']``.

    A group: template (an object as jetkube returned it), group, plural, field_selectors,
    namespaces (list; "" for cluster scope), count (per group, spread over the namespaces),
    name_prefix, pad_to (grow ``data`` so the object is about this many bytes, 0: as is).
    With ``keep``, each object's subject, an update event of it (an annotation added) and that
    event are appended there (for :func:`churn_items`).
    """
    import copy

    import msgspec

    from bus import Actor, Event, Key, encode_event, encode_object_with_rv_slot, object_bytes, object_subject
    from kinds import field_value

    actor = Actor(user="admin", groups=("system:masters", "system:authenticated"), uid="admin", tenant="default",
                  user_agent="jetkube-bench-seed", source="127.0.0.1")
    ts = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    prefix = spec.get("subject_prefix", "jk")
    idx = 0
    for g in spec["groups"]:
        tmpl = g["template"]
        tmpl["metadata"].pop("resourceVersion", None)
        nss = g["namespaces"]
        for i in range(int(g["count"])):
            ns = nss[i % len(nss)]
            name = f"{g['name_prefix']}{i}"
            obj = copy.deepcopy(tmpl)
            meta = obj["metadata"]
            meta["name"] = name
            if ns:
                meta["namespace"] = ns
            else:
                meta.pop("namespace", None)
            meta["uid"] = str(uuid.uuid4())
            labels = meta.get("labels")
            if labels and "kubernetes.io/metadata.name" in labels:
                labels["kubernetes.io/metadata.name"] = name
            meta["creationTimestamp"] = ts
            data, rv_at = encode_object_with_rv_slot(obj)
            fields = {f: field_value(obj, f) for f in g.get("field_selectors", [])}
            audit = str(uuid.uuid4())
            ev = Event(type="put", object=msgspec.Raw(data), rv_at=rv_at, verb="create", audit_id=audit, time=ts,
                       actor=actor, labels=meta.get("labels") or {}, fields=fields)
            stats["object_bytes"] += len(object_bytes(ev, 1_000_000 + idx))
            stats["objects"] += 1
            subject = object_subject(prefix, Key("default", g["group"], g["plural"], ns, name))
            if idx < int(spec.get("want_seqs", 0)):
                stats["names"].append(name)
            idx += 1
            if keep is not None:
                meta["annotations"] = {**(meta.get("annotations") or {}), "bench.jetkube.io/churn": "yes"}
                udata, urv_at = encode_object_with_rv_slot(obj)
                upd = Event(type="put", object=msgspec.Raw(udata), rv_at=urv_at, verb="update", audit_id=audit,
                            time=ts, actor=actor, labels=meta.get("labels") or {}, fields=fields)
                keep.append((subject, encode_event(upd), upd))
            yield subject, encode_event(ev), {"Nats-Msg-Id": audit, "Nats-Expected-Last-Subject-Sequence": "0"}


def churn_items(objs: list[tuple[str, bytes, Any]], extra: int, stats: dict[str, Any]) -> Any:
    """``extra`` more events on objects already created: rounds over every object, each an update,
    except 1 in 100 per round (a different one each round), deleted and created again (2 events), so
    the log grows to ``objects + extra`` events while the live objects stay the same. Generated as
    they are published (memory stays that of one update per object)."""
    import msgspec

    from bus import encode_event

    n = rnd = 0
    while objs:
        rnd += 1
        for i, (subject, update, ev) in enumerate(objs):
            if n >= extra:
                return
            if i % 100 == rnd % 100 and n + 2 <= extra:
                tomb = encode_event(msgspec.structs.replace(ev, type="delete", verb="delete"))
                yield subject, tomb, {"Nats-Msg-Id": f"churn-{n}"}
                yield subject, encode_event(msgspec.structs.replace(ev, verb="create")), {"Nats-Msg-Id": f"churn-{n + 1}"}
                n += 2
                stats["recreated"] += 1
            else:
                yield subject, update, {"Nats-Msg-Id": f"churn-{n}"}
                n += 1


def run_seed(spec: dict[str, Any]) -> dict[str, Any]:
    import itertools

    stats: dict[str, Any] = {"object_bytes": 0, "objects": 0, "names": [], "recreated": 0}
    keep: list[tuple[str, bytes, Any]] | None = [] if int(spec.get("events", 0)) else None
    items: Any = list(seed_items(spec, stats, keep))  # built before the clock starts
    total = len(items)
    extra = max(0, int(spec.get("events", 0)) - total)
    if keep is not None and extra:
        items = itertools.chain(items, churn_items(keep, extra, stats))
        total += extra
    out = asyncio.run(_pipelined(spec["url"], items, window=int(spec.get("window", 512)),
                                 duration_s=float(spec.get("max_s", 300)), max_n=total,
                                 want_seqs=int(spec.get("want_seqs", 0))))
    out["events"] = total
    out["recreated"] = stats["recreated"]
    out["objects"] = stats["objects"]
    out["object_bytes"] = stats["object_bytes"]
    seqs = out.pop("seqs")
    out["objects_rv"] = [[stats["names"][int(k)], v] for k, v in sorted(seqs.items(), key=lambda kv: int(kv[0]))]
    out.pop("hist", None)
    return out


# ---- replay: fold the log in-process ----------------------------------------------------------------------

def run_replay(spec: dict[str, Any]) -> dict[str, Any]:
    import trio

    from bus import StreamConfig, open_bridge
    from bus._log import Log
    from bus._subjects import all_filter
    from projections import Projection

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with open_bridge(spec["url"]) as bridge:
            log = Log(bridge, StreamConfig(name=spec["stream"], prefix=spec["prefix"]))
            head = await log.head()
            out["head"] = head
            # Raw read of every message, nothing applied: the read floor for the same log.
            t0 = trio.current_time()
            reader = await log.open_reader(all_filter(spec["prefix"]), 1)
            n = 0
            try:
                with trio.fail_after(float(spec.get("limit_s", 120))):
                    while n < head:
                        n += len(await reader.next_batch())
            finally:
                await reader.aclose()
            out["raw_read_s"] = trio.current_time() - t0
            out["raw_read_msgs"] = n
            rss0 = proc_mem(os.getpid()).get("VmRSS", 0)
            proj = Projection(log)
            t0 = trio.current_time()
            cpu0 = _cpu_self()
            with trio.fail_after(float(spec.get("limit_s", 180))):
                async with trio.open_nursery() as nursery:
                    await nursery.start(proj.run)
                    out["replay_s"] = trio.current_time() - t0
                    out["replay_cpu_s"] = _cpu_self() - cpu0
                    out["applied"] = proj.store.applied
                    out["objects"] = sum(st.count for st in proj.store.resources.values())
                    out["store_rss_delta"] = proc_mem(os.getpid()).get("VmRSS", 0) - rss0
                    nursery.cancel_scope.cancel()
        return out

    return trio.run(main)


# ---- c3: encode ceiling ----------------------------------------------------------------------------------

def run_c3(spec: dict[str, Any]) -> dict[str, Any]:
    import msgspec

    with open(spec["list_file"], "rb") as f:
        body = f.read()
    doc = msgspec.json.decode(body)
    enc = msgspec.json.Encoder()
    times = []
    n = 0
    for _ in range(int(spec.get("repeats", 7))):
        t0 = time.perf_counter()
        out = enc.encode(doc)
        times.append(time.perf_counter() - t0)
        n = len(out)
    # For reference: joining the stored bytes, as jetkube's LIST does (performance principle 1).
    items = [enc.encode(i) for i in doc["items"]]
    jt = []
    for _ in range(int(spec.get("repeats", 7))):
        t0 = time.perf_counter()
        b",".join(items)
        jt.append(time.perf_counter() - t0)
    times.sort()
    jt.sort()
    return {"items": len(doc["items"]), "bytes": n, "encode_s_min": times[0], "encode_s_median": times[len(times) // 2],
            "join_s_median": jt[len(jt) // 2]}


def main() -> None:
    mode, spec_path, out_path = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(spec_path) as f:
        spec = json.load(f)
    fn = {"c2": run_c2, "b5": run_b5, "seed": run_seed, "replay": run_replay, "c3": run_c3}[mode]
    try:
        result = fn(spec)
    except BaseException as e:  # noqa: BLE001 - reported to the orchestrator
        result = {"error": f"{type(e).__name__}: {e}"}
    write_result(out_path, result)


if __name__ == "__main__":
    main()
