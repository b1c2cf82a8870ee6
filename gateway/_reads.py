"""GET, LIST and WATCH answered from the projection, with the resourceVersion rules.

The resourceVersion rules for reads live here and only here (ARCHITECTURE.md, decision 7):

| resourceVersion | resourceVersionMatch | served                                                    |
| --------------- | -------------------- | --------------------------------------------------------- |
| unset           | unset                | consistent: wait until the projection applied the head    |
| "0"             | unset / NotOlderThan | from memory at once                                       |
| N               | unset, no limit      | not older than N: wait (bounded) until applied >= N       |
| N               | NotOlderThan         | the same                                                  |
| N               | Exact (or unset with limit, the legacy rule) | exactly N, from the log's history |
| N (GET)         | Exact (jetkube only) | the object as it was at N, from the log                   |
| unset           | set                  | 422 Invalid                                               |
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import trio

from actors import BadRequest, Cause, Converter, Invalid, NotFound, TooManyRequests
from bus import Key
from kinds import ResourceDef
from kinds._conversion import convert
from kinds._crd import apply_defaults
from kinds._subresources import to_scale
from projections import (
    BOOKMARK,
    Change,
    ContinueExpired,
    ContinueNeedsHistory,
    ListResult,
    Projection,
    TooOldResourceVersion,
    WatchBatches,
    WatchFilter,
    decode_continue,
    parse_int64,
)

from ._codec import query_bool, query_int
from ._status import ReadTimeout, status_for

_enc = msgspec.json.Encoder()


@dataclass(frozen=True)
class ListOptions:
    filter: WatchFilter
    resource_version: str | None
    match: str | None
    limit: int
    continue_token: str
    watch: bool
    bookmarks: bool
    send_initial: bool | None
    timeout_s: int | None

    @property
    def exact(self) -> bool:
        """A LIST of exactly ``resource_version``: ``resourceVersionMatch=Exact``, or a version with a
        limit and no match (kube's legacy rule)."""
        rv = self.resource_version
        return self.match == "Exact" or (rv not in (None, "0") and self.match is None and self.limit > 0)


def _invalid_list(message: str, field: str) -> Invalid:
    return Invalid(f"ListOptions.meta.k8s.io \"\" is invalid: {field}: {message}",
                   kind="ListOptions", group="meta.k8s.io", causes=(Cause("FieldValueForbidden", message, field),))


def parse_list_options(q: Mapping[str, str], rdef: ResourceDef, namespace: str | None,
                       *, force_watch: bool = False) -> ListOptions:
    flt = WatchFilter.for_request(rdef, namespace, q.get("labelSelector", ""), q.get("fieldSelector", ""))
    rv = resource_version_param(q)
    match = q.get("resourceVersionMatch") or None
    if match is not None and match not in ("Exact", "NotOlderThan"):
        raise _invalid_list(f'Unsupported value: "{match}": supported values: "Exact", "NotOlderThan"',
                            "resourceVersionMatch")
    watch = force_watch or query_bool(q.get("watch"))
    send_initial = None if "sendInitialEvents" not in q else query_bool(q.get("sendInitialEvents"))
    if match is not None and rv is None and not (watch and send_initial):
        raise _invalid_list("Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
                            "resourceVersionMatch")
    if match == "Exact" and rv == "0":
        raise _invalid_list('Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0"',
                            "resourceVersionMatch")
    if match is not None and q.get("continue"):
        raise _invalid_list("Forbidden: resourceVersionMatch is forbidden when continue is provided",
                            "resourceVersionMatch")
    if send_initial and (not watch or match != "NotOlderThan"):
        raise _invalid_list("Forbidden: sendInitialEvents is forbidden for watch unless resourceVersionMatch "
                            "is set to NotOlderThan", "sendInitialEvents")
    limit = query_int("limit", q.get("limit")) or 0
    return ListOptions(
        filter=flt,
        resource_version=rv, match=match, limit=limit, continue_token=q.get("continue", ""), watch=watch,
        bookmarks=query_bool(q.get("allowWatchBookmarks")), send_initial=send_initial,
        timeout_s=query_int("timeoutSeconds", q.get("timeoutSeconds")),
    )


def resource_version_param(q: Mapping[str, str]) -> str | None:
    """The ``resourceVersion`` query parameter: None when absent or empty, else a decimal string."""
    rv = q.get("resourceVersion") or None
    if rv is not None and (not rv[0].isdigit() or parse_int64(rv) is None):
        raise BadRequest(f"invalid resourceVersion {rv!r}: resourceVersions are decimal integers")
    return rv


async def read_at(projection: Projection, rv: str | None) -> None:
    """Wait as the resourceVersion rules say for a GET or a not-older-than LIST."""
    if rv is None:
        await projection.consistent()
    elif rv != "0":
        await projection.wait_for(int(rv))


async def get_object(projection: Projection, key: Key, rdef: ResourceDef, rv: str | None,
                     match: str | None = None) -> bytes:
    """A GET. ``resourceVersionMatch=Exact`` with a resourceVersion N (a jetkube extension: kube's
    GetOptions has no match) answers the object as it was at N, from the log."""
    if match == "Exact" and rv not in (None, "0"):
        entry = await projection.get_at(key, int(rv))  # type: ignore[arg-type]
    else:
        await read_at(projection, rv)
        entry = projection.get(key)
    if entry is None:
        raise NotFound(f'{rdef.plural}{"." + rdef.group if rdef.group else ""} "{key.name}" not found',
                       name=key.name, group=rdef.group, kind=rdef.plural)
    return entry.data


def rewritten(storage: ResourceDef, served: ResourceDef) -> bool:
    """Whether stored objects are not served as stored: another version, or a custom resource whose
    schema has defaults (applied on read, as kube's decoder does)."""
    return storage is not served or served.read_defaults


def served_object(data: bytes, storage: ResourceDef, served: ResourceDef) -> bytes:
    """A stored object in the version the request asked for (kinds/_conversion.py), defaulted from
    a custom resource's schema."""
    if not rewritten(storage, served):
        return data
    obj = convert(msgspec.json.decode(data), served)
    if served.read_defaults and served.schema is not None and isinstance(obj, dict):
        apply_defaults(obj, served.schema)
    return msgspec.json.encode(obj)


async def served_objects(converter: Converter, items: list[bytes], storage: ResourceDef, served: ResourceDef,
                         *, is_list: bool = True) -> list[bytes]:
    """Stored objects in the version the request asked for: a GET's object, a LIST page or a watch
    batch, through a CRD's conversion webhook in one review (actors/_crd_conversion.py)."""
    if not converter.needed(storage, served):
        return [served_object(i, storage, served) for i in items] if rewritten(storage, served) else items
    decoded = [msgspec.json.decode(i) for i in items]
    objs = await converter.many(decoded, served, is_list=is_list)
    if served.read_defaults and served.schema is not None:
        for o in objs:
            apply_defaults(o, served.schema)
        return [msgspec.json.encode(o) for o in objs]
    # Objects stored in the version asked for come back as they are: their stored bytes.
    return [item if o is d else msgspec.json.encode(o) for item, o, d in zip(items, objs, decoded)]


class _Shown:
    """A change with its object already in the served version (a watch batch converted by a webhook)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def object(self, event_type: str) -> bytes:
        return self.data

    def line(self, event_type: str) -> bytes:
        return b'{"type":"%s","object":%s}\n' % (event_type.encode(), self.data)


async def served_list(converter: Converter, result: ListResult, storage: ResourceDef,
                      served: ResourceDef) -> ListResult:
    """A LIST page in the served version (a webhook CRD's page in one review, as kube sends it)."""
    if not rewritten(storage, served) and not converter.needed(storage, served):
        return result
    return dataclasses.replace(result, items=await served_objects(converter, result.items, storage, served))


def served_line(storage: ResourceDef, served: ResourceDef) -> Callable[[str, Change], bytes]:
    """The watch event encoder for a version served by conversion."""
    def encode(event_type: str, change: Change) -> bytes:
        return b'{"type":"%s","object":%s}\n' % (event_type.encode(),
                                                  served_object(change.object(event_type), storage, served))

    return encode


async def _converted_batch(converter: Converter, batch: list[tuple[str, Any]], storage: ResourceDef,
                           served: ResourceDef) -> list[tuple[str, Any]]:
    objects = [i for i, (t, _) in enumerate(batch) if t not in _NOT_OBJECTS]
    if not objects:
        return batch
    data = await served_objects(converter, [batch[i][1].object(batch[i][0]) for i in objects], storage, served,
                                is_list=False)
    out = list(batch)
    for i, d in zip(objects, data):
        out[i] = (batch[i][0], _Shown(d))
    return out


_NOT_OBJECTS = frozenset({BOOKMARK, "BOOKMARK_END", "OVERFLOW"})


def scale_of(rdef: ResourceDef, data: bytes) -> bytes:
    """GET of ``/scale``: the object's ``autoscaling/v1`` Scale."""
    obj = msgspec.json.decode(data)
    return msgspec.json.encode(to_scale(rdef, obj, str(obj["metadata"].get("resourceVersion", ""))))


async def list_objects(projection: Projection, tenant: str, rdef: ResourceDef, opts: ListOptions) -> ListResult:
    rv = opts.resource_version
    exact = opts.exact
    if opts.continue_token:
        seq, start = decode_continue(opts.continue_token)
        try:
            return projection.list(tenant, rdef.group, rdef.plural, opts.filter, limit=opts.limit,
                                   continue_token=opts.continue_token)
        except ContinueNeedsHistory:
            try:
                return await projection.list_at(tenant, rdef.group, rdef.plural, opts.filter, seq,
                                                limit=opts.limit, start_after=start)
            except TooOldResourceVersion:
                raise ContinueExpired() from None
    if exact and rv is not None:
        want = int(rv)
        if want == projection.store.applied:
            return projection.list(tenant, rdef.group, rdef.plural, opts.filter, limit=opts.limit)
        return await projection.list_at(tenant, rdef.group, rdef.plural, opts.filter, want, limit=opts.limit)
    await read_at(projection, rv)
    return projection.list(tenant, rdef.group, rdef.plural, opts.filter, limit=opts.limit)


def list_body(rdef: ResourceDef, result: ListResult) -> bytes:
    meta = b'"resourceVersion":"%d"' % result.resource_version
    if result.continue_token:
        meta += b',"continue":%s' % _enc.encode(result.continue_token)
        if result.remaining is not None:
            meta += b',"remainingItemCount":%d' % result.remaining
    # One join of the stored documents and nothing else: no %-formatting of a multi-MB body.
    head = b'{"kind":"%s","apiVersion":"%s","metadata":{%s},"items":[' % (
        rdef.list_kind.encode(), rdef.api_version.encode(), meta)
    items = result.items
    parts = [head]
    for i, item in enumerate(items):
        if i:
            parts.append(b",")
        parts.append(item)
    parts.append(b"]}")
    return b"".join(parts)


def _bookmark(rdef: ResourceDef, seq: int, end: bool) -> bytes:
    ann = ',"annotations":{"k8s.io/initial-events-end":"true"}' if end else ""
    return b'{"type":"BOOKMARK","object":{"kind":"%s","apiVersion":"%s","metadata":{"resourceVersion":"%d"%s}}}\n' % (
        rdef.kind.encode(), rdef.api_version.encode(), seq, ann.encode())


def error_event(exc: BaseException) -> bytes:
    _, body, _ = status_for(exc)
    return b'{"type":"ERROR","object":%s}\n' % body


def json_line(event_type: str, change: Change) -> bytes:
    """A watch event as JSON, encoded once per change and type for every watcher."""
    return change.line(event_type)


def watch_lines(projection: Projection, tenant: str, rdef: ResourceDef, opts: ListOptions,
                encode: Callable[[str, Change], bytes] = json_line,
                storage: ResourceDef | None = None,
                converter: Converter | None = None) -> WatchLines:
    """The watch stream as newline-terminated events (``encode`` formats object events; bookmarks
    and errors are always JSON). Errors after the stream started become an ERROR event and end it.
    ``storage``: where ``rdef``'s objects are stored, when it is served by conversion; with a
    ``converter`` that needs a webhook, each batch's objects are converted in one review (this
    watcher waits for it; others do not, and a watcher that falls behind meanwhile is cut off as
    any slow watcher is)."""
    return WatchLines(projection, tenant, rdef, opts, encode, storage or rdef, converter)


class WatchLines:
    """:func:`watch_lines`: an async iterator of chunks (each a batch of events, joined), and
    :meth:`ready`, the next chunk made without waiting when its events are already queued."""

    __slots__ = ("_gen", "_how", "done")

    def __init__(self, projection: Projection, tenant: str, rdef: ResourceDef, opts: ListOptions,
                 encode: Callable[[str, Change], bytes], stored: ResourceDef, converter: Converter | None) -> None:
        # (the generator holds ``_how``, not this object: no reference cycle, so a stream dropped
        # without being closed is finalized at once, as an async generator is)
        self._how = _LinesOf(rdef, opts, encode, stored, converter)
        self._gen = _watch_chunks(self._how, projection, tenant)
        self.done = False  # an ERROR event from ready() ended the stream

    def __aiter__(self) -> WatchLines:
        return self

    def __anext__(self) -> Awaitable[bytes]:
        return _ended() if self.done else self._gen.__anext__()

    async def aclose(self) -> None:
        await self._gen.aclose()

    def ready(self) -> bytes | None:
        """The next chunk if its events are already queued (``WatchBatches.ready``), made here without
        a checkpoint; None when it would have to wait (or be converted by a webhook): then iterate.
        Call only between two chunks, not while one is awaited."""
        events = self._open()
        batch = events.ready() if events is not None else None
        if batch is None:
            return None
        try:
            chunk, last = self._how.chunk(batch)
        except Exception as e:  # noqa: BLE001 - as in _watch_chunks: reported in-band, and the stream ends
            chunk, last = error_event(e), True
        self.done = last
        return chunk or None  # (nothing to send for these events: the caller waits for the next)

    def _open(self) -> WatchBatches | None:
        """The open watch, while the stream goes on and its chunks need no webhook conversion."""
        events = self._how.events
        return None if events is None or self.done or self._how.webhook else events

    def queued(self) -> bool:
        """Whether :meth:`ready` may have a chunk (False: it has none, for certain)."""
        events = self._open()
        return events is not None and events.queued()

    def live(self) -> bool:
        """Whether the next chunk's one wait is for the watcher's queue (``WatchBatches.live``, and no
        webhook conversion): a wait that :meth:`stop` ends. Call only between two chunks."""
        events = self._open()
        return events is not None and events.live()

    def stop(self) -> None:
        """End a wait for the next chunk, if :meth:`live` (the stream then ends: ``WatchBatches.stop``)."""
        events = self._how.events
        if events is not None:
            events.stop()


async def _ended() -> bytes:
    raise StopAsyncIteration


class _LinesOf:
    """How a watch's batches become its chunks, and its open watch (``events``) while there is one."""

    __slots__ = ("converter", "encode", "events", "opts", "rdef", "stored", "webhook")

    def __init__(self, rdef: ResourceDef, opts: ListOptions, encode: Callable[[str, Change], bytes],
                 stored: ResourceDef, converter: Converter | None) -> None:
        self.rdef = rdef
        self.opts = opts
        self.encode = encode
        self.stored = stored
        self.converter = converter
        #: Each batch goes through a CRD's conversion webhook (fixed for the watch: both defs are frozen).
        self.webhook = converter is not None and converter.needed(stored, rdef)
        self.events: WatchBatches | None = None

    def chunk(self, batch: list[tuple[str, Any]]) -> tuple[bytes, bool]:
        """A batch's events as one chunk, and whether it ends the stream (the watcher was cut off)."""
        rdef = self.rdef
        opts = self.opts
        encode = self.encode
        out: list[bytes] = []
        for t, item in batch:
            if t == BOOKMARK:
                out.append(_bookmark(rdef, item, False))
            elif t == "BOOKMARK_END":
                if opts.bookmarks or opts.send_initial:
                    out.append(_bookmark(rdef, item, True))
            elif t == "OVERFLOW":
                out.append(error_event(TooManyRequests(
                    "the watcher fell too far behind and was closed; resume from the last "
                    "resourceVersion received", retry_after_s=1)))
                return b"".join(out), True
            else:
                out.append(encode(t, item))
        return b"".join(out), False


async def _watch_chunks(how: _LinesOf, projection: Projection, tenant: str) -> AsyncIterator[bytes]:
    opts = how.opts
    stored = how.stored
    rv = opts.resource_version
    start: int | None
    if rv is None or opts.send_initial:
        await read_at(projection, rv)
        start = None
    else:
        start = int(rv) or None
    try:
        async with projection.watch(tenant, stored.group, stored.plural, opts.filter, resource_version=start,
                                    send_initial=bool(opts.send_initial), bookmarks=opts.bookmarks) as events:
            how.events = events
            async for batch in events:
                if how.webhook:
                    assert how.converter is not None
                    batch = await _converted_batch(how.converter, batch, stored, how.rdef)
                chunk, last = how.chunk(batch)
                if chunk:
                    yield chunk
                if last:
                    return
    except Exception as e:  # noqa: BLE001 - reported in-band, as the apiserver does once streaming
        yield error_event(e)
    finally:
        how.events = None


class read_deadline:
    """Bound a get or list (its head query, its wait for the projection) by the request deadline:
    ``ReadTimeout`` when it passes. ``trio.fail_after`` in a class rather than two generator-based
    context managers (``asynccontextmanager`` around ``fail_after``): every read enters one."""

    __slots__ = ("scope", "timeout_s")

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.scope = trio.move_on_after(timeout_s)

    async def __aenter__(self) -> None:
        self.scope.__enter__()

    async def __aexit__(self, *exc: object) -> bool:
        handled = self.scope.__exit__(*exc)
        if self.scope.cancelled_caught:
            raise ReadTimeout(self.timeout_s) from None
        return handled
