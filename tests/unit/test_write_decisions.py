"""The write side's pure decisions (actors/_decide.py): (state, message) -> decision, and the
gateway's edges around them: the typed options of each verb (gateway/_options.py) and the one
mapping of domain results to HTTP (gateway/_status.write_response)."""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import pytest

from actors import APPLY_PATCH, MERGE_PATCH, BadRequest, Conflict, Invalid
from actors import messages as msg
from actors._apply import apply_type, reset_fields
from actors._decide import (
    NoChange,
    check_resource_version,
    decide_delete,
    decide_finalize,
    decide_update,
)
from actors._managed import record_update
from actors.messages import Delete, Preconditions, Request, Update, UserInfo
from gateway._options import write_options
from gateway._status import write_response
from kinds import Registry
from kinds._strategy import strategy_for
from projections import Entry

REG = Registry()
CM = REG.by_resource("", "configmaps")
NS = REG.by_resource("", "namespaces")
DEPLOY = REG.by_resource("apps", "deployments")
RC = REG.by_resource("", "replicationcontrollers")
NOW = "2026-11-29T22:00:00Z"
USER = UserInfo(name="alice")


def stored(rdef: Any, name: str, seq: int, **extra: Any) -> tuple[Entry, dict[str, Any]]:
    """An object as the projection holds it: its Entry (version ``seq``) and the decoded object."""
    meta = {"name": name, "uid": f"uid-{name}", "creationTimestamp": "2026-01-01T00:00:00Z",
            "resourceVersion": str(seq), **extra.pop("metadata", {})}
    if rdef.namespaced:
        meta["namespace"] = "default"
    obj = {"apiVersion": rdef.api_version, "kind": rdef.kind, "metadata": meta, **extra}
    return Entry(seq, msgspec.json.encode(obj), {}, {}), obj


def created(name: str, seq: int, **extra: Any) -> tuple[Entry, dict[str, Any]]:
    """A ConfigMap as a create stores it: with the creating manager's managedFields."""
    _, obj = stored(CM, name, seq, **extra)
    record_update(None, obj, manager="creator", api_version="v1", now=NOW, type_=apply_type(CM),
                  ignored=reset_fields(CM, ""))
    return Entry(seq, msgspec.json.encode(obj), {}, {}), obj


def request(rdef: Any, verb: str, name: str, options: Any = None, subresource: str = "") -> Request:
    return Request(verb=verb, rdef=rdef, namespace="default" if rdef.namespaced else "", name=name, user=USER,
                   user_agent="kubectl/v1.33.0 (linux/amd64) kubernetes/abc", options=options,
                   subresource=subresource)


# ---- delete ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "b.c", "x" * 63])
def test_delete_without_finalizers_is_a_tombstone_and_leaves_the_state_alone(name: str) -> None:
    entry, old = stored(CM, name, 7, data={"k": "v"})
    before = copy.deepcopy(old)
    decision = decide_delete(CM, entry, old, Delete(), now=NOW)
    assert isinstance(decision, tuple) and decision[0] == "delete"
    assert decision[1]["metadata"]["name"] == name and "resourceVersion" not in decision[1]["metadata"]
    assert old == before  # admission still sees the object as stored


def test_delete_with_finalizers_marks_the_object() -> None:
    for i, finalizers in enumerate([["example.com/a"], ["example.com/a", "example.com/b"]]):
        entry, old = stored(CM, f"cm{i}", 10 + i, metadata={"finalizers": finalizers})
        etype, new = decide_delete(CM, entry, old, Delete(), now=NOW)  # type: ignore[misc]
        assert etype == "put"
        assert new["metadata"]["deletionTimestamp"] == NOW
        assert new["metadata"]["deletionGracePeriodSeconds"] == 0
        assert new["metadata"]["finalizers"] == finalizers
        assert "deletionTimestamp" not in old["metadata"]


