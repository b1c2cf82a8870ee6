"""The field-set algebra and merge of server-side apply (``kinds._fieldpath``) and the
managedFields bookkeeping (``actors._managed``).

The ``SMD_CASES`` are ported from sigs.k8s.io/structured-merge-diff (v6 master, commit 15d0754):
``merge/leaf_test.go`` (TestUpdateLeaf), ``merge/set_test.go`` (TestUpdateSet) and
``merge/multiple_appliers_test.go`` (TestMultipleAppliersSet, TestMultipleAppliersFieldUnsetting): the same operations, the same
expected object, managers' sets and conflicts; the schemas are written as OpenAPI with the
``x-kubernetes-*`` extensions instead of SMD's own schema language. Cases about several versions
are left out (jetkube converts before ownership is computed).
"""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors._managed import record_apply, record_update
from kinds import Conflict as ConflictStatus
from kinds._fieldpath import (
    ConflictError,
    ManagerSet,
    OpenAPIType,
    Updater,
    builtin_type,
    compare,
    difference,
    ensure_named_fields_are_members,
    from_fields_v1,
    intersection,
    iter_paths,
    merge,
    path_string,
    remove_items,
    to_field_set,
    to_fields_v1,
    union,
)

LEAF = OpenAPIType({"type": "object", "properties": {
    "numeric": {"type": "number"}, "string": {"type": "string"}, "bool": {"type": "boolean"}}})
SETS = OpenAPIType({"type": "object", "properties": {
    "list": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}}})
STRUCT = OpenAPIType({"type": "object", "properties": {"struct": {"type": "object", "properties": {
    "name": {"type": "string"}, "scalarField_v1": {"type": "string"},
    "complexField_v1": {"type": "object", "properties": {"name": {"type": "string"}}}}}}})
ASSOC = OpenAPIType({"type": "object", "properties": {
    "list": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
             "items": {"type": "object", "properties": {"name": {"type": "string"},
                                                        "value": {"type": "number"}}}}}})


def F(*names: str) -> tuple[str, ...]:
    return tuple(n if n[:2] in ("f:", "k:", "v:") else "f:" + n for n in names)


