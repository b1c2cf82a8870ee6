"""The write side's decisions, as plain functions: (state, message) -> decision.

``state`` is the object as the projection holds it (its ``Entry``: version and bytes, and the
decoded object), ``message`` the request with its typed options (``actors.messages``). A
decision is what to append — ("put" | "delete", the new object) — or :class:`NoChange`; a
refusal is an ``ApiError`` raised. Nothing here awaits or does I/O: the resource actor
(``actors._resource``) reads the state, runs admission, appends with CAS and retries.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from typing import Any

from kinds import ResourceDef
from kinds import _subresources as subresources
from kinds._errors import BadRequest, Cause, Conflict, NotFound, invalid
from kinds._gc import default_propagation, deletion_finalizers
from kinds._strategy import strategy_for
from projections import Entry

from ._apply import apply_type, reset_fields
from ._managed import manager_from_user_agent, record_update
from .messages import Delete, ObjectOptions, Request


class NoChange:
    """A decision that writes nothing: answer with the current state."""

    __slots__ = ("entry",)

    def __init__(self, entry: Entry) -> None:
        self.entry = entry


Decision = tuple[str, dict[str, Any]] | NoChange  # ("put" | "delete", object)
#: A check of the final object of a create, update or patch (RBAC's escalation prevention).
Guard = Callable[[Request, dict[str, Any], dict[str, Any] | None], None]


_second: list[Any] = [None, ""]  # the last second formatted, and its text


def now_rfc3339() -> str:
    """The time now, to the second, as kube writes timestamps (``2026-11-30T01:30:18Z``); formatted
    once a second (strftime costs ~10 us, several times per write)."""
    t = time.time()
    sec = int(t)
    if _second[0] != sec:
        _second[1] = datetime.datetime.fromtimestamp(sec, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        _second[0] = sec
    return str(_second[1])


def not_found(rdef: ResourceDef, name: str) -> NotFound:
    return NotFound(f'{rdef.plural} "{name}" not found', name=name, group=rdef.group, kind=rdef.plural)


def conflict(rdef: ResourceDef, name: str, why: str = "") -> Conflict:
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return Conflict(f'Operation cannot be fulfilled on {rdef.plural}{"." + rdef.group if rdef.group else ""} '
                    f'"{name}": {why}', name=name, group=rdef.group, kind=rdef.plural)


def field_manager(req: Request) -> str:
    """The manager a write records: the one the client named, else one from its user agent."""
    opts = req.options
    given = opts.field_manager if isinstance(opts, ObjectOptions) else ""
    return given or manager_from_user_agent(req.user_agent)


def set_namespace(req: Request, meta: dict[str, Any]) -> None:
    """The object's namespace is the request's (400 when the body names another); none for a
    cluster-scoped kind."""
    assert req.rdef is not None
    if req.rdef.namespaced:
        ns = meta.get("namespace")
        if ns not in (None, "") and ns != req.namespace:
            raise BadRequest("the namespace of the provided object does not match the namespace sent on the "
                             "request")
        meta["namespace"] = req.namespace
    else:
        meta.pop("namespace", None)


def validate(req: Request, obj: dict[str, Any], old: dict[str, Any] | None, guard: Guard | None = None) -> None:
    """The kind's validation of the object to store (422), then the ``guard``."""
    assert req.rdef is not None
    strategy = strategy_for(req.rdef)
    if req.subresource and old is not None:
        causes = strategy.validate_subresource(req.subresource, obj, old, req.rdef)
    else:
        causes = strategy.validate(obj, old, req.rdef)
    if causes:
        name = obj["metadata"].get("name") or obj["metadata"].get("generateName", "")
        raise invalid(req.rdef.kind, name, causes, group=req.rdef.group)
    if guard is not None:
        guard(req, obj, old)


