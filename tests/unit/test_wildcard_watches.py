"""Watches across tenants (gateway/_wildcard.py, gateway._app.WatchStreams) ended when their custom
resource's kind is no longer served across tenants as it was: the projection's CRD view calls
``WatchStreams.kinds_changed`` after each change of a tenant's kinds, once the registry has it."""

from __future__ import annotations

import msgspec

from gateway._app import WatchStreams
from gateway._wildcard import still_served
from kinds import Registry
from projections._crds import CrdView
from tests.unit.test_registry_tenants import crd


def other_schema() -> bytes:
    c = msgspec.json.decode(crd())
    c["spec"]["versions"][0]["schema"] = {"openAPIV3Schema": {"type": "object",
                                                              "x-kubernetes-preserve-unknown-fields": True}}
    return msgspec.json.encode(c)


async def test_a_watch_ends_when_another_tenant_defines_its_kind_differently() -> None:
    reg, view, watches = Registry(), CrdView(), WatchStreams()
    view.attach(reg)
    view.on_change(watches.kinds_changed)
    view.apply("t1", "things.example.com", crd())
    view.apply("t2", "things.example.com", crd())
    every = reg.for_tenant("*")
    things = every.get("example.com", "v1", "things")
    configmaps = every.get("", "v1", "configmaps")
    assert things is not None and configmaps is not None
    watched = watches.open(60, still_served(reg, "*", things, every.storage_of(things)))
    plain = watches.open(60)  # a built-in kind's watch: no check
    # Another kind in a third tenant, an equal CRD there, that CRD terminating (verbs aside): still served.
    view.apply("t3", "widgets.example.com", crd(plural="widgets", kind="Widget"))
    view.apply("t3", "things.example.com", crd())
    terminating = msgspec.json.decode(crd())
    terminating["metadata"]["deletionTimestamp"] = "2026-11-30T00:00:00Z"
    view.apply("t3", "things.example.com", msgspec.json.encode(terminating))
    assert not watched.cancel_called
    # t2 changes its schema: no longer served across tenants (409): the watch ends, the other goes on.
    view.apply("t2", "things.example.com", other_schema())
    assert watched.cancel_called and not plain.cancel_called
    watches.close(watched)
    # A watch opened while the kind is not served ends at once; one of the kind served again goes on.
    assert watches.open(60, still_served(reg, "*", things, every.storage_of(things))).cancel_called
    view.apply("t2", "things.example.com", None)
    again = watches.open(60, still_served(reg, "*", things, every.storage_of(things)))
    assert not again.cancel_called
    # The last CRD defining it goes: the watch ends.
    view.apply("t1", "things.example.com", None)
    view.apply("t3", "things.example.com", None)
    assert again.cancel_called