def S(*paths: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in paths:
        node = out
        for pe in p:
            node = node.setdefault(pe, {})
        node["."] = {}
    return out


# (name, type, ops, object, managers, conflicts at the op that conflicts)
# An op: ("apply" | "update" | "force", manager, object, expected conflicts or None)
SMD_CASES: list[tuple[str, Any, list[tuple[str, str, Any, Any]], Any, dict[str, Any]]] = [
    ("leaf/apply_twice", LEAF, [
        ("apply", "default", {"numeric": 1, "string": "string"}, None),
        ("apply", "default", {"numeric": 2, "string": "string", "bool": False}, None)],
     {"numeric": 2, "string": "string", "bool": False},
     {"default": S(F("numeric"), F("string"), F("bool"))}),
    ("leaf/apply_update_apply_no_conflict", LEAF, [
        ("apply", "default", {"numeric": 1, "string": "string"}, None),
        ("update", "controller", {"numeric": 1, "string": "string", "bool": True}, None),
        ("apply", "default", {"numeric": 2, "string": "string"}, None)],
     {"numeric": 2, "string": "string", "bool": True},
     {"default": S(F("numeric"), F("string")), "controller": S(F("bool"))}),
    ("leaf/apply_update_apply_with_conflict", LEAF, [
        ("apply", "default", {"numeric": 1, "string": "string"}, None),
        ("update", "controller", {"numeric": 1, "string": "controller string", "bool": True}, None),
        ("apply", "default", {"numeric": 2, "string": "user string"}, [("controller", ".string")]),
        ("force", "default", {"numeric": 2, "string": "user string"}, None)],
     {"numeric": 2, "string": "user string", "bool": True},
     {"default": S(F("numeric"), F("string")), "controller": S(F("bool"))}),
    ("leaf/apply_twice_remove", LEAF, [
        ("apply", "default", {"numeric": 1, "string": "string", "bool": False}, None),
        ("apply", "default", {"string": "new string"}, None)],
     {"string": "new string"}, {"default": S(F("string"))}),
    ("leaf/update_apply_omits", LEAF, [
        ("apply", "default", {"numeric": 2}, None),
        ("update", "controller", {"numeric": 1}, None),
        ("apply", "default", {}, None)],
     {"numeric": 1}, {"controller": S(F("numeric"))}),
    ("leaf/update_remove_empty_set", LEAF, [
        ("apply", "default", {"string": "string"}, None),
        ("update", "controller", {"string": "new string"}, None)],
     {"string": "new string"}, {"controller": S(F("string"))}),
    ("set/apply_twice", SETS, [
        ("apply", "default", {"list": ["a", "c"]}, None),
        ("apply", "default", {"list": ["a", "b", "c", "d"]}, None)],
     {"list": ["a", "b", "c", "d"]},
     {"default": S(*(F("list", f'v:"{v}"') for v in "abcd"))}),
    ("set/apply_update_apply_no_overlap", SETS, [
        ("apply", "default", {"list": ["a", "c"]}, None),
        ("update", "controller", {"list": ["a", "b", "c", "d"]}, None),
        ("apply", "default", {"list": ["a", "aprime", "c", "cprime"]}, None)],
     {"list": ["a", "b", "aprime", "c", "d", "cprime"]},
     {"default": S(*(F("list", f'v:"{v}"') for v in ("a", "aprime", "c", "cprime"))),
      "controller": S(F("list", 'v:"b"'), F("list", 'v:"d"'))}),
    ("set/apply_update_apply_with_overlap", SETS, [
        ("apply", "default", {"list": ["a", "c"]}, None),
        ("update", "controller", {"list": ["a", "b", "c", "d"]}, None),
        ("apply", "default", {"list": ["a", "b", "c"]}, None)],
     {"list": ["a", "b", "c", "d"]},
     {"default": S(*(F("list", f'v:"{v}"') for v in "abc")),
      "controller": S(F("list", 'v:"b"'), F("list", 'v:"d"'))}),
    ("set/apply_twice_reorder", SETS, [
        ("apply", "default", {"list": ["a", "b", "c", "d"]}, None),
        ("apply", "default", {"list": ["a", "d", "c", "b"]}, None)],
     {"list": ["a", "d", "c", "b"]},
     {"default": S(*(F("list", f'v:"{v}"') for v in "abcd"))}),
    ("set/apply_update_apply_reorder", SETS, [
        ("apply", "default", {"list": ["a", "b", "c", "d"]}, None),
        ("update", "controller", {"list": ["a", "d", "c", "b"]}, None),
        ("apply", "default", {"list": ["a", "b", "c", "d"]}, None)],
     {"list": ["a", "b", "c", "d"]},
     {"default": S(*(F("list", f'v:"{v}"') for v in "abcd"))}),
    ("multiple_appliers/remove_one", ASSOC, [
        ("apply", "apply-one", {"list": [{"name": "a"}, {"name": "b"}]}, None),
        ("apply", "apply-two", {"list": [{"name": "c"}]}, None),
        ("apply", "apply-one", {"list": [{"name": "a"}]}, None)],
     {"list": [{"name": "a"}, {"name": "c"}]},
     {"apply-one": S(F("list", 'k:{"name":"a"}'), F("list", 'k:{"name":"a"}', "name")),
      "apply-two": S(F("list", 'k:{"name":"c"}'), F("list", 'k:{"name":"c"}', "name"))}),
    ("multiple_appliers/same_value_no_conflict", ASSOC, [
        ("apply", "apply-one", {"list": [{"name": "a", "value": 0}]}, None),
        ("apply", "apply-two", {"list": [{"name": "a", "value": 0}]}, None)],
     {"list": [{"name": "a", "value": 0}]},
     {m: S(F("list", 'k:{"name":"a"}'), F("list", 'k:{"name":"a"}', "name"), F("list", 'k:{"name":"a"}', "value"))
      for m in ("apply-one", "apply-two")}),
    ("multiple_appliers/change_value_yes_conflict", ASSOC, [
        ("apply", "apply-one", {"list": [{"name": "a", "value": 0}]}, None),
        ("apply", "apply-two", {"list": [{"name": "a", "value": 1}]}, [("apply-one", '.list[name="a"].value')])],
     {"list": [{"name": "a", "value": 0}]},
     {"apply-one": S(F("list", 'k:{"name":"a"}'), F("list", 'k:{"name":"a"}', "name"),
                     F("list", 'k:{"name":"a"}', "value"))}),
    ("multiple_appliers/remove_one_keep_one", ASSOC, [
        ("apply", "apply-one", {"list": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}, None),
        ("apply", "apply-two", {"list": [{"name": "c"}, {"name": "d"}]}, None),
        ("apply", "apply-one", {"list": [{"name": "a"}]}, None)],
     {"list": [{"name": "a"}, {"name": "c"}, {"name": "d"}]},
     {"apply-one": S(F("list", 'k:{"name":"a"}'), F("list", 'k:{"name":"a"}', "name")),
      "apply-two": S(F("list", 'k:{"name":"c"}'), F("list", 'k:{"name":"d"}'), F("list", 'k:{"name":"c"}', "name"),
                     F("list", 'k:{"name":"d"}', "name"))}),
    # TestMultipleAppliersFieldUnsetting, at one version.
    ("field_unsetting/unset_scalar_sole_owner", STRUCT, [
        ("apply", "apply-one", {"struct": {"name": "a", "scalarField_v1": "a"}}, None),
        ("apply", "apply-one", {"struct": {"name": "a"}}, None)],
     {"struct": {"name": "a"}}, {"apply-one": S(F("struct", "name"))}),
    ("field_unsetting/unset_scalar_shared_with_applier", STRUCT, [
        ("apply", "apply-one", {"struct": {"name": "a", "scalarField_v1": "a"}}, None),
        ("apply", "apply-two", {"struct": {"scalarField_v1": "a"}}, None),
        ("apply", "apply-one", {"struct": {"name": "a"}}, None)],
     {"struct": {"name": "a", "scalarField_v1": "a"}},
     {"apply-one": S(F("struct", "name")), "apply-two": S(F("struct", "scalarField_v1"))}),
    ("field_unsetting/unset_scalar_shared_with_updater", STRUCT, [
        ("update", "updater", {"struct": {"name": "a", "scalarField_v1": "a"}}, None),
        ("apply", "applier", {"struct": {"name": "a", "scalarField_v1": "a"}}, None),
        ("apply", "applier", {"struct": {"name": "a"}}, None)],
     {"struct": {"name": "a", "scalarField_v1": "a"}},
     {"updater": S(F("struct"), F("struct", "name"), F("struct", "scalarField_v1")),
      "applier": S(F("struct", "name"))}),
    ("field_unsetting/unset_complex_sole_owner", STRUCT, [
        ("apply", "apply-one", {"struct": {"name": "a", "complexField_v1": {"name": "b"}}}, None),
        ("apply", "apply-one", {"struct": {"name": "a"}}, None)],
     {"struct": {"name": "a"}}, {"apply-one": S(F("struct", "name"))}),
    ("field_unsetting/unset_complex_shared_with_applier", STRUCT, [
        ("apply", "apply-one", {"struct": {"name": "a", "complexField_v1": {"name": "b"}}}, None),
        ("apply", "apply-two", {"struct": {"complexField_v1": {"name": "b"}}}, None),
        ("apply", "apply-one", {"struct": {"name": "a"}}, None)],
     {"struct": {"name": "a", "complexField_v1": {"name": "b"}}},
     {"apply-one": S(F("struct", "name")), "apply-two": S(F("struct", "complexField_v1", "name"))}),
    ("field_unsetting/updater_claims_field", STRUCT, [
        ("apply", "applier", {"struct": {"name": "a", "scalarField_v1": "a"}}, None),
        ("update", "updater", {"struct": {"name": "a", "scalarField_v1": "b"}}, None)],
     {"struct": {"name": "a", "scalarField_v1": "b"}},
     {"updater": S(F("struct", "scalarField_v1")), "applier": S(F("struct", "name"))}),
]


@pytest.mark.parametrize("case", SMD_CASES, ids=[c[0] for c in SMD_CASES])
def test_structured_merge_diff_cases(case: Any) -> None:
    _, t, ops, expected, expected_managers = case
    live: Any = {}
    managers: dict[str, ManagerSet] = {}
    u = Updater(t)
    for op, manager, obj, conflicts in ops:
        if op == "update":
            u.update(live, obj, "v1", managers, manager)
            live = obj
            continue
        before = {k: ManagerSet(v.fields, v.api_version, v.applied) for k, v in managers.items()}
        try:
            live = u.apply(live, obj, "v1", managers, manager, op == "force")
        except ConflictError as e:
            assert conflicts is not None
            assert [(c.manager, path_string(c.path)) for c in e.conflicts] == conflicts
            managers = before
            continue
        assert conflicts is None
    assert live == expected
    assert {k: v.fields for k, v in managers.items()} == expected_managers


def test_set_operations_and_fields_v1() -> None:
    a = from_fields_v1({"f:a": {}, "f:b": {".": {}, "f:c": {}}})
    b = from_fields_v1({"f:b": {"f:c": {}, "f:d": {}}})
    assert to_fields_v1(union(a, b)) == {"f:a": {}, "f:b": {".": {}, "f:c": {}, "f:d": {}}}
    assert to_fields_v1(difference(a, b)) == {"f:a": {}, "f:b": {}}
    assert to_fields_v1(intersection(a, b)) == {"f:b": {"f:c": {}}}
    assert to_fields_v1(ensure_named_fields_are_members(b)) == {"f:b": {".": {}, "f:c": {}, "f:d": {}}}
    assert [path_string(p) for p in iter_paths(union(a, b))] == [".a", ".b", ".b.c", ".b.d"]
    assert path_string(('f:spec', 'k:{"containerPort":80,"protocol":"TCP"}', 'v:"x"', "i:3")) == \
        '.spec[containerPort=80,protocol="TCP"][="x"][3]'


def test_builtin_schema_types() -> None:
    pod = builtin_type("", "v1", "Pod")
    containers = pod.field("spec").field("containers")
    assert (containers.kind, containers.list_type, containers.keys) == ("list", "map", ("name",))
    ports = containers.elem().field("ports")
    assert ports.list_type == "map" and ports.keys == ("containerPort", "protocol")
    assert pod.field("metadata").field("finalizers").list_type == "set"
    assert pod.field("metadata").field("labels").kind == "map"
    assert pod.field("spec").field("nodeSelector").atomic_map  # +mapType=atomic in kube
    assert pod.field("metadata").field("labels").atomic_map is False
    sel = builtin_type("apps", "v1", "Deployment").field("spec").field("selector")
    assert sel.kind == "map" and sel.atomic_map  # LabelSelector is x-kubernetes-map-type: atomic
    assert containers.elem().field("args").list_type == "atomic"
    # An atomic map is owned as a whole; a granular one by member.
    d = {"spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}}}}
    fs = to_fields_v1(to_field_set(d, builtin_type("apps", "v1", "Deployment")))
    assert fs == {"f:spec": {"f:selector": {}, "f:template": {"f:metadata": {"f:labels": {"f:a": {}}}}}}


def test_compare_merge_and_remove() -> None:
    c = compare({"list": [{"name": "a", "value": 1}]}, {"list": [{"name": "a", "value": 2}, {"name": "b"}]}, ASSOC)
    assert to_fields_v1(c.modified) == {"f:list": {'k:{"name":"a"}': {"f:value": {}}}}
    assert to_fields_v1(c.added) == {"f:list": {'k:{"name":"b"}': {".": {}, "f:name": {}}}}
    assert merge({"list": ["a", "b"]}, {"list": ["c", "a"]}, SETS) == {"list": ["c", "a", "b"]}
    assert merge({"x": {"a": 1}}, {"x": {"b": 2}}, OpenAPIType({})) == {"x": {"a": 1, "b": 2}}  # untyped: granular
    assert merge({"x": [1, 2]}, {"x": [3]}, OpenAPIType({})) == {"x": [3]}  # untyped lists: atomic
    gone = S(F("list", 'k:{"name":"a"}'))
    assert remove_items({"list": [{"name": "a"}, {"name": "b"}]}, gone, ASSOC) == {"list": [{"name": "b"}]}


def _cm(data: dict[str, str], **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", **meta}, "data": data}


def test_managed_fields_entries_as_kube() -> None:
    t = builtin_type("", "v1", "ConfigMap")
    created = _cm({"a": "1"}, uid="u")
    record_update(None, created, manager="m", api_version="v1", now="t1", type_=t)
    assert created["metadata"]["managedFields"] == [{"manager": "m", "operation": "Update", "apiVersion": "v1",
                                                     "time": "t1", "fieldsType": "FieldsV1",
                                                     "fieldsV1": {"f:data": {".": {}, "f:a": {}}}}]
    applied = record_apply(created, _cm({"b": "2"}), manager="ap", api_version="v1", now="t2", force=False, type_=t)
    ops = [(e["manager"], e["operation"]) for e in applied["metadata"]["managedFields"]]
    assert ops == [("ap", "Apply"), ("m", "Update")]  # kube's order: Apply before Update
    assert applied["data"] == {"a": "1", "b": "2"}
    with pytest.raises(ConflictStatus) as e:
        record_apply(applied, _cm({"a": "9", "b": "2"}), manager="ap", api_version="v1", now="t3", force=False,
                     type_=t)
    assert e.value.message == 'Apply failed with 1 conflict: conflict with "m" using v1: .data.a'
    with pytest.raises(ConflictStatus) as e:
        record_apply(applied, _cm({"a": "9", "b": "3"}), manager="other", api_version="v1", now="t3", force=False,
                     type_=t)
    assert e.value.message == ('Apply failed with 2 conflicts: conflicts with "ap":\n- .data.b\n'
                               'conflicts with "m" using v1:\n- .data.a')
    # A no-op apply keeps its time.
    again = record_apply(applied, _cm({"b": "2"}), manager="ap", api_version="v1", now="t9", force=False, type_=t)
    assert again["metadata"]["managedFields"] == applied["metadata"]["managedFields"]


def test_update_managers_are_capped_as_kube() -> None:
    """Beyond 10 Update managers the oldest go into "ancient-changes" (kube's capManagersManager)."""
    t = builtin_type("", "v1", "ConfigMap")
    obj = _cm({"k0": "v"}, uid="u")
    record_update(None, obj, manager="m0", api_version="v1", now="2026-01-01T00:00:00Z", type_=t)
    for i in range(1, 12):
        new = _cm({**obj["data"], f"k{i}": "v"}, uid="u", managedFields=obj["metadata"]["managedFields"])
        record_update(obj, new, manager=f"m{i}", api_version="v1", now=f"2026-01-01T00:00:{i:02d}Z", type_=t)
        obj = new
    entries = obj["metadata"]["managedFields"]
    assert len(entries) == 10
    assert entries[0]["manager"] == "ancient-changes"
    assert entries[0]["fieldsV1"] == {"f:data": {".": {}, "f:k0": {}, "f:k1": {}, "f:k2": {}}}
    assert entries[0]["time"] == "2026-01-01T00:00:02Z"
    assert [e["manager"] for e in entries[1:]] == [f"m{i}" for i in range(3, 12)]


def test_defaulted_map_keys() -> None:
    """An item without a defaulted key is the live item with the default (SMD's
    merge/default_keys_test.go, apply_missing_defaulted_key_A; kube's ports' protocol)."""
    svc = builtin_type("", "v1", "Service")
    live = {"spec": {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]}}
    config = {"spec": {"ports": [{"port": 80, "targetPort": 8080}]}}
    assert merge(live, config, svc) == {"spec": {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}]}}
    assert to_fields_v1(to_field_set(config, svc)) == {"f:spec": {"f:ports": {'k:{"port":80,"protocol":"TCP"}': {
        ".": {}, "f:port": {}, "f:targetPort": {}}}}}