def test_delete_preconditions() -> None:
    entry, old = stored(CM, "cm", 5)
    with pytest.raises(Conflict) as e:
        decide_delete(CM, entry, old, Delete(preconditions=Preconditions(uid="other")), now=NOW)
    assert e.value.message == ('Operation cannot be fulfilled on configmaps "cm": Precondition failed: UID in '
                               'precondition: other, UID in object meta: uid-cm')
    with pytest.raises(Conflict) as e:
        decide_delete(CM, entry, old, Delete(preconditions=Preconditions(resource_version="4")), now=NOW)
    assert e.value.message == ('Operation cannot be fulfilled on configmaps "cm": Precondition failed: '
                               'ResourceVersion in precondition: 4, ResourceVersion in object meta: 5')
    ok = Delete(preconditions=Preconditions(uid="uid-cm", resource_version="5"))
    assert decide_delete(CM, entry, old, ok, now=NOW)[0] == "delete"  # type: ignore[index]


@pytest.mark.parametrize(("policy", "etype", "finalizers"), [
    ("Foreground", "put", ["foregroundDeletion"]),
    ("Orphan", "put", ["orphan"]),
    ("Background", "delete", None),
    (None, "delete", None),
])
def test_delete_propagation_policy(policy: str | None, etype: str, finalizers: list[str] | None) -> None:
    entry, old = stored(DEPLOY, "web", 3, spec={"replicas": 1})
    decision = decide_delete(DEPLOY, entry, old, Delete(propagation_policy=policy), now=NOW)
    assert isinstance(decision, tuple)
    assert decision[0] == etype
    assert decision[1]["metadata"].get("finalizers") == finalizers


def test_delete_orphans_by_default_for_the_kinds_kube_does() -> None:
    entry, old = stored(RC, "rc", 3)  # core/v1 ReplicationControllers orphan by default, as in kube
    decision = decide_delete(RC, entry, old, Delete(), now=NOW)
    assert isinstance(decision, tuple) and decision[0] == "put"
    assert decision[1]["metadata"]["finalizers"] == ["orphan"]
    assert decide_delete(RC, entry, old, Delete(propagation_policy="Background"), now=NOW)[0] == "delete"  # type: ignore[index]
    entry, old = stored(DEPLOY, "web", 3)
    decision = decide_delete(DEPLOY, entry, old, Delete(orphan_dependents=True), now=NOW)
    assert isinstance(decision, tuple) and decision[1]["metadata"]["finalizers"] == ["orphan"]


def test_a_second_delete_changes_only_the_gc_finalizers() -> None:
    entry, old = stored(DEPLOY, "web", 9, metadata={"deletionTimestamp": NOW, "finalizers": ["orphan"]})
    same = decide_delete(DEPLOY, entry, old, Delete(propagation_policy="Orphan"), now=NOW)
    assert isinstance(same, NoChange) and same.entry is entry
    gone = decide_delete(DEPLOY, entry, old, Delete(propagation_policy="Background"), now=NOW)
    assert isinstance(gone, tuple) and gone[0] == "delete"  # its last finalizer went
    entry, old = stored(DEPLOY, "api", 9, metadata={"deletionTimestamp": NOW,
                                                     "finalizers": ["example.com/x", "orphan"]})
    etype, new = decide_delete(DEPLOY, entry, old, Delete(propagation_policy="Foreground"), now=NOW)  # type: ignore[misc]
    assert etype == "put" and new["metadata"]["finalizers"] == ["example.com/x", "foregroundDeletion"]


def test_a_namespace_is_deleted_gracefully_then_finalized() -> None:
    entry, old = stored(NS, "team-a", 4, spec={"finalizers": ["kubernetes"]}, status={"phase": "Active"})
    etype, marked = decide_delete(NS, entry, old, Delete(), now=NOW)  # type: ignore[misc]
    assert etype == "put" and marked["status"] == {"phase": "Terminating"}
    assert marked["metadata"]["deletionTimestamp"] == NOW and old["status"] == {"phase": "Active"}
    with pytest.raises(Conflict, match="the namespace is not terminating"):
        decide_finalize(NS, entry, copy.deepcopy(old))
    entry2 = Entry(5, msgspec.json.encode(marked), {}, {})
    etype, final = decide_finalize(NS, entry2, marked)  # type: ignore[misc]
    assert etype == "delete" and final["spec"] == {"finalizers": []}
    assert strategy_for(NS).finalizable and not strategy_for(CM).finalizable


