"""``/clusters/*/`` (kcp's wildcard cluster): what its reads do beyond a tenant's.

- LIST: every tenant's LIST in tenant order (projections ``list_across``), with a tenant's
  resourceVersion rules (gateway/_reads.py): the current state once caught up (or not older than
  the resourceVersion given); ``resourceVersionMatch=Exact`` (or a resourceVersion with a limit,
  the legacy rule) exactly at that version; ``limit``/``continue`` pages whose token pins the
  version, 410 Expired once the log no longer holds it.
- WATCH of a custom resource (across tenants, and in a tenant too): ends when its kind stops being
  served there as it was (its CRD deleted or changed; across tenants also another tenant defining
  it differently: then 409), as kube ends the watches of a CRD's storage when the CRD goes or
  changes; the client's re-list then says why.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from kinds import Registry, ResourceDef
from projections import ListResult, Projection, list_across

from ._reads import ListOptions, read_at


async def list_every_tenant(projection: Projection, storage: ResourceDef, opts: ListOptions) -> ListResult:
    """A LIST of ``storage``'s objects across every tenant (see the module's note)."""
    rv = opts.resource_version
    if opts.continue_token:
        return await list_across(projection, storage.group, storage.plural, opts.filter, limit=opts.limit,
                                 continue_token=opts.continue_token)
    if opts.exact and rv is not None:
        return await list_across(projection, storage.group, storage.plural, opts.filter, at=int(rv),
                                 limit=opts.limit)
    await read_at(projection, rv)
    return await list_across(projection, storage.group, storage.plural, opts.filter, limit=opts.limit)


def _verbless(d: ResourceDef | None) -> ResourceDef | None:
    return None if d is None else msgspec.structs.replace(d, verbs=())


def still_served(registry: Registry, tenant: str, rdef: ResourceDef, storage: ResourceDef) -> Callable[[], bool]:
    """Whether ``rdef`` (stored as ``storage``) is still served in ``tenant`` (``*``: across
    tenants) as when the watch began: the same definitions, verbs aside (a terminating CRD still
    serves its watch, which sees its objects deleted)."""
    served, stored = _verbless(rdef), _verbless(storage)

    def check() -> bool:
        kinds = registry.for_tenant(tenant)
        now = kinds.get(rdef.group, rdef.version, rdef.plural)
        return now is not None and _verbless(now) == served and _verbless(kinds.storage_of(now)) == stored

    return check
