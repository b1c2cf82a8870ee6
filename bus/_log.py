"""The JetStream log: stream setup, compare-and-swap appends, head queries, history reads."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import msgspec
import trio

from ._bridge import Bridge, Reply, encode_append_headers
from ._encryption import EncryptionConfig
from ._errors import (
    BusDisconnected,
    BusError,
    BusTimeout,
    BusUnavailable,
    JetStreamError,
    MsgIdCollision,
    NoResponders,
    StreamMismatch,
    WrongLastSequence,
)
from ._reader import LogReader, open_reader
from ._stats import FAST_BUCKETS, Histogram
from ._subjects import Key, all_filter, object_subject, system_subject
from ._types import LogMessage

log = logging.getLogger("jetkube.bus")
#: A range read's pulls (bus/_reader.py ``in_flight``): messages per pull, and pulls outstanding at
#: once, so nats-server sends the next while Python cuts the current ones. At most ~3,000 messages
#: (~1.5 MB of 500-byte events) in flight. Measured on 10,031 messages (/tmp/xlist/rr.py, load ~9):
#: one pull of 4,096 at a time waited for each pull's first message; 3 x 1,024 did not.
RANGE_BATCH = 1024
RANGE_PULLS = 3
#: Head queries in flight at once: a caller sends its own query at once while fewer are in flight
#: (the answer of a query sent before it arrived does not do); beyond, its round waits for one to end
#: and then sends, for every caller that arrived meanwhile. Measured in B12 (a tenant's LISTs
#: flooding one gateway, each with its head query; the quiet tenant's GET traced through the loop
#: probe): waiting for the query in flight to end (unless out 10 ms) cost the quiet GET's head query
#: 3.7 ms at p50 and 8.4 ms at p99 (8 and 18 turns of the run queue); sending at once (up to 4 in
#: flight in that run), 2.2 / 6.1 ms. B2 (consistent GETs, saturated) alternated with the waiting
#: rule: the same rate against B2/rv0 with 2 in flight at most (with 4, 4-8% less: kept at 2).
HEAD_MAX_IN_FLIGHT = 2
_WRONG_LAST_SEQUENCE = 10071
# A clustered stream's leader answers a CAS append that lost to a write still being proposed with
# this constant form, which names no sequence (nats-server JSStreamWrongLastSequenceConstantErr).
_WRONG_LAST_SEQUENCE_CONSTANT = 10164
#: "no suitable peers for placement" (nats-server JSClusterNoPeersErrF, a 400): a replicated stream
#: asked of a cluster whose meta leader has not heard from enough peers yet (or never will).
NO_PEERS_ERR = 10005
_ack_decoder = msgspec.json.Decoder()


class _PubAck(msgspec.Struct):
    """What an append reads of JetStream's PubAck (other fields ignored). A reply of another shape
    (an error, a field of another type) fails validation and takes the general path."""

    seq: int | msgspec.UnsetType = msgspec.UNSET
    duplicate: bool = False
    error: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


_puback_decoder = msgspec.json.Decoder(_PubAck)


class StreamConfig(msgspec.Struct, frozen=True):
    """How the log's stream is set up. ``replicas`` > 1 needs a JetStream cluster."""

    name: str = "JETKUBE"
    prefix: str = "jk"
    replicas: int = 1
    duplicate_window_s: float = 120.0
    max_msg_bytes: int = 8 * 1024 * 1024
    #: Retention (0 / -1: keep everything, the log's setting; the audit stream has its own bounds).
    max_age_s: float = 0.0
    max_bytes: int = -1


def _api_error(resp: dict[str, Any]) -> JetStreamError:
    err = resp["error"]
    return JetStreamError(int(err.get("code", 0)), int(err.get("err_code", 0)), str(err.get("description", "")))


class _HeadRound:
    __slots__ = ("abandoned", "done", "error", "leader", "value")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.value: int | None = None
        self.error: BaseException | None = None
        #: The caller running the query was cancelled (its own deadline): the others join a later round.
        self.abandoned = False
        #: A caller of this round waits for the query in flight to end, to send this one.
        self.leader = False