# ---- update ---------------------------------------------------------------------------------------


def test_update_carries_server_fields_and_records_the_manager() -> None:
    entry, old = created("cm", 12, data={"a": "1"})
    new = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "resourceVersion": "12"},
           "data": {"a": "2"}}
    decision = decide_update(request(CM, "update", "cm", Update(field_manager="tester")), entry, old, new, now=NOW)
    assert isinstance(decision, tuple) and decision[0] == "put"
    meta = decision[1]["metadata"]
    assert meta["uid"] == "uid-cm" and meta["creationTimestamp"] == "2026-01-01T00:00:00Z"
    assert "resourceVersion" not in meta and meta["namespace"] == "default"
    assert [m["manager"] for m in meta["managedFields"]] == ["creator", "tester"]


def test_update_without_a_change_writes_nothing() -> None:
    for i in range(3):
        entry, old = created(f"cm{i}", 12 + i, data={"a": str(i)})
        req = request(CM, "update", f"cm{i}", Update(field_manager="creator"))
        same = decide_update(req, entry, old, copy.deepcopy(old), now=NOW)
        assert isinstance(same, NoChange) and same.entry is entry


def test_update_conflicts() -> None:
    entry, old = stored(CM, "cm", 12)
    with pytest.raises(Conflict) as e:
        check_resource_version(CM, "cm", entry, 11)
    assert e.value.message.endswith("the object has been modified; please apply your changes to the latest "
                                    "version and try again")
    check_resource_version(CM, "cm", entry, 12)
    check_resource_version(CM, "cm", entry, None)
    new = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "uid": "someone-else"}}
    with pytest.raises(Conflict, match="Precondition failed: UID in precondition: someone-else"):
        decide_update(request(CM, "update", "cm", Update()), entry, old, new, now=NOW)


def test_update_of_an_object_being_deleted() -> None:
    entry, old = stored(CM, "cm", 20, metadata={"deletionTimestamp": NOW, "finalizers": ["example.com/a"]})
    more = copy.deepcopy(old)
    more["metadata"]["finalizers"] = ["example.com/a", "example.com/b"]
    with pytest.raises(Invalid) as e:
        decide_update(request(CM, "update", "cm", Update()), entry, old, more, now=NOW)
    assert e.value.causes[0].field == "metadata.finalizers"
    done = copy.deepcopy(old)
    done["metadata"]["finalizers"] = []
    decision = decide_update(request(CM, "update", "cm", Update()), entry, old, done, now=NOW)
    assert isinstance(decision, tuple) and decision[0] == "delete"  # the last finalizer went


def test_update_refuses_another_namespace() -> None:
    entry, old = stored(CM, "cm", 3)
    new = copy.deepcopy(old)
    new["metadata"]["namespace"] = "elsewhere"
    with pytest.raises(BadRequest, match="does not match the namespace"):
        decide_update(request(CM, "update", "cm", Update()), entry, old, new, now=NOW)


# ---- the gateway's options ------------------------------------------------------------------------


def test_options_of_each_verb() -> None:
    assert write_options("get", {}) is None
    assert write_options("create", {}) == msg.Create()
    assert write_options("create", {"dryRun": "All", "fieldManager": "me", "fieldValidation": "Strict"}) == msg.Create(
        dry_run=True, field_manager="me", field_validation="Strict")
    assert write_options("update", {"fieldValidation": "Ignore"}) == Update(field_validation="Ignore")
    assert write_options("patch", {}, patch_type=MERGE_PATCH) == msg.Patch()
    assert write_options("patch", {"fieldManager": "m", "force": "true"}, patch_type=APPLY_PATCH) == msg.Apply(
        field_manager="m", force=True)
    assert write_options("patch", {"fieldManager": "m", "force": "nope"}, patch_type=APPLY_PATCH) == msg.Apply(
        field_manager="m", force=False)


