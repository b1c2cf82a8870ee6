"""``metadata.managedFields`` for Update operations: who last set which fields. Pure.

Each write records, for its field manager, the set of fields it changed (``FieldsV1`` notation:
``f:<field>`` for map members, ``.`` for a map the manager created; lists are atomic here, as
for custom resources without list-type metadata). Server-side apply's ownership and conflicts
come with the schema work; this module only keeps the bookkeeping kubectl shows.
"""

from __future__ import annotations

from typing import Any

_SERVER_META = frozenset({"name", "namespace", "uid", "resourceVersion", "creationTimestamp", "managedFields", "generation",
                          "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"})


def manager_from_user_agent(user_agent: str) -> str:
    """The apiserver's default manager: the user agent up to its first '/', at most 128 chars."""
    return (user_agent.split("/", 1)[0] or "unknown")[:128]


def _changed(old: Any, new: Any, top: bool = False) -> dict[str, Any] | None:
    """FieldsV1 of what ``new`` sets differently from ``old``; None when nothing."""
    if isinstance(new, dict):
        out: dict[str, Any] = {}
        old_d = old if isinstance(old, dict) else {}
        for k, v in new.items():
            if top and k in ("kind", "apiVersion"):
                continue
            if top and k == "metadata" and isinstance(v, dict):
                sub = _changed(old_d.get(k), {mk: mv for mk, mv in v.items() if mk not in _SERVER_META})
            else:
                sub = _changed(old_d.get(k), v)
            if sub is not None:
                out[f"f:{k}"] = sub
        if not out:
            return None if isinstance(old, dict) else ({".": {}} if not top else None)
        if not isinstance(old, dict) and not top:
            out["."] = {}
        return out
    return None if old == new else {}


def _merge(into: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    for k, v in more.items():
        if k in into and isinstance(into[k], dict) and isinstance(v, dict) and v:
            _merge(into[k], v)
        else:
            into[k] = v
    return into


def record_update(old: dict[str, Any] | None, new: dict[str, Any], *, manager: str, api_version: str,
                  now: str, operation: str = "Update") -> None:
    """Set ``new['metadata']['managedFields']``, carrying over ``old``'s entries."""
    entries: list[dict[str, Any]] = [dict(e) for e in ((old or {}).get("metadata", {}).get("managedFields") or [])
                                     if isinstance(e, dict)]
    changed = _changed(old, new, top=True)
    if changed:
        for e in entries:
            if e.get("manager") == manager and e.get("operation") == operation:
                e["fieldsV1"] = _merge(dict(e.get("fieldsV1") or {}), changed)
                e["time"] = now
                e["apiVersion"] = api_version
                break
        else:
            entries.append({"manager": manager, "operation": operation, "apiVersion": api_version, "time": now,
                            "fieldsType": "FieldsV1", "fieldsV1": changed})
    if entries:
        new["metadata"]["managedFields"] = entries
    else:
        new["metadata"].pop("managedFields", None)
