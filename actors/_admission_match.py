"""Which writes a webhook or a policy applies to: rules, selectors and matchConditions.

Pure functions over an :class:`~actors._admission.Attributes`, as kube's
``admission/plugin/webhook/predicates`` and ``policy/matching``: rules are scope ∧ operation ∧
group ∧ version ∧ resource (``*`` is every resource but no subresource; ``pods/*``, ``*/scale``
and ``*/*`` as they read); a namespaceSelector looks at the namespace's labels (a Namespace at
its own; other cluster-scoped objects always match); an objectSelector at the old or the new
labels.
"""

from __future__ import annotations

from typing import Any

from bus import Key
from kinds import NAMESPACES
from kinds import _subresources as subresources
from kinds._cel import CelError, CelProgram, compile_cel
from projections import LabelSelector, Projection, SelectorError, parse_label_selector

CONDITION_VARIABLES = ("object", "oldObject", "request", "authorizer")
# The kind of a subresource's object, where it is not the resource's own (status is).
_SUBRESOURCE_KINDS = {"scale": ("autoscaling", "v1", "Scale"), "binding": ("", "v1", "Binding"),
                      "eviction": ("policy", "v1", "Eviction"), "token": ("authentication.k8s.io", "v1", "TokenRequest")}


def selector(spec: Any) -> LabelSelector | None:
    """A LabelSelector object parsed; None for a selector that can never match (malformed)."""
    try:
        return parse_label_selector(subresources.format_label_selector(spec or {}))
    except SelectorError:
        return None


def rule_matches(rule: dict[str, Any], operation: str, group: str, version: str, resource: str, subresource: str,
                 namespaced: bool, name: str = "") -> bool:
    ops = rule.get("operations") or []
    if "*" not in ops and operation not in ops:
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and group not in groups:
        return False
    versions = rule.get("apiVersions") or []
    if "*" not in versions and version not in versions:
        return False
    scope = rule.get("scope") or "*"
    if scope == "Cluster" and namespaced or scope == "Namespaced" and not namespaced:
        return False
    names = rule.get("resourceNames") or []
    if names and name not in names:
        return False
    want = f"{resource}/{subresource}" if subresource else resource
    for r in rule.get("resources") or []:
        if r == want or r == "*/*":
            return True
        if r == "*" and not subresource:
            return True
        head, _, tail = r.partition("/")
        if tail and subresource and (head == "*" and tail == subresource or head == resource and tail == "*"):
            return True
    return False


def labels_of(obj: dict[str, Any] | None) -> dict[str, str]:
    if not isinstance(obj, dict):
        return {}
    meta = obj.get("metadata")
    return (meta.get("labels") or {}) if isinstance(meta, dict) else {}


async def namespace_labels(projection: Projection, tenant: str, namespace: str) -> dict[str, str] | None:
    key = Key(tenant, *NAMESPACES, "", namespace)
    entry = projection.get(key)
    if entry is None:
        await projection.consistent()
        entry = projection.get(key)
    return None if entry is None else dict(entry.labels)


async def namespace_selected(projection: Projection, sel: LabelSelector | None, a: Any,
                             obj: dict[str, Any] | None, old: dict[str, Any] | None) -> bool:
    if sel is None:
        return False
    if sel.empty:
        return True
    if a.rdef.is_namespace:
        return sel.matches(labels_of(obj if obj is not None else old))
    if not a.rdef.namespaced:
        return True
    labels = await namespace_labels(projection, a.tenant, a.namespace)
    return labels is not None and sel.matches(labels)


def object_selected(sel: LabelSelector | None, obj: dict[str, Any] | None, old: dict[str, Any] | None) -> bool:
    if sel is None:
        return False
    if sel.empty:
        return True
    return (obj is not None and sel.matches(labels_of(obj))) or (old is not None and sel.matches(labels_of(old)))


def _kind_resource(rdef: Any, subresource: str) -> tuple[dict[str, str], dict[str, str]]:
    kind = {"group": rdef.group, "version": rdef.version, "kind": rdef.kind}
    if subresource in _SUBRESOURCE_KINDS:
        group, version, kind_name = _SUBRESOURCE_KINDS[subresource]
        kind = {"group": group, "version": version, "kind": kind_name}
    return kind, {"group": rdef.group, "version": rdef.version, "resource": rdef.plural}


def request_object(a: Any, obj: dict[str, Any] | None, old: dict[str, Any] | None,
                   view: Any = None) -> dict[str, Any]:
    """The AdmissionRequest (admission.k8s.io/v1) for ``a``: what webhooks receive and CEL's
    ``request`` variable. ``view``: the equivalent version a webhook is sent (``matchPolicy:
    Equivalent``); ``requestKind``/``requestResource`` stay the written one's."""
    rdef = a.rdef
    request_kind, request_resource = _kind_resource(rdef, a.subresource)
    kind, resource = _kind_resource(view, a.subresource) if view is not None else (request_kind, request_resource)
    user = a.user
    user_info: dict[str, Any] = {"username": user.name if user else ""}
    if user is not None:
        if user.uid:
            user_info["uid"] = user.uid
        if user.groups:
            user_info["groups"] = list(user.groups)
        if user.extra:
            user_info["extra"] = {k: list(v) for k, v in user.extra.items()}
    out: dict[str, Any] = {
        "uid": a.uid, "kind": kind, "resource": resource, "requestKind": request_kind,
        "requestResource": request_resource,
        "name": a.name, "operation": a.operation, "userInfo": user_info, "object": obj, "oldObject": old,
        "dryRun": a.dry_run,
    }
    if a.subresource:
        out["subResource"] = out["requestSubResource"] = a.subresource
    if rdef.namespaced:
        out["namespace"] = a.namespace
    if a.options_kind:
        out["options"] = {"apiVersion": "meta.k8s.io/v1", "kind": a.options_kind}
    return out


class Conditions:
    """Compiled matchConditions; ``errors`` holds a condition that did not compile (the
    configuration then fails closed or is skipped by its failurePolicy, as an evaluation error)."""

    def __init__(self, conditions: Any, variables: tuple[str, ...] = CONDITION_VARIABLES) -> None:
        self.programs: list[tuple[str, CelProgram]] = []
        self.error = ""
        #: A condition reads ``authorizer`` (the caller then binds it: kinds/_cel.py authorizing).
        for c in conditions or []:
            if not isinstance(c, dict):
                continue
            try:
                self.programs.append((str(c.get("name", "")), compile_cel(str(c.get("expression", "")),
                                                                           variables)))
            except CelError as e:
                self.error = f"compilation failed for matchCondition {c.get('name', '')!r}: {e}"
        self.uses_authorizer = any("authorizer" in p.used for _, p in self.programs)

    def evaluate(self, data: dict[str, Any]) -> tuple[bool, str]:
        """(all true, error): false at the first false condition; an error is reported (the
        caller applies failurePolicy)."""
        if self.error:
            return False, self.error
        for name, p in self.programs:
            try:
                v = p.evaluate(data)
            except CelError as e:
                return False, f"matchCondition {name!r} failed: {e}"
            if v is not True:
                if v is False:
                    return False, ""
                return False, f"matchCondition {name!r} did not evaluate to a bool"
        return True, ""
