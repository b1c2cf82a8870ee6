"""``history.jetkube.io/v1``: every revision of one object, straight from its subject on the log.

    GET /apis/history.jetkube.io/v1/namespaces/<ns>/<resource>[.<group>]/<name>   (namespaced kinds)
    GET /apis/history.jetkube.io/v1/<resource>[.<group>]/<name>                   (cluster-scoped kinds)

(a namespace in front of a cluster-scoped resource is ignored, as kubectl's ``-n``.)
``<resource>`` is a plural, singular, short name or lower-cased kind (``cm``, ``configmap``,
``deployments.apps``). Query: ``limit`` (default 100, at most 1,000), ``continue`` (from the last
page), ``includeObject=true`` (each revision's whole object besides its patch), ``diff=yaml`` (each
revision's change as a unified diff of the object's YAML, without resourceVersion and managedFields:
what ``jetkube history --diff`` prints and the ``/ui/`` timeline shows; :func:`yaml_diff`). Authorized as a
``get`` of the object's ``history`` subresource, so RBAC decides who may read it.

A revision carries what the event on the log carries: resourceVersion (the stream sequence), the
time, the user, the verb, user agent, source address, audit ID, and the change as a JSON patch
(RFC 6902, computed with ``jsonpatch``) from the revision before.
"""

from __future__ import annotations

import base64
import difflib
import json
from typing import Any

import msgspec
import yaml

from actors import BadRequest, NotFound, Request
from bus import Key
from kinds import Registry, ResourceDef
from projections import Revision, revisions

GROUP = "history.jetkube.io"
PREFIX = f"/apis/{GROUP}/v1/"
DEFAULT_LIMIT = 100
_enc = msgspec.json.Encoder()


RV_AT_TIME = PREFIX + "resourceversion"
#: ``GET .../compaction``: the log's compaction point (history retention, actors/_retention.py).
COMPACTION = PREFIX + "compaction"


def handles(path: str) -> bool:
    return path.startswith(PREFIX)


async def resource_version_at(log: Any, when: str) -> bytes:
    """``GET .../resourceversion?time=T``: the log's last sequence stored at or before ``T`` (RFC 3339),
    the resourceVersion to read the state at ``T`` with (``resourceVersionMatch=Exact``)."""
    from projections import parse_time

    try:
        t = parse_time(when)
    except ValueError:
        raise BadRequest(f"invalid time {when!r}: want RFC 3339, e.g. 2026-01-01T12:00:00Z") from None
    first_after = await log.seq_at_time(t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    rv = first_after - 1 if first_after is not None else int((await log.stream_state())["last_seq"])
    point, _ = await log.compaction_point()
    return _enc.encode({"kind": "ResourceVersion", "apiVersion": f"{GROUP}/v1", "time": when,
                        "resourceVersion": str(rv), "compactionPoint": str(point)})


async def compaction_body(log: Any) -> bytes:
    """``GET .../compaction``: the compaction point (versions below it answer 410 Expired; "0": the log
    keeps every version) and the log's first and last sequences."""
    point, _ = await log.compaction_point()
    state = await log.stream_state()
    return _enc.encode({"kind": "CompactionPoint", "apiVersion": f"{GROUP}/v1", "resourceVersion": str(point),
                        "firstSequence": str(state.get("first_seq", 0)), "lastSequence": str(state.get("last_seq", 0))})


def resolve_resource(registry: Registry, name: str) -> ResourceDef | None:
    """A resource by plural, singular, short name or lower-cased kind, optionally ``.<group>``."""
    wanted, _, group = name.partition(".")
    for d in registry.defs:
        if not d.stored or (group and d.group != group):
            continue
        if wanted in (d.plural, d.singular, d.kind.lower(), *d.short_names):
            return d
    return None


def parse_target(registry: Registry, path: str) -> tuple[ResourceDef, str, str]:
    """(resource, namespace, name) of a history path; NotFound for anything else."""
    parts = [p for p in path[len(PREFIX):].split("/") if p]
    namespace = ""
    if len(parts) == 4 and parts[0] == "namespaces":
        namespace, parts = parts[1], parts[2:]
    rdef = resolve_resource(registry, parts[0]) if len(parts) == 2 else None
    if rdef is None or (rdef.namespaced and not namespace):
        raise NotFound("the server could not find the requested resource")
    # A namespace in front of a cluster-scoped resource is ignored, as kubectl ignores -n for it.
    return rdef, namespace if rdef.namespaced else "", parts[1]


def authorization_request(who: Request, rdef: ResourceDef, namespace: str, name: str) -> Request:
    """The request to authorize: a ``get`` of the object's ``history`` subresource."""
    return msgspec.structs.replace(who, verb="get", rdef=rdef, namespace=namespace, name=name,
                                   subresource="history")


def encode_continue(after: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"v": "h1", "after": after}).encode()).decode()