class Log:
    """The stream every mutation is appended to. Get one from :func:`open_log`."""

    def __init__(self, bridge: Bridge, config: StreamConfig, *, append_timeout_s: float = 10.0,
                 startup_timeout_s: float = 30.0, encryption: EncryptionConfig | None = None) -> None:
        self.bridge = bridge
        #: Encryption at rest (``--encryption-provider-config``): applied to every event appended and
        #: undone on every read, so the stream's files hold no plaintext of the configured resources.
        self.encryption = encryption
        self.config = config
        self.prefix = config.prefix
        self.stream = config.name
        self.append_timeout_s = append_timeout_s
        #: Time from the first publish to the ack of every acknowledged append (retries included).
        self.append_latency = Histogram(FAST_BUCKETS)
        #: Appends refused because the subject moved on since the write was decided (CAS conflicts).
        self.conflicts = 0
        self.startup_timeout_s = startup_timeout_s
        # Coalescing of head queries: readers that arrive while a query is in flight wait for the
        # *next* query, because the one in flight may have been answered before their write.
        self._head_next: _HeadRound | None = None
        self._head_busy = 0  # queries in flight
        self._head_ended = trio.Event()  # set (and replaced) when a query in flight ends

    def subject(self, key: Key) -> str:
        return object_subject(self.prefix, key)

    async def _api(self, api: str, body: dict[str, Any] | None = None, *, timeout_s: float = 5.0,
                   urgent: bool = False) -> dict[str, Any]:
        reply = await self.bridge.request(f"$JS.API.{api}", json.dumps(body or {}).encode(), timeout_s=timeout_s,
                                          urgent=urgent)
        # (msgspec: a STREAM.INFO of 10,000 subjects decodes in a third of json's time)
        resp: dict[str, Any] = msgspec.json.decode(reply.data) if reply.data else {}
        if "error" in resp:
            raise _api_error(resp)
        return resp

    async def ensure_stream(self) -> dict[str, Any]:
        """Create the stream if missing; return its info. Idempotent across gateway replicas.

        Raises :class:`StreamMismatch` when the stream exists with another replica count.
        """
        # A cluster that is (re)starting answers slowly or "unavailable" until the stream has a
        # leader (seconds after a whole-cluster restart), and one that is still forming refuses to
        # place a replicated stream ("no suitable peers for placement, peer offline": its meta leader
        # has not heard from every peer yet): wait for it, bounded, rather than fail the start.
        deadline = trio.current_time() + self.startup_timeout_s
        while True:
            try:
                info = await self._create_or_get_stream()
                break
            except (BusTimeout, NoResponders, BusUnavailable, JetStreamError) as e:
                transient = not isinstance(e, JetStreamError) or e.code == 503 or e.err_code == NO_PEERS_ERR
                if not transient or trio.current_time() >= deadline:
                    raise
                log.warning("the stream %s is not available yet (%s); retrying", self.stream, e)
                await trio.sleep(0.25)  # backoff against a cluster that is still electing
        have = int(info.get("config", {}).get("num_replicas", 1) or 1)
        if have != self.config.replicas:
            raise StreamMismatch(
                f"the JetStream stream {self.stream} exists with {have} replica(s), but {self.config.replicas} "
                f"were asked for (--stream-replicas): change the stream first (nats stream edit {self.stream} "
                f"--replicas {self.config.replicas}) or start with --stream-replicas {have}")
        return info

    async def _create_or_get_stream(self) -> dict[str, Any]:
        cfg = {
            "name": self.stream, "subjects": [all_filter(self.prefix)], "retention": "limits",
            "storage": "file", "num_replicas": self.config.replicas, "discard": "old",
            "duplicate_window": int(self.config.duplicate_window_s * 1e9), "allow_direct": True,
            "max_msg_size": self.config.max_msg_bytes, "max_msgs": -1, "max_bytes": self.config.max_bytes,
            "max_age": int(self.config.max_age_s * 1e9),
            "max_msgs_per_subject": -1,
        }
        try:
            return await self._api(f"STREAM.INFO.{self.stream}")
        except JetStreamError as e:
            if e.code != 404:
                raise
        try:
            return await self._api(f"STREAM.CREATE.{self.stream}", cfg)
        except JetStreamError as e:
            if e.err_code == 10058:  # stream name already in use: another replica won the race
                return await self._api(f"STREAM.INFO.{self.stream}")
            raise

    # ---- appends --------------------------------------------------------------------------------

    async def append(self, subject: str, payload: bytes, *, msg_id: str, expected_seq: int | None,
                     deadline_s: float | None = None) -> int:
        """Append one event and return its stream sequence (the new resourceVersion).

        ``expected_seq`` is the subject's last sequence the write was decided against (0: the
        subject must be empty); JetStream refuses a stale write with :class:`WrongLastSequence`.
        ``msg_id`` makes retries idempotent. Retries on "no responders" (a leader election) and
        timeouts with the same Msg-Id until the deadline, then raises :class:`BusTimeout`.

        Fails fast when the connection is down instead of waiting out the deadline:
        :class:`BusUnavailable` when nothing can have been applied (down before any attempt was
        sent, or every attempt was refused), :class:`BusTimeout` (outcome unknown) when an attempt
        was in flight as the connection dropped, or had timed out before it did.
        """
        if self.encryption is not None:
            payload = self.encryption.encrypt(subject, payload)  # once: retries resend these bytes
        headers = encode_append_headers(msg_id, expected_seq)  # Msg-Id (+ expected sequence), once too
        budget = self.append_timeout_s if deadline_s is None else deadline_s
        started = trio.current_time()
        deadline = started + budget
        delay = 0.05
        maybe_applied = False
        remaining = budget
        while True:
            if remaining <= 0:
                if not maybe_applied:  # every attempt was refused ("no responders"): nothing applied
                    raise NoResponders(f"append to {subject}: the stream did not respond within {budget}s")
                raise BusTimeout(f"append to {subject} not acknowledged within {budget}s")
            try:
                reply = await self.bridge.request(subject, payload, headers, timeout_s=min(remaining, 5.0))
            except BusDisconnected:
                raise
            except BusUnavailable as e:
                if maybe_applied:
                    raise BusTimeout(f"append to {subject}: the connection dropped after an unanswered "
                                     "attempt") from e
                raise
            except (NoResponders, BusTimeout) as e:
                maybe_applied = maybe_applied or not isinstance(e, NoResponders)
                await trio.sleep(min(delay, max(0.0, deadline - trio.current_time())))
                delay = min(delay * 2, 0.5)
                remaining = deadline - trio.current_time()
                continue
            try:
                seq, duplicate = self._ack(reply, expected_seq)
                if duplicate:
                    await self._check_duplicate(subject, msg_id, seq)
                self.append_latency.observe(trio.current_time() - started)
                return seq
            except WrongLastSequence as e:
                # On an R1 stream a retried CAS append whose first try landed answers "wrong last
                # sequence" instead of "duplicate" (the retry may be ours or the caller's): look
                # for our Msg-Id on the subject before calling it a conflict.
                last = await self.last_message(subject)
                if last is not None and last[1] == msg_id:
                    return last[0]
                self.conflicts += 1
                if e.current < 0 and last is not None:  # the constant form: name the sequence
                    raise WrongLastSequence(e.expected, last[0]) from None
                raise

    async def _check_duplicate(self, subject: str, msg_id: str, seq: int) -> None:
        """A "duplicate" ack names the sequence of the first message with this Msg-Id: it is our
        append only if that message is on our subject. Anything else is a Msg-Id reused for
        another write, which JetStream silently dropped: never report it as applied."""
        first = await self.message_at(seq)
        if first is None or first[0] != subject or first[1] != msg_id:
            log.error("Msg-Id %r of an append to %s was first used at sequence %d on %s: the append was "
                      "dropped as a duplicate", msg_id, subject, seq, first[0] if first else "?")
            raise MsgIdCollision(msg_id, subject, seq)

    @staticmethod
    def _ack(reply: Reply, expected_seq: int | None) -> tuple[int, bool]:
        """(sequence, whether JetStream answered it as a duplicate) of an append's ack."""
        if reply.data:
            try:
                ack = _puback_decoder.decode(reply.data)
            except msgspec.ValidationError:
                pass
            else:
                if ack.error is msgspec.UNSET and ack.seq is not msgspec.UNSET:
                    return ack.seq, ack.duplicate
        return Log._ack_general(reply, expected_seq)

    @staticmethod
    def _ack_general(reply: Reply, expected_seq: int | None) -> tuple[int, bool]:
        """:meth:`_ack` for any reply: errors, and shapes the PubAck struct does not take."""
        resp = _ack_decoder.decode(reply.data) if reply.data else {}
        if "error" in resp:
            err = resp["error"]
            if err.get("err_code") in (_WRONG_LAST_SEQUENCE, _WRONG_LAST_SEQUENCE_CONSTANT):
                desc = str(err.get("description", ""))
                current = int(desc.rsplit(" ", 1)[-1]) if desc.rsplit(" ", 1)[-1].isdigit() else -1
                raise WrongLastSequence(expected_seq or 0, current)
            raise _api_error(resp)
        if "seq" not in resp:
            raise BusError(f"unexpected append reply: {reply.data[:200]!r}")
        return int(resp["seq"]), bool(resp.get("duplicate"))

    # ---- reads ------------------------------------------------------------------------------------

    async def identity(self) -> str:
        """The stream's name and creation time: what a snapshot of its fold names, so that one of a
        stream deleted and created again under the same name is never taken for this one's."""
        info = await self._api(f"STREAM.INFO.{self.stream}")
        return f"{self.stream}@{info.get('created', '')}"

    async def stream_state(self) -> dict[str, Any]:
        # Crosses to the NATS thread at once, not at the end of the trio batch (bus/_bridge.py): the
        # head query of consistent reads; coalesced (Log.head), so rare next to appends.
        info = await self._api(f"STREAM.INFO.{self.stream}", urgent=True)
        return dict(info["state"])

    async def head(self) -> int:
        """The stream's last sequence, read from the stream leader after this call began.

        Concurrent callers share queries, and a caller only accepts the answer of a query that was
        *sent* after it arrived (one in flight may have been answered before the caller's own write
        was acknowledged). A caller runs the query itself when none is in flight, so no background
        task is needed and no caller serves others beyond its own round. A caller bounds its wait by
        cancelling (a request's deadline): when the one running the query is cancelled, the others
        of its round join a later round.

        A caller sends at once while fewer than ``HEAD_MAX_IN_FLIGHT`` queries are in flight.
        Beyond that, one caller of the next round (its leader) waits for a query to end and then
        sends; the others of that round wait for their answer only (one wake-up each). A leader
        cancelled before it sent leaves the round to the others, who start a new one.
        """
        r = self._head_round()
        leading = False  # this caller is its round's leader
        while not r.done.is_set() or r.abandoned:
            if r.abandoned:
                r = self._head_round()  # a query sent later still satisfies this caller
                leading = False
                continue
            if r.leader and not leading:
                await r.done.wait()  # the round's leader sends its query
                continue
            if self._head_busy < HEAD_MAX_IN_FLIGHT:
                rr, self._head_next = self._head_next, None
                assert rr is r
                self._head_busy += 1
                try:
                    rr.value = int((await self.stream_state())["last_seq"])
                except Exception as e:  # noqa: BLE001 - handed to every waiter of the round
                    rr.error = e
                finally:
                    if rr.value is None and rr.error is None:
                        rr.abandoned = True
                    rr.done.set()
                    self._head_busy -= 1
                    ev, self._head_ended = self._head_ended, trio.Event()
                    ev.set()
                continue
            r.leader = leading = True
            try:
                await self._head_ended.wait()
            except BaseException:
                if r is self._head_next:  # not sent: the others of the round start a new one
                    self._head_next = None
                    r.abandoned = True
                    r.done.set()
                raise
        if r.error is not None:
            raise r.error
        assert r.value is not None
        return r.value

    def _head_round(self) -> _HeadRound:
        if self._head_next is None:
            self._head_next = _HeadRound()
        return self._head_next

    async def responds(self, *, timeout_s: float) -> bool:
        """Whether the stream answers a head query within ``timeout_s`` (for readiness)."""
        with trio.move_on_after(timeout_s):
            try:
                await self.head()
            except BusError:
                return False
            return True
        return False

    async def _stored_message(self, query: dict[str, Any]) -> dict[str, Any] | None:
        """One message as STREAM.MSG.GET answers it (from the stream leader), or None."""
        try:
            resp = await self._api(f"STREAM.MSG.GET.{self.stream}", query)
        except JetStreamError as e:
            if e.code == 404:
                return None
            raise
        return dict(resp["message"])

    async def last_message(self, subject: str) -> tuple[int, str, bytes] | None:
        """(seq, Msg-Id, data) of the subject's last message, from the stream leader, or None."""
        m = await self._stored_message({"last_by_subj": subject})
        if m is None:
            return None
        data = base64.b64decode(m.get("data", ""))
        return int(m["seq"]), _msg_id(m), data if self.encryption is None else self.encryption.decrypt(subject, data)

    async def message_at(self, seq: int) -> tuple[str, str] | None:
        """(subject, Msg-Id) of the message at ``seq``, or None when the stream no longer has it."""
        m = await self._stored_message({"seq": seq})
        return None if m is None else (str(m["subject"]), _msg_id(m))

    async def last_message_at(self, subject: str, seq: int) -> LogMessage | None:
        """The subject's last message with a sequence <= ``seq``, or None if it has none.

        A JetStream direct get (``multi_last`` + ``up_to_seq``, nats-server >= 2.11): one round trip
        whatever the subject's history. The server ends the answer with an end-of-batch status
        message, which the bridge drops (it delivers the first reply only). On a replicated stream
        any replica may answer a direct get: one lagging behind ``seq`` would answer with an older
        message (callers ask only for sequences their projection has already applied).
        """
        if seq <= 0:
            return None
        body = json.dumps({"multi_last": [subject], "up_to_seq": seq}).encode()
        reply = await self.bridge.request(f"$JS.API.DIRECT.GET.{self.stream}", body, timeout_s=5.0)
        status = reply.status
        if status == "404":
            return None
        headers = reply.headers or {}
        if status is not None or "Nats-Sequence" not in headers:
            raise BusError(f"direct get of {subject} up to {seq} failed: status {status}")
        return self._message(int(headers["Nats-Sequence"]), headers.get("Nats-Subject", subject), reply.data)

    async def message_and_previous(self, seq: int, *, timeout_s: float = 5.0) -> tuple[LogMessage, int | None] | None:
        """The message at ``seq`` (a direct get by sequence: no walk) and the sequence its append
        expected as its subject's last (``Nats-Expected-Last-Subject-Sequence``: the subject's previous
        message, 0 for none; None when the append set no expectation). None when ``seq`` is gone."""
        reply = await self.bridge.request(f"$JS.API.DIRECT.GET.{self.stream}", json.dumps({"seq": seq}).encode(),
                                          timeout_s=timeout_s)
        if reply.status == "404":
            return None
        m = self._direct_message(reply, "")
        prev = (reply.headers or {}).get("Nats-Expected-Last-Subject-Sequence")
        return m, int(prev) if prev is not None and prev.isdigit() else None

    async def subject_messages(self, subject: str, start_seq: int, *, limit: int,
                               timeout_s: float = 5.0) -> tuple[list[LogMessage], int]:
        """Up to ``limit`` messages of one subject from ``start_seq`` on, in order, and how many more
        the subject has after the last one returned: one JetStream batch direct get
        (``next_by_subj`` + ``batch``, nats-server >= 2.11), so an object's history costs a read of
        its own messages, never a scan of the log. The server walks its per-subject index."""
        body = json.dumps({"next_by_subj": subject, "seq": max(1, start_seq), "batch": limit,
                           "max_bytes": 64 * 1024 * 1024}).encode()
        replies = await self._direct_batch(body, limit, timeout_s)
        out = [self._direct_message(r, subject) for r in replies]
        pending = int((replies[-1].headers or {}).get("Nats-Num-Pending", 0)) if replies else 0
        return out, pending

    async def last_messages_at(self, subjects: list[str], seq: int, *, timeout_s: float = 5.0) -> list[LogMessage]:
        """The last message with a sequence <= ``seq`` of each of ``subjects`` (literal subjects or
        wildcards matching at most 1,024 subjects; the server answers 413 beyond), in stream order;
        subjects with none are absent. One batch direct get (``multi_last`` + ``up_to_seq``,
        nats-server >= 2.11): the point-in-time read of many objects at once."""
        if seq <= 0 or not subjects:
            return []
        body = json.dumps({"multi_last": subjects, "up_to_seq": seq}).encode()
        return [self._direct_message(r, "") for r in await self._direct_batch(body, 1025, timeout_s)]

    async def last_messages_between(self, filter_subject: str, first: int, last: int, *,
                                    batch: int = RANGE_BATCH, in_flight: int = RANGE_PULLS) -> dict[str, LogMessage]:
        """The last message of each subject matching ``filter_subject`` among sequences
        ``first..last``, by subject (their ``msg_id`` not read): the range read forward by an ordered reader (a filtered
        consumer from ``first``), which stops at the first message past ``last``. Unlike
        ``last_messages_at`` the server never walks a subject's history, so the cost is the range's
        messages of the filter, whatever the number of subjects. Measured against batch direct gets
        of the same range (``next_by_subj`` + ``batch``): the same client CPU, a third of the
        server's."""
        if last < first:
            return {}
        reader = await open_reader(self.bridge, self.stream, filter_subject, max(1, first),
                                   batch=max(1, min(batch, last - first + 1)), until=last, in_flight=in_flight,
                                   decrypt=None if self.encryption is None else self.encryption.decrypt)
        try:
            return await reader.last_per_subject()
        finally:
            reader.close_soon()

    async def messages_by_seq(self, filter_subject: str, seqs: set[int], *, batch: int = RANGE_BATCH,
                              in_flight: int = RANGE_PULLS) -> dict[int, bytes]:
        """The payloads of the messages at ``seqs`` (all matching ``filter_subject``; decrypted), by
        sequence: the range from the
        lowest to the highest read forward by an ordered reader (a filtered consumer), which keeps
        only those and stops at the highest. A sequence the stream no longer holds is absent. The
        caller knows the sequences (projections/_revindex.py) and reads a dense set this way (a
        range's messages cost about a tenth of a direct get each)."""
        if not seqs:
            return {}
        first, last = min(seqs), max(seqs)
        reader = await open_reader(self.bridge, self.stream, filter_subject, first,
                                   batch=max(1, min(batch, last - first + 1)), until=last, wanted=seqs,
                                   in_flight=in_flight,
                                   decrypt=None if self.encryption is None else self.encryption.decrypt)
        try:
            return await reader.wanted_messages()
        finally:
            reader.close_soon()

    async def _direct_batch(self, body: bytes, max_msgs: int, timeout_s: float) -> list[Reply]:
        """The messages of one batch direct get; [] for 404 (nothing matched; nats-server 2.15 also
        answers 404 to an ``up_to_seq`` beyond the last sequence); BusError for any other status."""
        replies, end = await self.bridge.request_many(f"$JS.API.DIRECT.GET.{self.stream}", body,
                                                      max_msgs=max_msgs, timeout_s=timeout_s)
        if end is not None and end.status not in ("204", "404"):
            desc = (end.headers or {}).get("Description", "")
            raise BusError(f"direct get failed: status {end.status} {desc}".rstrip())
        return replies

    def _direct_message(self, reply: Reply, subject: str) -> LogMessage:
        headers = reply.headers or {}
        if "Nats-Sequence" not in headers:
            raise BusError(f"unexpected direct get reply: status {reply.status}")
        return self._message(int(headers["Nats-Sequence"]), headers.get("Nats-Subject", subject), reply.data,
                             headers.get("Nats-Msg-Id", ""), headers.get("Nats-Time-Stamp", ""))

    def _message(self, seq: int, subject: str, data: bytes, msg_id: str = "", stored_at: str = "") -> LogMessage:
        """A message read back, decrypted when encryption at rest is configured."""
        if self.encryption is not None:
            data = self.encryption.decrypt(subject, data)
        return LogMessage(seq, subject, data, msg_id, stored_at)

    async def subjects(self, filter_subject: str, *, timeout_s: float = 10.0) -> dict[str, int]:
        """Every subject of the stream matching ``filter_subject`` with its message count (STREAM.INFO
        ``subjects_filter``, which the server pages by ``offset``)."""
        out: dict[str, int] = {}
        deadline = trio.current_time() + timeout_s
        while True:
            info = await self._api(f"STREAM.INFO.{self.stream}",
                                   {"subjects_filter": filter_subject, "offset": len(out)},
                                   timeout_s=max(0.1, deadline - trio.current_time()))
            page = info.get("state", {}).get("subjects") or {}
            out.update(page)
            total = int(info.get("total", 0) or 0)
            if not page or len(out) >= total:
                return out

    async def seq_at_time(self, when: str) -> int | None:
        """The sequence of the first message stored at or after ``when`` (RFC 3339), or None."""
        body = json.dumps({"start_time": when, "batch": 1}).encode()
        replies = await self._direct_batch(body, 1, 5.0)
        return int((replies[0].headers or {})["Nats-Sequence"]) if replies else None

    # ---- retention ------------------------------------------------------------------------------

    @property
    def compaction_subject(self) -> str:
        """Where the compaction point is recorded: ``<prefix>._sys.compaction``, one JSON message
        ``{"seq": C, "tombstones": H}`` per raise, each appended with CAS on the last one (both only
        ever grow). H: no tombstone above it was purged (H <= C)."""
        return system_subject(self.prefix, "compaction")

    async def compaction_point(self) -> tuple[int, int]:
        """(the compaction point C, the sequence of its record): every version >= C is retained whole;
        (0, 0) when the log was never compacted. Read from the stream leader."""
        point, _, at = await self.compaction_record()
        return point, at

    async def compaction_record(self) -> tuple[int, int, int]:
        """(C, H, the record's sequence): H, the highest sequence of a purged tombstone, bounds where
        purging changed a fold of the log (a purge never removes any other last revision of an
        object); a record without it (written before it was kept) says H = C. (0, 0, 0): never compacted."""
        m = await self.last_message(self.compaction_subject)
        if m is None:
            return 0, 0, 0
        body = json.loads(m[2])
        point = int(body["seq"])
        return point, int(body.get("tombstones", point)), m[0]

    async def raise_compaction_point(self, point: int, *, record_seq: int, tombstones: int = 0) -> int:
        """Record ``point`` as the compaction point and ``tombstones`` as H, if the record is still at
        ``record_seq`` (CAS: :class:`WrongLastSequence` when another gateway moved it first). Returns
        the record's seq."""
        return await self.append(self.compaction_subject, json.dumps({"seq": point, "tombstones": tombstones}).encode(),
                                 msg_id=f"compaction-{point}-{tombstones}-{record_seq}", expected_seq=record_seq)

    async def purge_below(self, subject: str, seq: int) -> int:
        """Remove the messages of one subject with sequences < ``seq`` (JetStream purge with a
        ``filter`` and ``seq``); the number removed."""
        resp = await self._api(f"STREAM.PURGE.{self.stream}", {"filter": subject, "seq": seq})
        return int(resp.get("purged", 0))

    async def open_reader(self, filter_subject: str, start_seq: int, *, batch: int = 1024) -> LogReader:
        return await open_reader(self.bridge, self.stream, filter_subject, start_seq, batch=batch,
                                 decrypt=None if self.encryption is None else self.encryption.decrypt)


def _msg_id(message: dict[str, Any]) -> str:
    """The Nats-Msg-Id header of a message as STREAM.MSG.GET returns it ("" when none)."""
    for line in base64.b64decode(message.get("hdrs") or "").decode(errors="replace").split("\r\n"):
        if line.lower().startswith("nats-msg-id:"):
            return line.split(":", 1)[1].strip()
    return ""


DEFAULT_STREAM = StreamConfig()


async def open_log(bridge: Bridge, config: StreamConfig = DEFAULT_STREAM, **kw: Any) -> Log:
    log = Log(bridge, config, **kw)
    await log.ensure_stream()
    return log
