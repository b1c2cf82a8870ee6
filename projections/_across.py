"""LIST across every tenant (kcp's ``/clusters/*/``): each tenant's own LIST, in tenant order.

A list across tenants is the concatenation of one resource's LIST in each tenant, tenants in name
order, each object annotated with its tenant (``tenancy.jetkube.io/cluster``). Every part is a
single tenant's read (:meth:`Projection.list` from memory, :meth:`Projection.list_at` from the rings
or the log's history), so the rules are theirs:

- no resourceVersion to pin (``at`` None): the current state, every tenant read at one applied
  sequence without a checkpoint between them;
- ``at`` (resourceVersionMatch=Exact, or a continue token): exactly the state at ``at``, from
  memory for each tenant whose state has not changed since, from history for the others; 410 when
  the log no longer holds it (a continue token's: ``ContinueExpired``, as a tenant's LIST);
- ``limit``: a page; its continue token holds the resourceVersion, the tenant and the last key
  returned in it, so the next page resumes in that tenant, then goes on with the next ones.

The tenants are the store's (those with a state of the resource). A tenant pruned after ``at`` (a
tenant deleted since: its objects are gone, its state dropped) is found in the log instead, when
``at`` is older than the store's last prune or snapshot.
"""

from __future__ import annotations

import base64
import json

from bus import ANY_TENANT, parse_subject, resource_filter

from ._errors import BadContinue, ContinueExpired, TooOldResourceVersion
from ._projection import (
    ContinueNeedsHistory,
    ListResult,
    Projection,
    _annotated,
    decode_continue,
    encode_continue,
)
from ._watch import WatchFilter


def encode_across(rv: int, tenant: str, start_after: str) -> str:
    """A continue token across tenants: the list's resourceVersion, the tenant the page ended in and
    the last key returned there (a single tenant's token plus ``cluster``)."""
    raw = json.dumps({"v": "jk1", "rv": rv, "start": start_after, "cluster": tenant}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_across(token: str) -> tuple[int, str, str]:
    """(resourceVersion, tenant, last key) of :func:`encode_across`'s token; BadContinue (400) for
    anything else, a single tenant's token included."""
    rv, start = decode_continue(token)
    tenant = json.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4))).get("cluster")
    if type(tenant) is not str or not tenant:
        raise BadContinue("invalid continue token: not a list across logical clusters")
    return rv, tenant, start


async def _tenants(projection: Projection, group: str, resource: str, flt: WatchFilter, at: int | None,
                   after: str) -> list[str]:
    """The tenants to read, in order, from ``after`` on: the store's; with ``at`` older than the store's
    last prune or snapshot, the log's too (a tenant deleted since has no state here any more)."""
    store = projection.store
    tenants = {t for t, g, r in store.resources if (g, r) == (group, resource)}
    if at is not None and at < store.ring_floor:
        subjects = await projection.log.subjects(resource_filter(projection.log.prefix, ANY_TENANT, group, resource,
                                                                 flt.namespace))
        tenants |= {parse_subject(projection.log.prefix, s).tenant for s in subjects}
    return sorted(t for t in tenants if t >= after)


async def _part(projection: Projection, tenant: str, group: str, resource: str, flt: WatchFilter, at: int | None,
                limit: int, start_after: str) -> ListResult:
    """One tenant's LIST from ``start_after`` (its objects not annotated yet): the current state
    (``at`` None), or exactly at ``at``."""
    if at is None:
        return projection.list(tenant, group, resource, flt, limit=limit,
                               continue_token=encode_continue(projection.store.applied, start_after)
                               if start_after else "")
    store = projection.store
    # Memory knows a tenant's state at ``at`` when it holds the state, or when none was pruned since.
    known = (tenant, group, resource) in store.resources or at >= store.ring_floor
    if store.applied >= at and known:
        try:  # a tenant unchanged since ``at``: from memory (as a tenant's continue token is)
            return projection.list(tenant, group, resource, flt, limit=limit,
                                   continue_token=encode_continue(at, start_after))
        except ContinueNeedsHistory:
            pass
    return await projection.list_at(tenant, group, resource, flt, at, limit=limit, start_after=start_after)


def _count(projection: Projection, tenant: str, group: str, resource: str, flt: WatchFilter,
           at: int | None) -> int | None:
    """A tenant's objects (in the filter's namespace) at ``at`` when memory has that count: now, or a
    state unchanged since ``at``; None otherwise."""
    store = projection.store
    st = store.resources.get((tenant, group, resource))
    if st is None:
        return 0 if at is None or at >= store.ring_floor else None
    if at is not None and (store.applied < at or (st.ring[-1].seq if st.ring else st.ring_floor) > at):
        return None
    return st.count if flt.namespace is None else len(st.by_ns.get(flt.namespace, ()))


async def list_across(projection: Projection, group: str, resource: str, flt: WatchFilter, *,
                      at: int | None = None, limit: int = 0, continue_token: str = "") -> ListResult:
    """One resource's objects in every tenant, annotated with their tenant, in (tenant, namespace,
    name) order: the current state, or exactly at ``at``; pages of ``limit`` (0: all) resumed with
    ``continue_token`` (which pins its resourceVersion)."""
    tenant0, start0 = "", ""
    if continue_token:
        at, tenant0, start0 = decode_across(continue_token)
    try:
        return await _list(projection, group, resource, flt, at, limit, tenant0, start0)
    except TooOldResourceVersion:
        if continue_token:
            raise ContinueExpired() from None
        raise


async def _list(projection: Projection, group: str, resource: str, flt: WatchFilter, at: int | None, limit: int,
                tenant0: str, start0: str) -> ListResult:
    if at is not None and at > projection.store.applied:
        await projection.wait_for(at)  # its tenants are the store's: 504 when it does not get there in time
    rv = projection.store.applied if at is None else at
    tenants = await _tenants(projection, group, resource, flt, at, tenant0)
    items: list[bytes] = []
    # Where the page ends: (tenant, last key there) when it ends inside a tenant.
    position: tuple[str, str] | None = None
    remaining: int | None = None
    later = len(tenants)  # the index of the first tenant after the page
    for i, t in enumerate(tenants):
        need = limit - len(items) if limit else 0
        if limit and not need:
            later = i
            break
        part = await _part(projection, t, group, resource, flt, at, need, start0 if t == tenant0 else "")
        items += [_annotated(t, d) for d in part.items]
        if part.continue_token:
            position = (t, decode_continue(part.continue_token)[1])
            remaining = part.remaining
            later = i + 1
            break
    if position is None:
        # The page is full at a tenant's end, or everything was read: more only if a later tenant has an object.
        for t in tenants[later:]:
            if (await _part(projection, t, group, resource, flt, at, 1, "")).items:
                position = (t, "")
                remaining = 0
                break
        else:
            return ListResult(items, rv)
    # kube counts the rest only without selectors; here only when memory has every later tenant's count.
    if remaining is not None and flt.labels.empty and flt.fields.empty:
        counts = [_count(projection, t, group, resource, flt, at) for t in tenants[later:]]
        remaining = None if None in counts else remaining + sum(c for c in counts if c is not None)
    else:
        remaining = None
    return ListResult(items, rv, encode_across(rv, *position), remaining)