_json = st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.text("ab", max_size=2),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(
                         ["a", "b", "name", "metadata", "spec", "containers", "image"]), inner, max_size=3),
                     max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(lhs=_json, rhs=_json, typed=st.booleans())
def test_added_subtrees_are_built_as_the_path_by_path_insertion(lhs: Any, rhs: Any, typed: bool) -> None:
    """``compare`` builds an absent-on-the-left subtree's trie directly (a create's whole object):
    the same Added, Modified and Removed sets as inserting each member from the root."""
    import kinds._fieldpath as fp
    from actors._apply import apply_type
    from kinds import Registry

    t = apply_type(Registry().get("", "v1", "pods")) if typed else fp.UNTYPED
    lhs = {"spec": lhs} if typed else lhs
    rhs = {"spec": rhs, "metadata": {"name": "p"}} if typed else rhs
    fast = fp.compare(lhs, rhs, t)
    fp._FAST_ADDED = False
    try:
        slow = fp.compare(lhs, rhs, t)
    finally:
        fp._FAST_ADDED = True
    assert (fast.added, fast.modified, fast.removed) == (slow.added, slow.modified, slow.removed)


_meta = st.fixed_dictionaries({}, optional={
    "name": st.text("ab", max_size=2) | st.dictionaries(st.sampled_from(["a", "name"]), _json, max_size=2),
    "uid": _json, "labels": _json, "managedFields": _json, "resourceVersion": st.just("5"),
    "creationTimestamp": st.text("12", max_size=2), "generation": st.integers(0, 3)})


