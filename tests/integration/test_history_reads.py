"""The state of many objects at past versions, read from the log (projections/_history.py), against a
fold of the same log: every source a read can take (the projection's entries, the range just below
the version, ``multi_last`` under it) gives the same rows."""

from __future__ import annotations

import random

import msgspec
import pytest
import trio

from bus import (
    Actor,
    Event,
    Key,
    StreamConfig,
    encode_event,
    encode_object_with_rv_slot,
    open_bridge,
    open_log,
    resource_filter,
)
from projections import _history
from projections._history import rows_at
from projections._store import Entry

pytestmark = pytest.mark.trio


def _event(name: str, i: int, verb: str, delete: bool = False) -> bytes:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns"}, "data": {"i": str(i)}}
    data, rv_at = encode_object_with_rv_slot(obj)
    return encode_event(Event(type="delete" if delete else "put", object=msgspec.Raw(data), rv_at=rv_at, verb=verb,
                              audit_id=f"a{i}", time="2026-01-01T00:00:00Z", actor=Actor(user="t")))


async def test_rows_at_every_source_agrees_with_a_fold(nats_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(7)
    async with open_bridge(nats_url) as bridge:
        log = await open_log(bridge, StreamConfig(name="HR", prefix="hr"))
        live: dict[str, int] = {}
        last: dict[str, int] = {}  # subject -> its last sequence: every append is a CAS, as jetkube's
        history: list[tuple[int, str, bool, int]] = []  # (seq, name, deleted, i)
        with trio.fail_after(120):
            for i in range(4000):
                name = f"o{rng.randrange(700)}" if i % 5 else f"hot{i % 3}"
                key = Key("root", "", "configmaps", "ns", name)
                delete = name in live and rng.random() < 0.08
                subject = log.subject(key)
                seq = await log.append(subject, _event(name, i, "delete" if delete else
                                                       ("update" if name in live else "create"), delete),
                                       msg_id=f"m{i}", expected_seq=last.get(subject, 0) if i % 50 else None)
                last[subject] = seq
                history.append((seq, name, delete, i))
                if delete:
                    live.pop(name)
                else:
                    live[name] = i
        head = history[-1][0]
        flt = resource_filter("hr", "root", "", "configmaps")

        def fold(at: int) -> dict[str, str]:
            state: dict[str, str] = {}
            for seq, name, deleted, i in history:
                if seq > at:
                    break
                if deleted:
                    state.pop(name, None)
                else:
                    state[name] = str(i)
            return state

        current: dict[Key, Entry] = {}
        for seq, name, deleted, _ in history:  # the projection's entries at the head
            key = Key("root", "", "configmaps", "ns", name)
            if deleted:
                current.pop(key, None)
            else:
                current[key] = Entry(seq, b"", {}, {})

        async def rows(at: int, **kw: object) -> dict[str, str]:
            ranges.append(0)
            got, more = await rows_at(log, flt, at, start_after="", limit=0, keep=lambda *_: True, **kw)  # type: ignore[arg-type]
            assert not more
            out = {}
            for rk, e in got:
                if e.data:
                    obj = msgspec.json.decode(e.data)
                    assert int(obj["metadata"]["resourceVersion"]) == e.seq <= at
                    out[rk.split("\x00")[1]] = obj["data"]["i"]
                else:  # from ``current``: its seq tells which revision it is
                    out[rk.split("\x00")[1]] = next(str(i) for s, _, _, i in history if s == e.seq)
            return out

        # Small chunks and a small "block" so a read takes every path: several chunks of the range,
        # then multi_last below it for subjects the range did not see.
        monkeypatch.setattr(_history, "SCAN_FIRST", 256)
        monkeypatch.setattr(_history, "STORE_BLOCK_BYTES", 300 * 1024)
        monkeypatch.setattr(_history, "SCAN_MIN_SUBJECTS", 20)  # more ranges before multi_last
        ranges: list[int] = []  # ranges read per rows_at
        between = log.last_messages_between

        async def counted_range(*a, **kw):  # type: ignore[no-untyped-def]
            ranges[-1] += 1
            return await between(*a, **kw)

        log.last_messages_between = counted_range  # type: ignore[method-assign]
        walked = 0
        message_and_previous = log.message_and_previous

        async def counted(seq: int):  # type: ignore[no-untyped-def]
            nonlocal walked
            walked += 1
            return await message_and_previous(seq)

        log.message_and_previous = counted  # type: ignore[method-assign]
        # A version with 60 objects changed since: with SCAN_MIN_SUBJECTS 20 more than walking back
        # would cost against the range (WALK_MESSAGES each), so the range is read for them.
        changed_since: set[str] = set()
        k = len(history)
        while len(changed_since) < 60:
            k -= 1
            changed_since.add(history[k][1])
        for at in (history[50][0], history[1000][0], history[2500][0], history[3950][0], history[k - 1][0],
                   head - 3, head):
            want = fold(at)
            assert await rows(at) == want
            assert await rows(at, current=lambda ns, n: current.get(Key("root", "", "configmaps", ns, n))) == want
        assert max(ranges) > 1  # a read took several ranges going back
        # Near the head few objects changed since: they were walked back along their appends' expected
        # sequences (an append every 50th without one: the other paths take those).
        assert walked > 0
        # Pages in key order carry on where the last one stopped, whatever path each page took.
        at = history[3000][0]
        want = fold(at)
        names: list[str] = []
        after = ""
        while True:
            got, more = await rows_at(log, flt, at, start_after=after, limit=97, keep=lambda *_: True)
            names += [rk.split("\x00")[1] for rk, _ in got]
            if not more:
                break
            after = got[-1][0]
        assert names == sorted(want)
        # Without the range read (few subjects): multi_last alone gives the same.
        monkeypatch.setattr(_history, "SCAN_MIN_SUBJECTS", 10**9)
        assert await rows(history[2000][0]) == fold(history[2000][0])


async def test_range_reads_keep_each_subjects_last_message(nats_url: str) -> None:
    """``Log.last_messages_between`` (a reader opened with ``until``: kept on the asyncio side), and
    ``Log.messages_by_seq`` (with ``until`` and ``wanted``), against
    a scan of what was appended: ranges inside the log, across several pulls, past its end and empty,
    on a log whose Secrets are encrypted at rest (the kept ones decrypted, none other needed)."""
    import base64

    from bus import EncryptionConfig

    enc = EncryptionConfig.from_dict({
        "apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
        "resources": [{"resources": ["secrets"], "providers": [
            {"aesgcm": {"keys": [{"name": "k1", "secret": base64.b64encode(b"r" * 32).decode()}]}}, {"identity": {}}]}]})
    rng = random.Random(11)
    async with open_bridge(nats_url) as bridge:
        log = await open_log(bridge, StreamConfig(name="HRR", prefix="hrr"), encryption=enc)
        appended: list[tuple[int, str, bytes]] = []
        with trio.fail_after(60):
            for i in range(600):
                kind = "secrets" if i % 3 == 0 else "configmaps"
                subject = log.subject(Key("root", "", kind, "ns", f"o{rng.randrange(40)}"))
                payload = b"payload-%d" % i
                appended.append((await log.append(subject, payload, msg_id=f"r{i}", expected_seq=None), subject, payload))
            head = appended[-1][0]
            for flt in ("hrr.>", resource_filter("hrr", "root", "", "secrets", None),
                        resource_filter("hrr", "root", "", "configmaps", "ns")):
                matching = [(s, subj, p) for s, subj, p in appended
                            if flt == "hrr.>" or subj.startswith(flt.rstrip(">").rstrip("*"))]
                assert matching
                # (in_flight: pulls outstanding at once; a small batch keeps several in flight)
                for first, last, batch, in_flight in ((1, head, 4096, 1), (50, 420, 7, 1), (50, 420, 7, 3),
                                                      (300, head + 100, 16, 2), (head, head, 1, 3),
                                                      (200, 199, 8, 3), (head + 1, head + 50, 8, 3)):
                    want = {subj: (s, p) for s, subj, p in matching if first <= s <= last}
                    got = await log.last_messages_between(flt, first, last, batch=batch, in_flight=in_flight)
                    assert {subj: (m.seq, m.data) for subj, m in got.items()} == want, (flt, first, last, batch)
                    assert all(m.subject == subj for subj, m in got.items())
                # ``Log.messages_by_seq`` (a reader opened with ``until`` and ``wanted``): exactly the
                # sequences asked, decrypted; one the filter does not hold is absent.
                for pick, batch, in_flight in ((3, 4096, 1), (11, 7, 1), (1, 16, 1), (1, 5, 3), (2, 9, 2), (7, 3, 3)):
                    want_seq = {s: p for s, _, p in matching[::pick]}
                    got_seq = await log.messages_by_seq(flt, set(want_seq), batch=batch, in_flight=in_flight)
                    assert got_seq == want_seq, (flt, pick, batch, in_flight)
                other = next(s for s, subj, _ in appended if (s, subj) not in {(m[0], m[1]) for m in matching}) \
                    if len(matching) < len(appended) else None
                if other is not None:
                    some = {s for s, _, _ in matching[:5]}
                    got_seq = await log.messages_by_seq(flt, some | {other})
                    assert set(got_seq) == some


async def test_pipelined_range_reads_ask_for_no_message_past_the_end(nats_url: str) -> None:
    """A range read with several pulls in flight (bus/_reader.py ``in_flight``): every pull asks for at
    most the messages the range's sequences left can hold, so when the filter holds every sequence
    nothing past ``until`` is asked for; a wanted message deleted from the stream (in the middle, or the
    highest) is absent and the read still ends (at the first message past it, or the stream's end)."""
    from bus._reader import open_reader

    async with open_bridge(nats_url) as bridge:
        log = await open_log(bridge, StreamConfig(name="HRP", prefix="hrp"))
        with trio.fail_after(60):
            seqs = [await log.append(log.subject(Key("root", "", "configmaps", "ns", f"o{i % 30}")), b"p%d" % i,
                                     msg_id=f"p{i}", expected_seq=None) for i in range(300)]
            first, head = seqs[0], seqs[-1]
            for batch, in_flight, lo, hi in ((5, 3, first, head - 40), (7, 2, first + 10, head), (4, 3, head - 9, head),
                                             (1000, 3, first, head), (3, 1, first + 100, first + 150)):
                wanted = set(range(lo, hi + 1, 2)) | {hi}
                reader = await open_reader(bridge, log.stream, "hrp.>", lo, batch=batch, until=hi, wanted=wanted,
                                           in_flight=in_flight)
                try:
                    got = await reader.wanted_messages()
                    # Asked for up to ``hi`` and no further (the message at ``hi`` ends the read uncounted).
                    assert reader._outstanding == 1, (batch, in_flight, reader._outstanding)
                finally:
                    await reader.aclose()
                assert got == {s: b"p%d" % (s - first) for s in wanted}, (batch, in_flight, lo, hi)
            # Deleted: one in the middle of the range, and the highest wanted one.
            for gone in (first + 120, first + 200):
                resp = await log._api(f"STREAM.MSG.DELETE.{log.stream}", {"seq": gone, "no_erase": True})
                assert resp.get("success"), resp
            for hi, in_flight in ((first + 200, 3), (first + 200, 1), (head, 3)):
                wanted = set(range(first + 100, hi + 1))
                got = await log.messages_by_seq("hrp.>", wanted, batch=6, in_flight=in_flight)
                assert got == {s: b"p%d" % (s - first) for s in wanted - {first + 120, first + 200}}, (hi, in_flight)
            # The highest wanted sequence deleted and nothing after it: the stream's end ends the read.
            resp = await log._api(f"STREAM.MSG.DELETE.{log.stream}", {"seq": head, "no_erase": True})
            assert resp.get("success"), resp
            wanted = set(range(head - 20, head + 1))
            got = await log.messages_by_seq("hrp.>", wanted, batch=4, in_flight=3)
            assert got == {s: b"p%d" % (s - first) for s in wanted - {head}}
