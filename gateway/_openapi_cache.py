"""The OpenAPI documents of each served set of kinds, built on first use, off the event loop.

Every tenant without CRDs is served the built-in set (one entry for all of them); a tenant with
CRDs has its own set (``Registry.for_tenant``), whose entry is replaced when the set changes (the
registry's defs are swapped whole). Building is CPU work (the v2 protobuf alone is most of a
second on a loaded 2-core machine): each part is built when first asked for, in a worker thread,
one build at a time, so that the event loop keeps serving every other request meanwhile. A
tenant's v3 documents reuse the built-in set's for every group-version without custom kinds (a
v3 document depends on its own group-version only); its v2 document is whole, so it is built
whole. The kinds served across tenants (``/clusters/*/``: list and watch only) are a set of their
own, whose v3 documents likewise reuse those of its built-in kinds. At most ``size`` sets are kept, the least recently used dropped (rebuilt when asked for).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import msgspec
import trio

from kinds import Registry, ResourceDef

from . import _openapi as openapi


class _Entry:
    """The documents of one served set; each part None until built."""

    __slots__ = ("defs", "docs", "index", "v2_json", "v2_pb")

    def __init__(self, defs: tuple[ResourceDef, ...]) -> None:
        self.defs = defs  # kept: the cache key is its id, valid while it is alive
        self.docs: dict[str, bytes] | None = None
        self.index: bytes | None = None
        self.v2_json: bytes | None = None
        self.v2_pb: bytes | None = None


def _served(defs: tuple[ResourceDef, ...]) -> list[tuple[ResourceDef, Any]]:
    return [(d, d.schema if d.crd else None) for d in defs if d.stored]


def build_v3(defs: tuple[ResourceDef, ...], base: dict[str, bytes] | None) -> tuple[dict[str, bytes], bytes]:
    """(v3 documents by group-version path, the v3 index JSON). With ``base`` (the built-in set's
    documents), only the group-versions that hold custom kinds are built. Pure; any thread."""
    if base is None:
        docs = openapi.v3_documents(_served(defs))
    else:
        custom = {(d.group, d.version) for d in defs if d.crd}
        docs = {**base, **openapi.v3_documents([s for s in _served(defs) if (s[0].group, s[0].version) in custom])}
    # The index's serverRelativeURLs stay "/openapi/v3/...", as kube's: client-go joins them to
    # its base path (``/clusters/<tenant>`` for a tenant's context), as it does every request path.
    return docs, msgspec.json.encode(openapi.v3_index_for(docs))


def build_v2_json(defs: tuple[ResourceDef, ...]) -> bytes:
    return msgspec.json.encode(openapi.v2_document(_served(defs)))


def build_v2_protobuf(v2_json: bytes) -> bytes:
    return openapi.encode_v2_document(msgspec.json.decode(v2_json))


class OpenAPICache:
    def __init__(self, size: int = 16) -> None:
        self._entries: OrderedDict[int, _Entry] = OrderedDict()  # id(defs) -> its documents
        self._size = size
        self._building = trio.Lock()  # one build at a time (each is CPU-bound: two would only share the GIL)

    def _entry(self, defs: tuple[ResourceDef, ...]) -> _Entry:
        e = self._entries.get(id(defs))
        if e is None or e.defs is not defs:
            e = self._entries[id(defs)] = _Entry(defs)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(id(defs))
        return e

    async def v3(self, registry: Registry) -> tuple[dict[str, bytes], bytes]:
        """(v3 documents by group-version path, the v3 index JSON) of ``registry``'s kinds.
        Cancellation leaves the part unbuilt (the next request builds it)."""
        return await self._v3(registry.defs, registry.builtin)

    async def _v3(self, defs: tuple[ResourceDef, ...], builtin: tuple[ResourceDef, ...]) -> tuple[
            dict[str, bytes], bytes]:
        """``v3`` of a set whose built-in kinds are ``builtin`` (a tuple of ``defs``' first ones, or
        ``defs`` itself): the built-in set's documents are built first, then reused."""
        e = self._entry(defs)
        if e.docs is None or e.index is None:
            base = None if defs is builtin else (await self._v3(builtin, builtin))[0]
            async with self._building:
                if e.docs is None or e.index is None:
                    docs, index = await trio.to_thread.run_sync(build_v3, e.defs, base)
                    e.docs, e.index = docs, index
        assert e.docs is not None and e.index is not None
        return e.docs, e.index

    async def v2(self, registry: Registry, *, protobuf: bool) -> bytes:
        """``registry``'s swagger 2.0 document, JSON or gnostic protobuf."""
        e = self._entry(registry.defs)
        if e.v2_json is None or (protobuf and e.v2_pb is None):
            async with self._building:
                if e.v2_json is None:
                    e.v2_json = await trio.to_thread.run_sync(build_v2_json, e.defs)
                if protobuf and e.v2_pb is None:
                    e.v2_pb = await trio.to_thread.run_sync(build_v2_protobuf, e.v2_json)
        out = e.v2_pb if protobuf else e.v2_json
        assert out is not None
        return out