_ports = st.lists(st.fixed_dictionaries({"containerPort": st.integers(1, 3)}, optional={
    "protocol": st.sampled_from(["TCP", "UDP"]), "name": _json}), max_size=3)
_containers = st.lists(st.fixed_dictionaries({"name": st.text("ab", max_size=2)}, optional={
    "image": _json, "ports": _ports, "env": _json, "args": _json}), max_size=3)
_spec = _json | st.fixed_dictionaries({}, optional={"containers": _containers, "initContainers": _containers,
                                                     "nodeSelector": _json, "tolerations": _json})


@settings(max_examples=300, deadline=None)
@given(spec=_spec, status=_json, other=_json, meta=_meta, typed=st.sampled_from(["pod", "cm", "none"]),
       subresource=st.sampled_from(["", "status"]))
def test_a_create_is_recorded_in_one_walk_as_the_general_update_records_it(
        spec: Any, status: Any, other: Any, meta: dict[str, Any], typed: str, subresource: str) -> None:
    """``record_update`` of a create (one walk, the wire form built directly) writes the same
    managedFields as the general update path (compare, exclude, strip, encode)."""
    import actors._managed as managed
    import kinds._fieldpath as fpm
    from actors._apply import apply_type, reset_fields
    from kinds import Registry

    rdef = Registry().get("", "v1", {"pod": "pods", "cm": "configmaps", "none": "pods"}[typed])
    t = apply_type(rdef) if typed != "none" else fpm.UNTYPED
    ignored = reset_fields(rdef, "") if typed == "pod" else {}
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status, "data": other,
           "x": other}
    outs = []
    for fast in (True, False):
        managed._FAST_CREATE = fast
        try:
            o = copy.deepcopy(obj)
            record_update(None, o, manager="m", api_version="v1", now="2026-01-01T00:00:00Z", subresource=subresource,
                          type_=t, ignored=ignored)
            outs.append(o)
        finally:
            managed._FAST_CREATE = True
    assert outs[0] == outs[1]
    assert msgspec.json.encode(outs[0]) == msgspec.json.encode(outs[1])  # the same order too


