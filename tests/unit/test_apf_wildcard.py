"""Flow control of requests across tenants (``/clusters/*/``): root's FlowSchemas and seats
(``flow_tenant``), and the seats of a list or watch across tenants estimated from every tenant's
objects (``FlowControl._seats_across``), counted only until the cap is reached."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from actors._apf import OBJECTS_PER_SEAT
from actors._flowcontrol import FlowControl, flow_tenant
from actors.messages import Request, UserInfo
from kinds import BUILTIN

CMS = next(d for d in BUILTIN if (d.group, d.plural) == ("", "configmaps"))
SECRETS = next(d for d in BUILTIN if (d.group, d.plural) == ("", "secrets"))


def _state(per_ns: dict[str, int], watchers: int = 0) -> Any:
    return SimpleNamespace(count=sum(per_ns.values()), by_ns={ns: [None] * n for ns, n in per_ns.items()},
                           watchers=[object()] * watchers)


def _fc(resources: dict[tuple[str, str, str], Any]) -> FlowControl:
    return FlowControl(SimpleNamespace(store=SimpleNamespace(resources=resources)))  # type: ignore[arg-type]


def _req(tenant: str, verb: str, *, rdef: Any = CMS, namespace: str = "", **query: str) -> Request:
    return Request(verb=verb, tenant=tenant, rdef=rdef, namespace=namespace, query=query,
                   user=UserInfo("admin", "u", ("system:masters",)))


def test_flow_tenant() -> None:
    assert flow_tenant("*") == "root"
    assert flow_tenant("root") == "root"
    assert flow_tenant("t1") == "t1"


def test_a_list_across_tenants_is_as_wide_as_every_tenants_objects() -> None:
    resources = {(f"t{i}", "", "configmaps"): _state({"default": 60, "other": 40}) for i in range(20)}
    resources[("t0", "", "secrets")] = _state({"default": 10_000})  # another kind: not counted
    resources[("*", "", "configmaps")] = _state({"default": 10_000})  # (never a real tenant)
    fc = _fc(resources)
    # 20 tenants x 100 objects: 2,000 objects = 20 seats, capped at 10; a tenant alone: 1 seat
    assert fc._seats(_req("*", "list"), 10) == 10
    assert fc._seats(_req("t3", "list"), 10) == 1
    assert fc._seats(_req("*", "list"), 100) == 2000 // OBJECTS_PER_SEAT
    # in one namespace of every tenant: 20 x 40
    assert fc._seats(_req("*", "list", namespace="other"), 100) == 800 // OBJECTS_PER_SEAT
    # a limit without a selector bounds it; a selector does not
    assert fc._seats(_req("*", "list", limit="250"), 100) == 3
    assert fc._seats(_req("*", "list", limit="250", labelSelector="a=b"), 100) == 20
    # a watch: 1 seat, as wide as the list when it asks for its initial events
    assert fc._seats(_req("*", "watch"), 100) == 1
    assert fc._seats(_req("*", "watch", sendInitialEvents="true"), 100) == 20
    # counting stops at the cap: with 10,000 tenants, a capped estimate reads only as many as it needs
    many = {(f"t{i}", "", "configmaps"): _state({"default": 100}) for i in range(10_000)}
    seen = []

    class Counting(dict):  # type: ignore[type-arg]
        def items(self):  # type: ignore[no-untyped-def, override]
            for kv in super().items():
                seen.append(kv[0])
                yield kv

    assert _fc(Counting(many))._seats(_req("*", "list"), 10) == 10
    assert len(seen) == 10
    assert _fc({})._seats(_req("*", "list", rdef=SECRETS), 10) == 1