def same(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Equal but for resourceVersion: a no-op write is not written (managedFields change only with
    the object, or with a change of ownership, which is written)."""
    om, nm = old["metadata"], new["metadata"]
    if len(old) != len(new) or (len(om) - ("resourceVersion" in om)) != (len(nm) - ("resourceVersion" in nm)):
        return False
    # Member by member, as dict equality compares (identity first), without copying either side.
    for k, v in old.items():
        if k != "metadata" and (k not in new or not (v is (w := new[k]) or v == w)):
            return False
    for k, v in om.items():
        if k != "resourceVersion" and (k not in nm or not (v is (w := nm[k]) or v == w)):
            return False
    return True


def check_resource_version(rdef: ResourceDef, name: str, entry: Entry, rv: int | None) -> None:
    """An update's precondition (the body's ``metadata.resourceVersion``): 409 unless current."""
    if rv is not None and rv != entry.seq:
        raise conflict(rdef, name)


def decide_update(req: Request, entry: Entry, old: dict[str, Any], new: dict[str, Any], *, now: str,
                  record: bool = True, manager_subresource: str | None = None,
                  guard: Guard | None = None) -> Decision:
    """An update of ``old`` (version ``entry``) to ``new``: the server-owned fields carried over,
    the kind's update preparation and the status/spec split applied, validated (422), the
    managers recorded; nothing to write when nothing changed; the tombstone when the object was
    being deleted and its last finalizer goes. ``new`` is modified in place."""
    rdef = req.rdef
    assert rdef is not None
    om, nm = old["metadata"], new["metadata"]
    uid = nm.get("uid")
    if uid and uid != om.get("uid"):
        raise conflict(rdef, om["name"], f"Precondition failed: UID in precondition: {uid}, UID in "
                                         f"object meta: {om.get('uid')}")
    for f in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "name"):
        if f in om:
            nm[f] = om[f]
        else:
            nm.pop(f, None)
    set_namespace(req, nm)
    nm.pop("resourceVersion", None)
    strategy = strategy_for(rdef)
    if not req.subresource:
        # A subresource's write has its own rules (below); the kind's update strategy is the
        # main resource's.
        strategy.prepare_for_update(new, old)
    # The status/spec split and metadata.generation, from the kind's definition.
    subresources.prepare_update(rdef, req.subresource, new, old, now)
    if not rdef.generation:
        nm.pop("generation", None)
    if om.get("deletionTimestamp"):
        added = set(nm.get("finalizers") or []) - set(om.get("finalizers") or [])
        if added:
            raise invalid(rdef.kind, om["name"], [Cause(
                "FieldValueForbidden", "Forbidden: no new finalizers can be added if the object is being "
                                       "deleted, found new finalizers " + repr(sorted(added)),
                "metadata.finalizers")], group=rdef.group)
    validate(req, new, old, guard)
    causes = subresources.validate_update(req.subresource, new, old)
    if causes:
        raise invalid(rdef.kind, om["name"], causes, group=rdef.group)
    if record:
        sub = req.subresource if manager_subresource is None else manager_subresource
        record_update(old, new, manager=field_manager(req), api_version=rdef.api_version, now=now,
                      subresource=sub, type_=apply_type(rdef), ignored=reset_fields(rdef, sub, old, new))
    if same(old, new):
        return NoChange(entry)
    if om.get("deletionTimestamp") and not nm.get("finalizers"):
        return ("delete", new)
    return ("put", new)


def check_delete_preconditions(rdef: ResourceDef, name: str, entry: Entry, old: dict[str, Any],
                               opts: Delete) -> None:
    """A delete's preconditions (uid, resourceVersion): 409 with kube's message unless both hold."""
    pre, meta = opts.preconditions, old["metadata"]
    if pre.uid and pre.uid != meta.get("uid"):
        raise conflict(rdef, name, f"Precondition failed: UID in precondition: {pre.uid}, UID "
                                   f"in object meta: {meta.get('uid')}")
    if pre.resource_version and pre.resource_version != str(entry.seq):
        raise conflict(rdef, name, f"Precondition failed: ResourceVersion in precondition: "
                                   f"{pre.resource_version}, ResourceVersion in object meta: {entry.seq}")


def gc_finalizers(rdef: ResourceDef, meta: dict[str, Any], opts: Delete) -> list[str] | None:
    """The object's finalizers after this DELETE's propagation policy (the garbage collector's
    ``orphan`` / ``foregroundDeletion``), or None when they stay as they are."""
    current = list(meta.get("finalizers") or [])
    new = deletion_finalizers(current, {"orphanDependents": opts.orphan_dependents,
                                        "propagationPolicy": opts.propagation_policy},
                              default_propagation(rdef))
    return None if new is current else new


def decide_delete(rdef: ResourceDef, entry: Entry, old: dict[str, Any], opts: Delete, *, now: str) -> Decision:
    """A delete of ``old`` (its preconditions checked first): the tombstone, or — when the kind
    deletes gracefully (finalizers; a Namespace empties first) — the object marked with
    ``deletionTimestamp``; an object already being deleted changes only its GC finalizers.
    ``old`` is not modified."""
    check_delete_preconditions(rdef, old["metadata"].get("name", ""), entry, old, opts)
    obj = {**old, "metadata": dict(old["metadata"])}
    meta = obj["metadata"]
    finalizers = gc_finalizers(rdef, meta, opts)
    if finalizers is not None:
        if finalizers:
            meta["finalizers"] = finalizers
        else:
            meta.pop("finalizers", None)
    pending = strategy_for(rdef).deletion_is_graceful(obj)
    meta.pop("resourceVersion", None)
    if meta.get("deletionTimestamp"):
        # Already being deleted: only the GC finalizers may change (a second DELETE with
        # another policy); with none left, the object goes now.
        if finalizers is None:
            return NoChange(entry)
        return ("put", obj) if pending else ("delete", obj)
    if pending:
        meta["deletionTimestamp"] = now
        meta["deletionGracePeriodSeconds"] = 0
        return ("put", obj)
    return ("delete", obj)


def decide_finalize(rdef: ResourceDef, entry: Entry, old: dict[str, Any]) -> Decision:
    """A controller's finalize of an object it has emptied: its tombstone, if the kind's strategy
    allows it now (409 with the strategy's reason otherwise)."""
    why = strategy_for(rdef).finalize(old)
    if why:
        raise conflict(rdef, old["metadata"].get("name", ""), why)
    old["metadata"].pop("resourceVersion", None)
    return ("delete", old)
