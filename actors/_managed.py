"""``metadata.managedFields``: who owns which fields, for Update and Apply. Pure.

The bookkeeping of kube's ``fieldmanager`` (k8s.io/apiserver ``pkg/endpoints/handlers/fieldmanager``
and ``k8s.io/apimachinery/pkg/util/managedfields/internal``) around the field-set algebra of
``kinds._fieldpath`` (structured-merge-diff's ``Updater``):

- entries are keyed as kube keys managers: (manager, operation, apiVersion, subresource), the
  apiVersion left out for appliers, so an applier keeps one entry across versions;
- an Update owns what it changed (kube's "current-operation" merged into the manager's entry, whose
  ``time`` moves only when it changed something); managedFields a client sends are taken as the
  new state unless empty; ``[]`` or ``[{}]`` resets them; an object without managedFields stays
  without on update (``skipNonAppliedManager``);
- an Apply owns exactly its configuration; the first Apply to an object without managedFields
  gives what was there to ``before-first-apply``; conflicts are kube's 409; ``kubectl``'s apply over
  an object last written by client-side apply may take the fields its last-applied annotation
  still describes (``lastAppliedManager``), and keeps that annotation in step
  (``lastAppliedUpdater``);
- server-set metadata is never owned (``stripMetaManager``); entries are written in kube's order.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

import msgspec

from kinds import Conflict as ConflictStatus
from kinds._errors import Cause
from kinds._fieldpath import (
    MEMBER,
    UNTYPED,
    ConflictError,
    FieldSet,
    ManagerSet,
    TypeNode,
    Updater,
    VersionView,
    compare,
    created_fields_v1,
    difference,
    exclude,
    from_fields_v1,
    intersection,
    path_string,
    to_field_set,
    to_fields_v1,
    union,
)

__all__ = ["LAST_APPLIED", "manager_from_user_agent", "record_apply", "record_update"]

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
BEFORE_FIRST_APPLY = "before-first-apply"
_CURRENT = "\x00current-operation"
_sorted = msgspec.json.Encoder(order="sorted")
_plain = msgspec.json.Encoder()

# stripMetaManager: never owned by anyone.
_STRIP: FieldSet = {
    "f:apiVersion": {MEMBER: {}}, "f:kind": {MEMBER: {}},
    "f:metadata": {MEMBER: {}, **{f"f:{f}": {MEMBER: {}} for f in (
        "name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName", "generation", "managedFields",
        "resourceVersion")}},
}
_SERVER_META = ("managedFields", "resourceVersion")


def manager_from_user_agent(user_agent: str) -> str:
    """The apiserver's default manager: the user agent up to its first '/', at most 128 chars."""
    return (user_agent.split("/", 1)[0] or "unknown")[:128]


# ---- entries <-> managers ----------------------------------------------------------------------


#: Identities are cached only when short: the strings come from clients' managedFields, and a
#: cache of 4,096 entries must not hold megabytes of a long manager name each.
_CACHED_IDENT_LEN = 512


def _ident(manager: str, operation: str, api_version: str, subresource: str) -> str:
    """kube's ``BuildManagerIdentifier``: the entry without fields and time (and without the
    apiVersion for an applier), as JSON. (Cached when short: a pure function of a few strings,
    called for every entry of every write.)"""
    if len(manager) + len(operation) + len(api_version) + len(subresource) <= _CACHED_IDENT_LEN:
        return _cached_ident(manager, operation, api_version, subresource)
    return _build_ident(manager, operation, api_version, subresource)


def _build_ident(manager: str, operation: str, api_version: str, subresource: str) -> str:
    d: dict[str, str] = {"manager": manager, "operation": operation}
    if operation != "Apply":
        d["apiVersion"] = api_version
    if subresource:
        d["subresource"] = subresource
    return json.dumps(d, separators=(",", ":"))


_cached_ident = functools.lru_cache(maxsize=4096)(_build_ident)


class Managed:
    """Decoded managedFields: sets and times by manager identity."""

    def __init__(self) -> None:
        self.sets: dict[str, ManagerSet] = {}
        self.times: dict[str, str] = {}
        # The fieldsV1 each set was decoded from, kept for a set left as it was (not re-encoded).
        self.v1: dict[int, tuple[FieldSet, Any]] = {}


