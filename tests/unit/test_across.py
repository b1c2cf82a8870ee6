"""``projections.list_across`` (the LIST of ``/clusters/*/``) on a projection folded by hand from a
random log of several tenants: pages of every size concatenate to the whole list, in (tenant,
namespace, name) order, each object annotated with its tenant; selectors, a namespace, the
remainingItemCount; continue tokens pin the version and are told apart from a tenant's. Reads of
a past version that changed since go to the log (tests/integration/test_tenancy_wildcard_pages.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kinds import CLUSTER_ANNOTATION, Registry
from projections import (
    BadContinue,
    ListResult,
    Projection,
    WatchFilter,
    decode_across,
    decode_continue,
    encode_across,
    list_across,
)
from tests.unit.test_snapshot_format import TENANTS, fresh_projection, make_log

CONFIGMAPS = Registry().get("", "v1", "configmaps")


def folded() -> Projection:
    p = fresh_projection()
    p.apply_batch(make_log(4000))
    return p


def flt(namespace: str | None = None, labels: str = "", fields: str = "") -> WatchFilter:
    assert CONFIGMAPS is not None
    return WatchFilter.for_request(CONFIGMAPS, namespace, labels, fields)


def keys(items: list[bytes]) -> list[tuple[str, str, str]]:
    out = []
    for i in items:
        m: dict[str, Any] = json.loads(i)["metadata"]
        out.append((m["annotations"][CLUSTER_ANNOTATION], m["namespace"], m["name"]))
    return out


def expected(p: Projection, f: WatchFilter) -> list[tuple[str, str, str]]:
    """Every tenant's own LIST, in tenant order."""
    out = []
    for tenant in sorted(TENANTS):
        listed = p.list(tenant, "", "configmaps", f)
        out += [(tenant, json.loads(i)["metadata"]["namespace"], json.loads(i)["metadata"]["name"])
                for i in listed.items]
    return out


async def all_pages(p: Projection, f: WatchFilter, limit: int) -> list[ListResult]:
    out = [await list_across(p, "", "configmaps", f, limit=limit)]
    while out[-1].continue_token:
        out.append(await list_across(p, "", "configmaps", f, limit=limit, continue_token=out[-1].continue_token))
        assert len(out) < 1000
    return out


@pytest.mark.parametrize("limit", [1, 3, 17, 64, 1000, 0])
async def test_pages_concatenate_to_every_tenants_list(limit: int) -> None:
    p = folded()
    whole = await list_across(p, "", "configmaps", flt())
    want = expected(p, flt())
    assert keys(whole.items) == want and len(want) > 100 and whole.resource_version == p.store.applied
    assert {t for t, _, _ in want} == set(TENANTS)
    pages = await all_pages(p, flt(), limit)
    got = [k for page in pages for k in keys(page.items)]
    assert got == want
    assert {page.resource_version for page in pages} == {p.store.applied}
    seen = 0
    for page in pages:
        if limit:
            assert len(page.items) == limit or page is pages[-1]
        seen += len(page.items)
        if page.continue_token:
            assert page.remaining == len(want) - seen
            rv, tenant, _ = decode_across(page.continue_token)
            assert rv == p.store.applied and tenant in TENANTS
    assert pages[-1].continue_token == ""


@pytest.mark.parametrize(("namespace", "labels", "fields"), [
    (None, "app=a", ""), ("ns-2", "", ""), ("ns-3", "gen in (0,2)", ""), (None, "", "metadata.name=o-7"),
    (None, "app=nothing", ""),
])
async def test_pages_with_selectors_and_a_namespace(namespace: str | None, labels: str, fields: str) -> None:
    p = folded()
    f = flt(namespace, labels, fields)
    want = expected(p, f)
    for limit in (1, 4, 0):
        pages = await all_pages(p, f, limit)
        assert [k for page in pages for k in keys(page.items)] == want
        # kube counts the rest only without selectors
        assert all(page.remaining is None for page in pages if labels or fields)


async def test_continue_tokens_pin_their_version_and_name_their_tenant() -> None:
    p = folded()
    first = await list_across(p, "", "configmaps", flt(), limit=5)
    rv, tenant, start = decode_across(first.continue_token)
    assert (rv, tenant) == (p.store.applied, min(TENANTS)) and start == decode_continue(first.continue_token)[1]
    # A tenant's own token, or garbage, is not a token across tenants.
    own = p.list("acme", "", "configmaps", flt(), limit=2).continue_token
    for token in (own, "abc", encode_across(rv, "", start)[:-3]):
        with pytest.raises(BadContinue):
            await list_across(p, "", "configmaps", flt(), limit=5, continue_token=token)
    # A page ending exactly at a tenant's end continues with the next tenant that has objects.
    f = flt(labels="app=a")
    want = expected(p, f)
    first_tenant = sum(1 for k in want if k[0] == want[0][0])
    page = await list_across(p, "", "configmaps", f, limit=first_tenant)
    assert keys(page.items) == want[:first_tenant]
    assert decode_across(page.continue_token)[1:] == (want[first_tenant][0], "")
