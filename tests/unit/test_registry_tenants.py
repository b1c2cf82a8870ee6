"""kinds.Registry per tenant and the projection's CRD view feeding it: a tenant's established
CRDs serve their kinds in that tenant only; tenants without CRDs share the built-in registry."""

from __future__ import annotations

import copy

import msgspec

from gateway._routes import parse
from kinds import BUILTIN, Registry
from projections._crds import CrdView
from tests.unit.test_crd_kinds import CRD

ESTABLISHED = {"conditions": [{"type": "NamesAccepted", "status": "True"}, {"type": "Established", "status": "True"}]}


def crd(*, plural: str = "things", kind: str = "Thing", established: bool = True) -> bytes:
    c = copy.deepcopy(CRD)
    c["metadata"]["name"] = f"{plural}.example.com"
    c["spec"]["names"] = {"plural": plural, "kind": kind}
    if established:
        c["status"] = ESTABLISHED
    return msgspec.json.encode(c)


def test_a_crd_serves_its_kind_in_its_tenant_only() -> None:
    reg, view = Registry(), CrdView()
    view.attach(reg)
    view.apply("t1", "things.example.com", crd())
    view.apply("t2", "widgets.example.com", crd(plural="widgets", kind="Widget"))
    view.apply("t3", "gadgets.example.com", crd(plural="gadgets", kind="Gadget", established=False))
    t1, t2 = reg.for_tenant("t1"), reg.for_tenant("t2")
    assert t1.get("example.com", "v1", "things") is not None and t1.get("example.com", "v1", "widgets") is None
    assert t2.get("example.com", "v1", "widgets") is not None and t2.get("example.com", "v1", "things") is None
    assert [d.plural for d in t1.custom] == ["things", "things"] and t1.tenant == "t1"
    # Not established, unknown, root: the shared registry (built-in kinds only), nothing allocated.
    for tenant in ("t3", "nope", "root"):
        assert reg.for_tenant(tenant) is reg and reg.get("example.com", "v1", "gadgets") is None
    assert set(reg.tenants()) == {"t1", "t2"} and reg.defs == BUILTIN and not reg.custom
    # Any registry finds any tenant's; the built-in kinds are the same objects everywhere.
    assert t1.for_tenant("t2") is t2 and t2.for_tenant("root") is reg
    assert t1.get("", "v1", "configmaps") is reg.get("", "v1", "configmaps")
    # Routing: the path's tenant decides.
    assert parse("/clusters/t1/apis/example.com/v1/things/x", reg).kind == "resource"
    assert parse("/clusters/t2/apis/example.com/v1/things/x", reg).kind == "unknown"
    assert parse("/apis/example.com/v1/things/x", reg).kind == "unknown"


def test_the_same_crd_name_in_two_tenants_and_deletion() -> None:
    reg, view = Registry(), CrdView()
    view.apply("t1", "things.example.com", crd())
    other = msgspec.json.decode(crd())
    other["spec"]["versions"] = [other["spec"]["versions"][0]]
    other["spec"]["versions"][0]["schema"] = {"openAPIV3Schema": {"type": "object",
                                                                  "x-kubernetes-preserve-unknown-fields": True}}
    view.apply("t2", "things.example.com", msgspec.json.encode(other))
    view.attach(reg)  # a registry attached later gets every tenant's kinds at once
    t1, t2 = reg.for_tenant("t1"), reg.for_tenant("t2")
    assert t1.get("example.com", "v2", "things") is not None and t2.get("example.com", "v2", "things") is None
    s1, s2 = (r.get("example.com", "v1", "things") for r in (t1, t2))
    assert s1 is not None and s2 is not None and s1.schema != s2.schema
    before = t2.defs
    view.apply("t1", "things.example.com", None)
    assert reg.for_tenant("t1") is reg and "t1" not in view.crds
    assert reg.for_tenant("t2").defs is before  # t2 untouched
    # A reader holding t1's registry keeps a consistent, older set.
    assert t1.get("example.com", "v1", "things") is not None


def test_a_tenants_v3_documents_reuse_the_built_in_ones() -> None:
    from gateway._openapi_cache import build_v3

    reg, view = Registry(), CrdView()
    view.attach(reg)
    view.apply("t1", "things.example.com", crd())
    base, _ = build_v3(reg.defs, None)
    docs, index = build_v3(reg.for_tenant("t1").defs, base)
    whole, whole_index = build_v3(reg.for_tenant("t1").defs, None)
    assert docs == whole and index == whole_index
    assert set(docs) - set(base) == {"apis/example.com/v1", "apis/example.com/v2"}
    assert docs["api/v1"] is base["api/v1"]  # shared, not rebuilt