def decode(entries: Any) -> Managed | None:
    """The managers of ``entries``; None when they do not decode (kube then falls back)."""
    m = Managed()
    if not isinstance(entries, list):
        return m if entries is None else None
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("manager", ""), str):
            return None
        op = e.get("operation", "")
        if op not in ("Apply", "Update") or e.get("fieldsType", "FieldsV1") != "FieldsV1":
            return None
        ident = _ident(e.get("manager", ""), op, str(e.get("apiVersion", "")), str(e.get("subresource", "")))
        fields = from_fields_v1(e.get("fieldsV1"))
        m.v1[id(fields)] = (fields, e.get("fieldsV1"))
        m.sets[ident] = ManagerSet(fields, str(e.get("apiVersion", "")), op == "Apply")
        if e.get("time"):
            m.times[ident] = str(e["time"])
    return m


def _ident_parts(ident: str) -> tuple[str, str, str]:
    """(manager, operation, subresource) of an identity :func:`_ident` built (cached when short, as it)."""
    if len(ident) <= _CACHED_IDENT_LEN + 64:
        return _cached_ident_parts(ident)
    return _build_ident_parts(ident)


def _build_ident_parts(ident: str) -> tuple[str, str, str]:
    meta = json.loads(ident)
    return meta["manager"], meta["operation"], meta.get("subresource") or ""


_cached_ident_parts = functools.lru_cache(maxsize=4096)(_build_ident_parts)


def encode(m: Managed) -> list[dict[str, Any]]:
    entries = []
    for ident, ms in m.sets.items():
        manager, operation, subresource = _ident_parts(ident)
        e: dict[str, Any] = {"manager": manager, "operation": operation, "apiVersion": ms.api_version}
        if ident in m.times:
            e["time"] = m.times[ident]
        e["fieldsType"] = "FieldsV1"
        kept = m.v1.get(id(ms.fields))
        e["fieldsV1"] = kept[1] if kept is not None and kept[0] is ms.fields else to_fields_v1(ms.fields)
        if subresource:
            e["subresource"] = subresource
        entries.append(e)
    # kube's sortEncodedManagedFields: operation, time, manager, apiVersion, subresource.
    entries.sort(key=_entry_order)
    return entries


def _is_reset(entries: Any) -> bool:
    return isinstance(entries, list) and (not entries or (len(entries) == 1 and entries[0] == {}))


def _bare(obj: dict[str, Any] | None) -> dict[str, Any]:
    """``obj`` without managedFields and resourceVersion (shallow): what ownership is computed on."""
    if not obj:
        return {}
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return obj
    return {**obj, "metadata": {k: v for k, v in meta.items() if k not in _SERVER_META}}


def _strip(m: Managed) -> None:
    for ident in list(m.sets):
        ms = m.sets[ident]
        if intersection(ms.fields, _STRIP):
            ms.fields = difference(ms.fields, _STRIP)
        if not ms.fields:
            del m.sets[ident]
            m.times.pop(ident, None)


def _store(obj: dict[str, Any], m: Managed) -> None:
    for ident in list(m.times):
        if ident not in m.sets:
            del m.times[ident]
    entries = encode(m)
    if entries:
        obj["metadata"]["managedFields"] = entries
    else:
        obj["metadata"].pop("managedFields", None)


# ---- Update ------------------------------------------------------------------------------------


def record_update(old: dict[str, Any] | None, new: dict[str, Any], *, manager: str, api_version: str,
                  now: str, subresource: str = "", type_: TypeNode = UNTYPED,
                  ignored: FieldSet | None = None) -> None:
    """Set ``new['metadata']['managedFields']`` after an Update (or a create: ``old`` None) by
    ``manager``. ``ignored`` are the fields this write may not change (kube's reset fields)."""
    if old is None and _FAST_CREATE and (type_.kind == "untyped" or (type_.kind == "map" and not type_.atomic_map)):
        _record_create(new, manager, api_version, now, subresource, type_, ignored or {})
        return
    live_entries = (old or {}).get("metadata", {}).get("managedFields")
    sent = new["metadata"].get("managedFields")
    if (old is not None and _FAST_UPDATE and (subresource or sent is None or sent == live_entries)
            and _update_unchanged_owners(old, new, live_entries, manager, api_version, now, subresource, type_,
                                         ignored or {})):
        return
    managed: Managed | None
    if subresource or old is None:
        managed = decode(live_entries) if old is not None else Managed()
    elif _is_reset(sent):
        managed = Managed()
    else:
        managed = decode(sent)
        if managed is None or not managed.sets:
            managed = decode(live_entries)
    if managed is None:
        managed = Managed()
    if not managed.sets and old is not None:
        # skipNonAppliedManager: an object without managedFields is not tracked by updates.
        new["metadata"].pop("managedFields", None)
        return
    ident = _ident(manager, "Update", api_version, subresource)
    Updater(type_, ignored).update(_bare(old), _bare(new), api_version, managed.sets, _CURRENT)
    mine = managed.sets.pop(_CURRENT, None)
    if mine is not None:
        prev = managed.sets.get(ident)
        fields = union(prev.fields, mine.fields) if prev else mine.fields
        managed.sets[ident] = ManagerSet(fields, api_version, False)
        managed.times[ident] = now
    _cap_updaters(managed)
    _strip(managed)
    _store(new, managed)