def decode_continue(token: str) -> int:
    try:
        obj = json.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))
        after = obj["after"]
    except (ValueError, KeyError, TypeError) as e:
        raise BadRequest(f"invalid continue token: {e}") from None
    if type(after) is not int or after < 0:
        raise BadRequest("invalid continue token")
    return after


def _for_diff(obj: dict[str, Any] | None) -> str:
    """An object's YAML as diffs show it: without resourceVersion and managedFields (every
    revision changes them; the revision line says which it is)."""
    if obj is None:
        return ""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in ("resourceVersion", "managedFields")}
    return str(yaml.safe_dump({**obj, "metadata": meta}, sort_keys=False))


def yaml_diff(rev: Revision) -> str:
    """The revision's change as a unified diff of YAML, from the object before it (nothing for the
    first revision and after a deletion) to the object it left (nothing for a deletion)."""
    before = rev.previous
    after = None if rev.event.type == "delete" else rev.object
    old = "(none)" if before is None else str((before.get("metadata") or {}).get("resourceVersion", ""))
    return "".join(difflib.unified_diff(_for_diff(before).splitlines(True), _for_diff(after).splitlines(True),
                                        f"rv {old}", f"rv {rev.seq}"))


def revision_json(rev: Revision, *, include_object: bool, diff: bool = False) -> dict[str, Any]:
    ev = rev.event
    a = ev.actor
    user: dict[str, Any] = {"username": a.user}
    if a.uid:
        user["uid"] = a.uid
    if a.groups:
        user["groups"] = list(a.groups)
    out: dict[str, Any] = {
        "resourceVersion": str(rev.seq), "time": ev.time, "type": "DELETED" if ev.type == "delete" else (
            "ADDED" if ev.verb == "create" else "MODIFIED"),
        "verb": ev.verb, "user": user, "auditID": ev.audit_id,
    }
    if ev.subresource:
        out["subresource"] = ev.subresource
    if a.impersonator:
        out["impersonatedBy"] = {"username": a.impersonator}
    if a.user_agent:
        out["userAgent"] = a.user_agent
    if a.source:
        out["sourceIPs"] = [a.source]
    out["patch"] = rev.patch
    if diff:
        out["diff"] = yaml_diff(rev)
    if include_object:
        out["object"] = rev.object
    return out


async def history_body(log: Any, tenant: str, rdef: ResourceDef, namespace: str, name: str,
                       q: dict[str, str]) -> bytes:
    limit = DEFAULT_LIMIT
    if q.get("limit"):
        try:
            limit = int(q["limit"])
        except ValueError:
            raise BadRequest(f"invalid limit {q['limit']!r}") from None
    after = decode_continue(q["continue"]) if q.get("continue") else 0
    include = q.get("includeObject", "").lower() in ("true", "1", "object")
    diff = q.get("diff", "")
    if diff not in ("", "yaml"):
        raise BadRequest(f'invalid diff {diff!r}: the only format is "yaml"')
    key = Key(tenant, rdef.group, rdef.plural, namespace, name)
    revs, more = await revisions(log, key, after=after, limit=limit if limit > 0 else DEFAULT_LIMIT)
    if not revs and not after:
        raise NotFound(f'{rdef.plural}{"." + rdef.group if rdef.group else ""} "{name}" has no history',
                       name=name, group=rdef.group, kind=rdef.plural)
    meta: dict[str, Any] = {}
    if more and revs:
        meta["continue"] = encode_continue(revs[-1].seq)
    return _enc.encode({
        "kind": "RevisionList", "apiVersion": f"{GROUP}/v1", "metadata": meta,
        "target": {"group": rdef.group, "version": rdef.version, "resource": rdef.plural, "kind": rdef.kind,
                   "namespace": namespace, "name": name},
        "items": [revision_json(r, include_object=include, diff=bool(diff)) for r in revs],
    })