def _reference_cmp(lhs: Any, rhs: Any, t: Any, c: Any, path: tuple[str, ...]) -> None:
    """``kinds._fieldpath._cmp`` as it was before unchanged members were skipped in the loops
    (the reference of the property below)."""
    import kinds._fieldpath as fp

    absent = fp._ABSENT
    if lhs is rhs or (type(lhs) is type(rhs) and lhs == rhs):
        return
    if lhs is absent:
        sub = fp._added(rhs, t, bool(path) and (len(path) > 1 or path[0] not in fp._TOP_STRUCTS))
        if sub is not None:
            node = c.added
            for pe in path:
                node = node.setdefault(pe, {})
            node.update(sub)
        return
    lt = t.deduce(lhs) if lhs is not absent and lhs is not None else None
    rt = t.deduce(rhs) if rhs is not absent and rhs is not None else None
    kinds = {x.kind if not x.leaf() else "leaf" for x in (lt, rt) if x is not None}
    if not kinds:
        return
    if "leaf" in kinds or len(kinds) > 1:
        if rhs is absent:
            fp._insert(c.removed, path)
        elif lhs != rhs:
            fp._insert(c.modified, path)
        return
    if kinds.pop() == "map":
        ld = lhs if isinstance(lhs, dict) else {}
        rd = rhs if isinstance(rhs, dict) else {}
        mt = rt or lt
        for k, rv in rd.items():
            _reference_cmp(ld.get(k, absent), rv, mt.field(k), c, (*path, "f:" + k))
        for k, lv in ld.items():
            if k not in rd:
                _reference_cmp(lv, absent, mt.field(k), c, (*path, "f:" + k))
        if path and (len(path) > 1 or path[0] not in ("f:metadata", "f:spec", "f:status")):
            if lhs is None:
                fp._insert(c.added, path)
            elif rhs is absent or rhs is None:
                fp._insert(c.removed, path)
        return
    lt_ = rt or lt
    li = fp._index(lt_, lhs if isinstance(lhs, list) else [])
    ri = fp._index(lt_, rhs if isinstance(rhs, list) else [])
    et = lt_.elem()
    for pe, rv in ri.items():
        lv = li.get(pe, absent)
        _reference_cmp(lv, rv, et, c, (*path, pe))
        if lv is absent:
            fp._insert(c.added, (*path, pe))
    for pe, lv in li.items():
        if pe not in ri:
            _reference_cmp(lv, absent, et, c, (*path, pe))
            fp._insert(c.removed, (*path, pe))


