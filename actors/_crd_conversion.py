"""Conversion of stored objects to and from the version a request names, webhooks included.

Every reader and writer of a kind served by conversion goes through :class:`Converter`: for a
kind whose CRD converts by ``Webhook`` it POSTs one ``ConversionReview`` for all the objects of
a call that are not yet in the wanted version (a GET's object, a LIST page, a watch batch, a
write's body or answer), over HTTPS trusting the CRD's ``caBundle`` (the client of
``actors._admission_webhooks``), and checks the answer as kube does (kinds/_crd_conversion.py);
every other kind converts in process (kinds/_conversion.py).

Bounds: a call lasts at most 30 s (kube's conversion webhook timeout), and at most
``MAX_IN_FLIGHT_PER_WEBHOOK`` calls to one webhook are in flight per process; a call waits for
its own answer only, so a slow webhook delays the requests (and watchers) of its own kind and
nothing else. A failure is kube's ``conversion webhook for <g/v, Kind=K> failed: ...``, a 500
Status without a reason (kube's apiserver answers conversion errors as unknown errors).
Cancellation: an abandoned call leaves nothing behind (the connection goes back to httpx).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import httpx
import msgspec
import trio

from kinds import Registry, ResourceDef
from kinds._conversion import convert
from kinds._crd_conversion import (
    TIMEOUT_S,
    ConversionFailed,
    converted_from_review,
    gvk,
    pending,
    review_request,
)
from kinds._errors import ApiError
from kinds._fieldpath import VersionView

from ._admission_webhooks import MAX_IN_FLIGHT_PER_WEBHOOK, tls_client
from ._apply import apply_type

_json = msgspec.json.Encoder()
T = TypeVar("T")


class ConversionError(ApiError):
    """A conversion webhook that failed: kube answers 500 with no reason (an unknown error)."""

    code, reason = 500, ""


class Converter:
    """Converts objects of any kind to a served version; one per gateway or resource actor."""

    def __init__(self, timeout_s: float = TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._limits: dict[str, trio.Semaphore] = {}
        #: Reviews sent and failed, per CRD (the webhook's URL).
        self.calls: dict[str, int] = {}
        self.failures: dict[str, int] = {}

    @staticmethod
    def needed(storage: ResourceDef, served: ResourceDef) -> bool:
        """Whether objects stored for ``storage`` may need a webhook to be shown as ``served`` (a
        webhook CRD's objects may be stored in an older storage version, so even its storage
        version's reads are checked)."""
        return served.conversion is not None or storage.conversion is not None

    async def one(self, obj: dict[str, Any], to: ResourceDef) -> dict[str, Any]:
        """``obj`` in ``to``'s version (``obj`` itself when it already is)."""
        return (await self.many([obj], to, is_list=False))[0]

    async def many(self, objs: Sequence[dict[str, Any]], to: ResourceDef, *, is_list: bool = True,
                   source: str = "") -> list[dict[str, Any]]:
        """``objs`` in ``to``'s version, in order: for a webhook CRD one review for all those not in
        it already (none: no call). ``source``: the GVK kube's messages name (the input's)."""
        hook = to.conversion
        if hook is None:
            return [convert(o, to) for o in objs]
        desired = to.api_version
        todo = pending(objs, desired)
        if not todo:
            return list(objs)
        originals = [objs[i] for i in todo]
        if not source:
            first = originals[0]
            kind = str(first.get("kind") or to.kind)
            source = gvk(str(first.get("apiVersion") or ""), f"{kind}List" if is_list else kind)
        converted = await self._review(hook, originals, desired, source, is_list)
        out = list(objs)
        for i, c in zip(todo, converted):
            out[i] = c
        return out

    async def with_manager_views(self, live: dict[str, Any] | None, view: ResourceDef, registry: Registry,
                                 run: Callable[[dict[str, VersionView]], T]) -> T:
        """``run(views)``, ``views`` showing the object in the apiVersion of each manager of
        ``live`` that set its fields through another served version of the kind (server-side
        apply's ownership across versions, as kube's version converter does). A webhook version
        is shown in two passes: ``run`` first sees the objects unconverted while the ones it
        compares are noted, those are converted (one review per version), then ``run`` again
        with them; ``run`` must be pure."""
        entries = ((live or {}).get("metadata") or {}).get("managedFields") or ()
        versions = {str(e.get("apiVersion") or "") for e in entries if isinstance(e, dict)} - {view.api_version}
        sync: dict[str, VersionView] = {}
        hooked: dict[str, ResourceDef] = {}
        for v in sorted(versions):
            group, _, version = v.rpartition("/")
            d = registry.get(group, version, view.plural) if group == view.group else None
            if d is None:
                continue  # a version no longer served: compared in the written one
            if d.conversion is None:
                sync[v] = (lambda o, d=d: convert(o, d), apply_type(d))
            else:
                hooked[v] = d
        if not hooked:
            return run(sync)
        seen: dict[bytes, dict[str, Any]] = {}

        def note(o: Any) -> Any:
            if isinstance(o, dict):
                seen.setdefault(_json.encode(o), o)
            return o

        run({**sync, **{v: (note, apply_type(d)) for v, d in hooked.items()}})
        keys = list(seen)
        views = dict(sync)
        for v, d in hooked.items():
            got = await self.many([seen[k] for k in keys], d)
            cache = dict(zip(keys, got))
            views[v] = (lambda o, c=cache: c.get(_json.encode(o), o), apply_type(d))
        return run(views)

    async def _review(self, hook: dict[str, Any], originals: list[dict[str, Any]], desired: str, source: str,
                      is_list: bool) -> list[dict[str, Any]]:
        url = str(hook.get("url") or "")
        self.calls[url] = self.calls.get(url, 0) + 1
        try:
            return await self._call(hook, url, originals, desired, source, is_list)
        except ConversionFailed as e:
            self.failures[url] = self.failures.get(url, 0) + 1
            raise ConversionError(str(e)) from None

    async def _call(self, hook: dict[str, Any], url: str, originals: list[dict[str, Any]], desired: str,
                    source: str, is_list: bool) -> list[dict[str, Any]]:
        failed = f"conversion webhook for {source} failed"
        version = str(hook.get("reviewVersion") or "")
        if not version:
            raise ConversionFailed("no supported conversion review versions")
        # client-go's webhook client names its timeout in the query, as kube's requests show it.
        target = f"{url}{'&' if '?' in url else '?'}timeout={int(self.timeout_s)}s"
        if not url.startswith("https://"):
            raise ConversionFailed(f'{failed}: Post "{target}": unsupported protocol scheme')
        uid = str(uuid.uuid4())
        body = _json.encode(review_request(originals, desired, uid, version))
        client = self._client(str(hook.get("caBundle") or ""), failed)
        limit = self._limits.setdefault(url, trio.Semaphore(MAX_IN_FLIGHT_PER_WEBHOOK))
        r: httpx.Response | None = None
        with trio.move_on_after(self.timeout_s):
            async with limit:
                try:
                    r = await client.post(target, content=body, headers={"Content-Type": "application/json",
                                                                         "Accept": "application/json"})
                except httpx.HTTPError as e:
                    raise ConversionFailed(f'{failed}: Post "{target}": {e or type(e).__name__}') from None
        if r is None:
            raise ConversionFailed(f'{failed}: Post "{target}": context deadline exceeded')
        if r.status_code != 200:
            raise ConversionFailed(f"{failed}: {_status_error(r)}")
        try:
            review = msgspec.json.decode(r.content)
        except msgspec.DecodeError as e:
            raise ConversionFailed(f"{failed}: {e}") from None
        return converted_from_review(review, uid=uid, version=version, originals=originals, desired=desired,
                                     source=source, is_list=is_list)

    def _client(self, ca_bundle: str, failed: str) -> httpx.AsyncClient:
        client = self._clients.get(ca_bundle)
        if client is None:
            try:
                client = self._clients[ca_bundle] = tls_client(ca_bundle)
            except ValueError as e:
                raise ConversionFailed(f"{failed}: {e}") from None
        return client


def _status_error(r: httpx.Response) -> str:
    """client-go's error for a webhook's non-2xx answer (its generic server response errors)."""
    try:
        status = msgspec.json.decode(r.content)
    except msgspec.DecodeError:
        status = None
    if isinstance(status, dict) and status.get("kind") == "Status" and status.get("message"):
        return str(status["message"])
    if r.status_code == 404:
        return "the server could not find the requested resource"
    if r.status_code >= 500:
        text = r.text.strip()[:1024]
        return f'an error on the server ("{text}") has prevented the request from succeeding'
    return "the server rejected our request for an unknown reason"


__all__ = ["ConversionError", "Converter"]