def _other_schema(plural: str = "things") -> bytes:
    other = msgspec.json.decode(crd(plural=plural))
    other["spec"]["versions"][0]["schema"] = {"openAPIV3Schema": {"type": "object",
                                                                  "x-kubernetes-preserve-unknown-fields": True}}
    return msgspec.json.encode(other)


def test_every_tenant_serves_the_crds_that_are_the_same_everywhere() -> None:
    reg, view = Registry(), CrdView()
    view.attach(reg)
    wild = reg.for_tenant("*")
    assert wild.tenant == "*" and not wild.custom and not wild.conflicts
    # Built-in kinds, as served across tenants: list and watch only, no subresources; reviews and
    # bindings (no list) are not there.
    pods = wild.get("", "v1", "pods")
    assert pods is not None and pods.verbs == ("list", "watch") and not pods.subresources
    assert wild.get("authorization.k8s.io", "v1", "subjectaccessreviews") is None
    assert wild.get("", "v1", "bindings") is None
    assert {(d.group, d.plural) for d in wild.defs} == {(d.group, d.plural) for d in BUILTIN
                                                        if "list" in d.verbs}
    assert reg.for_tenant("*") is wild  # cached until a tenant's kinds change
    view.apply("t1", "things.example.com", crd())
    view.apply("t2", "things.example.com", crd())  # the same CRD in two tenants
    view.apply("t2", "widgets.example.com", crd(plural="widgets", kind="Widget"))  # one tenant's only
    view.apply("t3", "gadgets.example.com", _other_schema("gadgets"))
    view.apply("t4", "gadgets.example.com", crd(plural="gadgets", kind="Gadget"))  # another schema
    view.apply("t5", "gadgets.example.com", crd(plural="gadgets", kind="Gadget", established=False))
    wild = reg.for_tenant("*")
    assert reg.for_tenant("t1").for_tenant("*") is wild  # any registry gives the same one
    assert {(d.plural, d.version) for d in wild.custom} == {("things", "v1"), ("things", "v2"),
                                                            ("widgets", "v1"), ("widgets", "v2")}
    assert wild.conflicts == {("example.com", "gadgets"): ("t3", "t4")}
    assert wild.storage_of(wild.get("example.com", "v2", "things")).version == "v1"
    assert parse("/clusters/*/apis/example.com/v1/things", reg).kind == "resource"
    assert parse("/clusters/*/apis/example.com/v1/widgets", reg).kind == "resource"
    for path in ("/clusters/*/apis/example.com/v1/gadgets", "/clusters/*/apis/example.com/v1/watch/gadgets",
                 "/clusters/*/apis/example.com/v2/gadgets"):
        r = parse(path, reg)
        assert r.kind == "conflict" and r.tenant == "*", path
        assert r.name.startswith("gadgets.example.com cannot be listed or watched across logical clusters")
        assert '"t3", "t4"' in r.name
    assert parse("/clusters/*/apis/example.com/v1/nothings", reg).kind == "unknown"
    assert parse("/clusters/t3/apis/example.com/v1/gadgets", reg).kind == "resource"
    # A terminating CRD (no create) still counts as the same one.
    terminating = msgspec.json.decode(crd())
    terminating["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    view.apply("t2", "things.example.com", msgspec.json.encode(terminating))
    assert reg.for_tenant("*").get("example.com", "v1", "things") is not None
    # t1's things change schema: no longer served across tenants; t4's gadgets go: t3's are.
    view.apply("t1", "things.example.com", _other_schema())
    view.apply("t4", "gadgets.example.com", None)
    wild = reg.for_tenant("*")
    assert wild.get("example.com", "v1", "things") is None
    assert wild.conflicts == {("example.com", "things"): ("t1", "t2")}
    gadgets = wild.get("example.com", "v1", "gadgets")
    assert gadgets is not None and gadgets.verbs == ("list", "watch")
    assert gadgets.schema == reg.for_tenant("t3").get("example.com", "v1", "gadgets").schema
    assert parse("/clusters/*/apis/example.com/v1/things", reg).kind == "conflict"
    assert parse("/clusters/t1/apis/example.com/v1/things", reg).kind == "resource"


def test_every_tenant_compares_definitions_not_key_order() -> None:
    reg, view = Registry(), CrdView()
    view.attach(reg)
    view.apply("t1", "things.example.com", crd())
    reordered = msgspec.json.decode(crd())
    for v in reordered["spec"]["versions"]:
        v["schema"]["openAPIV3Schema"] = dict(reversed(list(v["schema"]["openAPIV3Schema"].items())))
    view.apply("t2", "things.example.com", msgspec.json.encode(reordered))
    assert reg.for_tenant("t2").get("example.com", "v1", "things").schema == \
        reg.for_tenant("t1").get("example.com", "v1", "things").schema
    wild = reg.for_tenant("*")
    assert not wild.conflicts and wild.get("example.com", "v1", "things") is not None