@settings(max_examples=400, deadline=None)
@given(base=st.fixed_dictionaries({}, optional={"spec": _spec, "status": _json, "metadata": _meta, "data": _json}),
       left=st.dictionaries(st.sampled_from(["spec", "status", "data", "x"]), _spec, max_size=2),
       right=st.dictionaries(st.sampled_from(["spec", "status", "data", "x"]), _spec, max_size=2),
       typed=st.sampled_from(["pod", "cm", "none"]), share=st.booleans())
def test_compare_skips_unchanged_members_with_the_same_result(base: dict[str, Any], left: dict[str, Any],
                                                              right: dict[str, Any], typed: str, share: bool) -> None:
    """``compare`` skips members equal on both sides before looking up their type or building
    their path: the same Added, Modified and Removed sets as the member-by-member reference, on
    objects that share most of their members (as an update's old and new do)."""
    import kinds._fieldpath as fp
    from actors._apply import apply_type
    from kinds import Registry

    t = apply_type(Registry().get("", "v1", {"pod": "pods", "cm": "configmaps"}[typed])) if typed != "none" \
        else fp.UNTYPED
    lhs = {**copy.deepcopy(base), **left}
    rhs = {**(base if share else copy.deepcopy(base)), **right}
    got = fp.compare(lhs, rhs, t)
    want = fp.Comparison()
    _reference_cmp(lhs, rhs, t, want, ())
    assert (got.added, got.modified, got.removed) == (want.added, want.modified, want.removed)