@pytest.mark.parametrize(("verb", "query", "patch_type", "error", "message"), [
    ("create", {"dryRun": "Some"}, "", BadRequest, 'Unsupported value: "Some": supported values: "All"'),
    ("update", {"fieldValidation": "Loud"}, "", BadRequest, 'fieldValidation: Unsupported value: "Loud"'),
    ("create", {"fieldManager": "x" * 129}, "", Invalid, "CreateOptions.meta.k8s.io"),
    ("patch", {}, APPLY_PATCH, Invalid, "fieldManager: Required value: is required for apply patch"),
    ("patch", {"force": "true"}, MERGE_PATCH, Invalid, "force: Forbidden: may not be specified for non-apply patch"),
    ("delete", {"propagationPolicy": "Sideways"}, "", BadRequest, 'Unsupported value: "Sideways"'),
    ("delete", {"propagationPolicy": "Orphan", "orphanDependents": "true"}, "", Invalid,
     "orphanDependents and deletionPropagation cannot be both set"),
])
def test_bad_options(verb: str, query: dict[str, str], patch_type: str, error: type, message: str) -> None:
    with pytest.raises(error) as e:
        write_options(verb, query, patch_type=patch_type)
    assert message in e.value.message


def test_delete_options_from_the_body_and_the_query() -> None:
    got = write_options("delete", {"propagationPolicy": "Background", "gracePeriodSeconds": "30"}, body={
        "propagationPolicy": "Foreground", "dryRun": ["All"],
        "preconditions": {"uid": "u1", "resourceVersion": "42"}})
    assert got == Delete(dry_run=True, propagation_policy="Foreground", grace_period_seconds=30,
                         preconditions=Preconditions(uid="u1", resource_version="42"))
    assert write_options("delete", {"dryRun": "All", "orphanDependents": "false"}) == Delete(
        dry_run=True, orphan_dependents=False)
    with pytest.raises(BadRequest, match="must be a DeleteOptions object"):
        write_options("delete", {}, body=[1])
    with pytest.raises(BadRequest, match="invalid resourceVersion 42"):
        write_options("delete", {}, body={"preconditions": {"resourceVersion": 42}})
    coll = write_options("deletecollection", {"labelSelector": "app=web", "fieldSelector": "metadata.name=a",
                                              "propagationPolicy": "Orphan"})
    assert coll == msg.DeleteCollection(propagation_policy="Orphan", label_selector="app=web",
                                    field_selector="metadata.name=a")


# ---- results to HTTP ------------------------------------------------------------------------------


def test_write_response() -> None:
    assert write_response(msg.Stored(object=b'{"a":1}', created=True)) == (201, b'{"a":1}')
    assert write_response(msg.Stored(object=b'{"a":1}')) == (200, b'{"a":1}')
    code, body = write_response(msg.Deleted(name="cm", group="", kind="configmaps", uid="u"))
    assert code == 200 and body == (b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success",'
                                    b'"details":{"name":"cm","group":"","kind":"configmaps","uid":"u"}}')
    pending = msg.Deleted(name="cm", group="", kind="configmaps", object=b'{"b":2}')
    assert write_response(pending) == (200, b'{"b":2}')
    assert write_response(msgspec.structs.replace(pending, cascading=True)) == (202, b'{"b":2}')
    assert write_response(msg.DeletedCollection(list_kind="ConfigMapList", api_version="v1", resource_version=9,
                                            items=(b'{"x":1}', b'{"y":2}'))) == (
        200, (b'{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"9"},'
              b'"items":[{"x":1},{"y":2}]}'))
    assert write_response(msg.Succeeded()) == (
        201, b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":201}')