_FAST_CREATE = True  # tests compare the one-walk create with the general update
_FAST_UPDATE = True  # tests compare the entries-as-stored update with the general one

#: The keys of an entry as :func:`encode` writes them, in its order (time and subresource optional).
_ENTRY_KEYS = frozenset({
    ("manager", "operation", "apiVersion", "time", "fieldsType", "fieldsV1"),
    ("manager", "operation", "apiVersion", "fieldsType", "fieldsV1"),
    ("manager", "operation", "apiVersion", "time", "fieldsType", "fieldsV1", "subresource"),
    ("manager", "operation", "apiVersion", "fieldsType", "fieldsV1", "subresource"),
})


def _entry_order(e: dict[str, Any]) -> tuple[str, str, str, str, str]:
    """kube's sortEncodedManagedFields key (as :func:`encode` sorts)."""
    return e["operation"], e.get("time", ""), e["manager"], e["apiVersion"], e.get("subresource", "")


def _v1_hits(n: dict[str, Any], s: FieldSet) -> bool:
    """Whether the ``fieldsV1`` node ``n`` and the set ``s`` have a member in common
    (``intersection(from_fields_v1(n), s)`` not empty, without building the set)."""
    for k, sub in s.items():
        if k == MEMBER:
            if not n or MEMBER in n:
                return True
        else:
            child = n.get(k)
            if type(child) is dict and _v1_hits(child, sub):
                return True
    return False


def _v1_covers(n: dict[str, Any], s: FieldSet) -> bool:
    """Whether every member of ``s`` is a member of the ``fieldsV1`` node ``n`` (False when unsure)."""
    for k, sub in s.items():
        if k == MEMBER:
            if n and MEMBER not in n:
                return False
        else:
            child = n.get(k)
            if type(child) is not dict or not _v1_covers(child, sub):
                return False
    return True


def _update_unchanged_owners(old: dict[str, Any], new: dict[str, Any], entries: Any, manager: str,
                             api_version: str, now: str, subresource: str, type_: TypeNode,
                             ignored: FieldSet) -> bool:
    """:func:`record_update` for the common update, on the entries as stored (no decode of the
    managers' sets, no encode): when what changes is owned by the writer alone (or by nobody, and
    the writer gets an entry of its own), nothing owned is removed, and the stored entries are as
    :func:`encode` writes them, the result is those entries with the writer's ``time`` moved (or
    its new entry added), sorted. False (nothing done) whenever that does not hold: the general
    path decides. A property test compares the two."""
    if type(entries) is not list or not entries:
        return False
    mine_at = -1
    updaters = 0
    idents = set()
    for i, e in enumerate(entries):
        if type(e) is not dict or tuple(e) not in _ENTRY_KEYS:
            return False
        m, op, av, v1 = e["manager"], e["operation"], e["apiVersion"], e["fieldsV1"]
        sub = e.get("subresource", "")
        if (type(m) is not str or op not in ("Apply", "Update") or type(av) is not str
                or e["fieldsType"] != "FieldsV1" or type(v1) is not dict or not v1 or type(sub) is not str
                or ("subresource" in e and not sub) or ("time" in e and (type(e["time"]) is not str or not e["time"]))):
            return False
        ident = _ident(m, op, av, sub)
        if ident in idents or _v1_hits(v1, _STRIP):
            return False  # two entries of one identity, or fields never owned: the general path
        idents.add(ident)
        if op == "Update":
            updaters += 1
            if m == manager and av == api_version and sub == subresource:
                mine_at = i
    if updaters > MAX_UPDATE_MANAGERS:
        return False
    cmp = compare(_bare(old), _bare(new), type_)
    removed = exclude(cmp.removed, ignored)
    if removed and any(_v1_hits(e["fieldsV1"], removed) for e in entries):
        return False  # a manager loses what was removed: the general path
    changed = exclude(cmp.changed(), ignored)
    out = list(entries)
    if changed:
        if intersection(changed, _STRIP):
            changed = difference(changed, _STRIP)
        for i, e in enumerate(entries):
            if i != mine_at and _v1_hits(e["fieldsV1"], changed):
                return False  # another manager loses fields: the general path
        if mine_at >= 0:
            if not _v1_covers(entries[mine_at]["fieldsV1"], changed):
                return False
            e = entries[mine_at]
            out[mine_at] = _update_entry(e["manager"], e["apiVersion"], now, e["fieldsV1"], subresource)
        elif updaters >= MAX_UPDATE_MANAGERS:
            return False  # one more updater: capped by the general path
        elif changed:
            out.append(_update_entry(manager, api_version, now, to_fields_v1(changed), subresource))
    out.sort(key=_entry_order)
    new["metadata"]["managedFields"] = out
    return True