def test_manager_identities_are_cached_only_when_short() -> None:
    """Identities are cached (a write builds one per entry), but a client's long manager name is
    not kept in the cache: the same identity either way."""
    import actors._managed as managed

    long_name = "m" * 5000
    before = (managed._cached_ident.cache_info().currsize, managed._cached_ident_parts.cache_info().currsize)
    ident = managed._ident(long_name, "Update", "v1", "")
    assert ident == managed._build_ident(long_name, "Update", "v1", "")
    assert managed._ident_parts(ident) == (long_name, "Update", "")
    assert (managed._cached_ident.cache_info().currsize, managed._cached_ident_parts.cache_info().currsize) == before
    short = managed._ident("kubectl", "Apply", "v1", "status")
    assert short == '{"manager":"kubectl","operation":"Apply","subresource":"status"}'
    assert managed._ident_parts(short) == ("kubectl", "Apply", "status")


_leafy = st.sampled_from(["1", "2"]) | st.dictionaries(st.sampled_from(["x", "y"]), st.sampled_from(["1", "2"]),
                                                       max_size=2)
_version = st.fixed_dictionaries({
    "metadata": st.fixed_dictionaries({"name": st.just("o")}, optional={
        "labels": st.dictionaries(st.sampled_from(["l1", "l2"]), st.sampled_from(["1", "2"]), max_size=2),
        "annotations": st.dictionaries(st.sampled_from(["a1", "a2"]), st.sampled_from(["1", "2"]), max_size=2),
        "generation": st.integers(1, 2), "uid": st.sampled_from(["u1", "u2"])}),
    "data": st.dictionaries(st.sampled_from(["a", "b", "c"]), _leafy, max_size=3)},
    optional={"spec": _spec, "status": _leafy})


