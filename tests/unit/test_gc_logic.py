"""Garbage collection's pure parts: the DELETE's finalizers per propagation policy (store.go
``deletionFinalizersForGarbageCollection``), the kinds' default policies, and the owner index."""

from __future__ import annotations

from actors._gc import OwnerIndex
from bus import Key
from kinds import Registry
from kinds._gc import OwnerRef, default_propagation, deletion_finalizers, gc_view


def test_policy_precedence() -> None:
    assert deletion_finalizers([], {}, "Background") == []
    assert deletion_finalizers([], {}, "Orphan") == ["orphan"]
    assert deletion_finalizers([], {"propagationPolicy": "Foreground"}, "Orphan") == ["foregroundDeletion"]
    assert deletion_finalizers(["a"], {"propagationPolicy": "Orphan"}, "Background") == ["a", "orphan"]
    assert deletion_finalizers(["orphan"], {"propagationPolicy": "Background"}, "Background") == []
    # A GC finalizer on the object beats the kind's default; an explicit option beats both.
    assert deletion_finalizers(["foregroundDeletion"], {}, "Orphan") == ["foregroundDeletion"]
    assert deletion_finalizers(["foregroundDeletion"], {"orphanDependents": True}, "Background") == ["orphan"]
    assert deletion_finalizers([], {"orphanDependents": "false"}, "Orphan") == []
    unchanged = ["x", "orphan"]
    assert deletion_finalizers(unchanged, {"propagationPolicy": "Orphan"}, "Background") is unchanged


def test_default_policies() -> None:
    reg = Registry()
    cm = reg.by_resource("", "configmaps")
    assert cm is not None and default_propagation(cm) == "Background"
    rc = cm.__class__("", "v1", "ReplicationController", "replicationcontrollers", "replicationcontroller", True)
    assert default_propagation(rc) == "Orphan"
    rs = cm.__class__("apps", "v1", "ReplicaSet", "replicasets", "replicaset", True)
    assert default_propagation(rs) == "Background"


def test_gc_view_reads_only_metadata() -> None:
    v = gc_view(b'{"metadata":{"uid":"u","finalizers":["foregroundDeletion"],"deletionTimestamp":"t",'
                b'"ownerReferences":[{"apiVersion":"v1","kind":"ConfigMap","name":"o","uid":"x",'
                b'"blockOwnerDeletion":true},{"kind":"NoUid"}]},"data":{"a":"b"}}')
    assert v is not None and v.uid == "u" and v.foreground and not v.orphaning
    assert [r.uid for r in v.owners] == ["x"] and v.owners[0].blockOwnerDeletion
    assert gc_view(b"[]") is None


def test_owner_index() -> None:
    idx = OwnerIndex()
    a, b = Key("t", "", "configmaps", "ns", "a"), Key("t", "", "configmaps", "ns", "b")
    o1, o2 = OwnerRef("v1", "ConfigMap", "o1", "u1"), OwnerRef("v1", "ConfigMap", "o2", "u2")
    idx.set(a, (o1, o2))
    idx.set(b, (o1,))
    assert idx.dependents("t", "u1") == {a, b} and idx.dependents("t", "u2") == {a}
    assert idx.dependents("other", "u1") == frozenset()
    assert idx.set(a, (o2,)) == (o1, o2)
    assert idx.dependents("t", "u1") == {b}
    idx.set(b, ())
    assert idx.dependents("t", "u1") == frozenset() and len(idx) == 1