def _record_create(new: dict[str, Any], manager: str, api_version: str, now: str, subresource: str,
                   type_: TypeNode, ignored: FieldSet) -> None:
    """:func:`record_update` of a create: the one entry of ``manager``, owning every field of the
    object but those never owned, encoded in the same walk that finds them."""
    v1 = created_fields_v1(_bare(new), type_, ignored, _STRIP)
    if v1 is None:
        new["metadata"].pop("managedFields", None)
        return
    new["metadata"]["managedFields"] = [_update_entry(manager, api_version, now, v1, subresource)]


def _update_entry(manager: str, api_version: str, now: str, fields_v1: dict[str, Any],
                  subresource: str) -> dict[str, Any]:
    """An ``Update`` entry as :func:`encode` writes it (its keys in that order)."""
    entry: dict[str, Any] = {"manager": manager, "operation": "Update", "apiVersion": api_version, "time": now,
                             "fieldsType": "FieldsV1", "fieldsV1": fields_v1}
    if subresource:
        entry["subresource"] = subresource
    return entry


MAX_UPDATE_MANAGERS = 10
ANCIENT_CHANGES = "ancient-changes"


def _cap_updaters(m: Managed) -> None:
    """kube's ``capManagersManager``: beyond 10 Update entries, the oldest are merged, per
    apiVersion, into one ``ancient-changes`` entry (which takes the time of the newest merged)."""
    updaters = [i for i, ms in m.sets.items() if not ms.applied]
    if len(updaters) <= MAX_UPDATE_MANAGERS:
        return
    updaters.sort(key=lambda i: (m.times.get(i, ""), i))
    first_of: dict[str, str] = {}
    length = len(updaters)
    for ident in updaters:
        if length <= MAX_UPDATE_MANAGERS:
            break
        ms = m.sets[ident]
        bucket = _ident(ANCIENT_CHANGES, "Update", ms.api_version, "")
        first = first_of.get(ms.api_version)
        if first is None:
            first_of[ms.api_version] = ident
            continue
        if bucket not in m.sets:
            m.sets[bucket] = m.sets.pop(first)
        m.sets[bucket] = ManagerSet(union(ms.fields, m.sets[bucket].fields), ms.api_version, False)
        del m.sets[ident]
        length -= 1
        if ident in m.times:
            m.times[bucket] = m.times[ident]


# ---- Apply -------------------------------------------------------------------------------------