@settings(max_examples=400, deadline=None)
@given(versions=st.lists(_version, min_size=2, max_size=5),
       steps=st.lists(st.sampled_from(["m1", "m2", "m3", "apply"]), min_size=5, max_size=5),
       times=st.lists(st.integers(0, 3), min_size=5, max_size=5),
       typed=st.sampled_from(["pod", "cm", "none"]), subresource=st.sampled_from(["", "status"]),
       sent=st.sampled_from(["none", "same", "other"]), api_version=st.sampled_from(["v1", "v2"]),
       again=st.booleans())
def test_an_update_on_the_stored_entries_is_recorded_as_the_general_update_records_it(
        versions: list[dict[str, Any]], steps: list[str], times: list[int], typed: str, subresource: str,
        sent: str, api_version: str, again: bool) -> None:
    """``record_update`` of an update whose changes the writer alone owns (or nobody does) works
    on the stored entries (the writer's time moved, or its entry added) instead of decoding,
    updating and encoding every manager's set: the same managedFields, in the same order, as the
    general path, after a history of updates and applies by several managers."""
    import actors._managed as managed
    import kinds._fieldpath as fpm
    from actors._apply import apply_type, reset_fields
    from kinds import Registry

    rdef = Registry().get("", "v1", {"pod": "pods", "cm": "configmaps", "none": "pods"}[typed])
    t = apply_type(rdef) if typed != "none" else fpm.UNTYPED

    def full(v: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": rdef.kind, **copy.deepcopy(v)}

    def now(i: int) -> str:
        return f"2026-01-01T00:00:0{times[i]}Z"

    last = steps[0] if steps[0] != "apply" else "m0"  # the last updater: the writer again when steps[-1] is "apply"
    managed._FAST_UPDATE = False
    try:
        obj = full(versions[0])
        record_update(None, obj, manager=steps[0] if steps[0] != "apply" else "m0", api_version="v1", now=now(0),
                      type_=t, ignored=reset_fields(rdef, ""))
        for i, v in enumerate(versions[1:-1], 1):
            if steps[i] == "apply":
                try:
                    obj = record_apply(obj, full(v), manager="ap", api_version="v1", now=now(i), force=True,
                                       type_=t, ignored=reset_fields(rdef, ""))
                except ConflictStatus:
                    pass
                continue
            new = full(v)
            record_update(obj, new, manager=steps[i], api_version="v1", now=now(i), type_=t,
                          ignored=reset_fields(rdef, "", obj, new))
            obj, last = new, steps[i]
    finally:
        managed._FAST_UPDATE = True
    manager = steps[-1] if steps[-1] != "apply" else last
    final = full(versions[-1])
    if again:  # the writer changes again what it changed last (a read-modify-write loop, B3's)
        managed._FAST_UPDATE = False
        try:
            new = copy.deepcopy(obj)
            new["metadata"].pop("managedFields", None)
            new["metadata"].setdefault("annotations", {})["rev"] = "1"
            record_update(obj, new, manager=manager, api_version=api_version, now=now(4), subresource=subresource,
                          type_=t, ignored=reset_fields(rdef, subresource, obj, new))
            obj = new
        finally:
            managed._FAST_UPDATE = True
        final = copy.deepcopy(obj)
        final["metadata"].pop("managedFields", None)
        final["metadata"]["annotations"]["rev"] = "2"
    outs = []
    for fast in (True, False):
        managed._FAST_UPDATE = fast
        try:
            old, new = copy.deepcopy(obj), copy.deepcopy(final)
            if sent == "same" and "managedFields" in old["metadata"]:
                new["metadata"]["managedFields"] = copy.deepcopy(old["metadata"]["managedFields"])
            elif sent == "other":
                new["metadata"]["managedFields"] = [{"manager": "x", "operation": "Update", "apiVersion": "v1",
                                                     "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {}}}]
            record_update(old, new, manager=manager, api_version=api_version, now="2026-01-01T00:00:02Z",
                          subresource=subresource, type_=t, ignored=reset_fields(rdef, subresource, old, new))
            outs.append(new.get("metadata", {}).get("managedFields"))
        finally:
            managed._FAST_UPDATE = True
    assert outs[0] == outs[1]
    assert msgspec.json.encode(outs[0]) == msgspec.json.encode(outs[1])  # the same order too