def record_apply(live: dict[str, Any] | None, config: dict[str, Any], *, manager: str, api_version: str, now: str,
                 force: bool, subresource: str = "", type_: TypeNode = UNTYPED, ignored: FieldSet | None = None,
                 config_set: FieldSet | None = None, base: dict[str, Any] | None = None,
                 views: Mapping[str, VersionView] | None = None) -> dict[str, Any]:
    """The object after ``manager`` applies ``config`` to ``live`` (None or ``base``, the empty
    object, for a create), with its managedFields. Raises kube's 409 on conflicts unless ``force``.
    ``views``: the object in the other apiVersions its managers used (``Updater``)."""
    managed = decode((live or {}).get("metadata", {}).get("managedFields")) or Managed()
    live_bare = _bare(live) if live is not None else (base or {})
    updater = Updater(type_, ignored, views)
    if not managed.sets and live is not None:
        # skipNonAppliedManager: what is there belongs to "before-first-apply".
        ident = _ident(BEFORE_FIRST_APPLY, "Update", api_version, subresource)
        updater.update({}, live_bare, api_version, managed.sets, ident)
    ident = _ident(manager, "Apply", api_version, subresource)
    sets = {k: ManagerSet(v.fields, v.api_version, v.applied) for k, v in managed.sets.items()}
    try:
        merged = updater.apply(live_bare, config, api_version, sets, ident, force, config_set)
    except ConflictError as e:
        allowed = _allowed_by_last_applied(live, manager, type_)
        if allowed is None:
            raise _conflict_status(e) from None
        left = [c for c in e.conflicts if not _contains(allowed, c.path)]
        if left:
            raise _conflict_status(ConflictError(left)) from None
        sets = {k: ManagerSet(v.fields, v.api_version, v.applied) for k, v in managed.sets.items()}
        merged = updater.apply(live_bare, config, api_version, sets, ident, True, config_set)
    managed.sets = sets
    if live is not None and manager == "kubectl" and LAST_APPLIED in (live["metadata"].get("annotations") or {}):
        merged = _with_last_applied(merged, config)
    if merged != live_bare or live is None:
        managed.times[ident] = now
    # A private copy: the merge shares parts of the live object and of the configuration.
    out = msgspec.json.decode(_plain.encode(merged))
    _strip(managed)
    _store(out, managed)
    return out


def _contains(s: FieldSet, path: tuple[str, ...]) -> bool:
    for pe in path:
        s = s.get(pe)  # type: ignore[assignment]
        if s is None:
            return False
    return MEMBER in s


def _allowed_by_last_applied(live: dict[str, Any] | None, manager: str, type_: TypeNode) -> FieldSet | None:
    """kube's ``lastAppliedManager``: for ``kubectl`` only, the fields of the last-applied
    annotation that the live object still holds as applied may be taken without conflict."""
    if manager != "kubectl" or live is None:
        return None
    text = (live["metadata"].get("annotations") or {}).get(LAST_APPLIED)
    if not isinstance(text, str):
        return None
    try:
        last = json.loads(text)
    except ValueError:
        return None
    if not isinstance(last, dict):
        return None
    fields = to_field_set(last, type_)
    return difference(fields, compare(last, _bare(live), type_).modified)


def _with_last_applied(merged: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """kube's ``lastAppliedUpdater``: the annotation follows what ``kubectl`` applies."""
    applied = msgspec.json.decode(_sorted.encode(config))
    config_anns = (applied.get("metadata") or {}).get("annotations")
    if isinstance(config_anns, dict):
        config_anns.pop(LAST_APPLIED, None)
    out = dict(merged)
    meta = out["metadata"] = dict(out["metadata"])
    anns = meta.get("annotations")
    meta["annotations"] = {**(anns if isinstance(anns, dict) else {}),
                           LAST_APPLIED: _sorted.encode(applied).decode()}
    return out


def _print_manager(ident: str) -> str:
    """kube's ``printManager``."""
    d = json.loads(ident)
    out = json.dumps(d["manager"])
    if d.get("subresource"):
        out += f' with subresource "{d["subresource"]}"'
    if d.get("operation") == "Update":
        out += f" using {d.get('apiVersion', '')}"
    return out


def _conflict_status(e: ConflictError) -> ConflictStatus:
    """kube's ``NewConflictError``: one cause per conflicting field, the message by manager."""
    cs = e.conflicts
    causes = tuple(Cause("FieldManagerConflict", f"conflict with {_print_manager(c.manager)}", path_string(c.path))
                   for c in cs)
    if len(cs) == 1:
        message = f"Apply failed with 1 conflict: conflict with {_print_manager(cs[0].manager)}: " \
                  f"{path_string(cs[0].path)}"
    else:
        lines = []
        for ident in sorted({c.manager for c in cs}):
            lines.append(f"conflicts with {_print_manager(ident)}:")
            lines.extend(f"- {path_string(c.path)}" for c in cs if c.manager == ident)
        message = f"Apply failed with {len(cs)} conflicts: " + "\n".join(lines)
    return ConflictStatus(message, causes=causes)

