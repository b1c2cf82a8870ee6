"""The RBAC view: Roles, ClusterRoles and their bindings folded from the log, indexed by subject.

The projection applies every rbac.authorization.k8s.io change here, in log order, before it
releases anyone waiting for that sequence; so whoever has waited for sequence N (a write's own
read-your-writes wait, a consistent read) authorizes against RBAC state at least as new as N.

Rule semantics are kube's (``pkg/apis/rbac/v1/evaluation_helpers.go`` ``VerbMatches``,
``APIGroupMatches``, ``ResourceMatches``, ``ResourceNameMatches``, ``NonResourceURLMatches``;
``plugin/pkg/auth/authorizer/rbac/rbac.go`` ``RuleAllows``) and so is resolution
(``pkg/registry/rbac/validation/rule.go`` ``VisitRulesFor``, ``appliesToUser``): the
ClusterRoleBindings that name the user or one of their groups, then the RoleBindings of the
request's namespace; a RoleBinding may reference a ClusterRole, whose rules then apply in that
namespace only. Roles are looked up when a binding is used, so a role's change applies to every
binding of it at once. Looking up a user costs one dict lookup per subject key (the user name and
each group) for the cluster, and one per key for the namespace: never a scan of all bindings.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

RBAC_GROUP = "rbac.authorization.k8s.io"
SA_PREFIX = "system:serviceaccount:"
_decode = msgspec.json.decode


class Rule:
    """One PolicyRule, prepared for matching. ``raw`` is the rule as written (for rules reviews)."""

    __slots__ = ("all_groups", "all_resources", "all_verbs", "groups", "names", "raw", "resources", "urls",
                 "verbs")

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.verbs = frozenset(raw.get("verbs") or ())
        self.groups = frozenset(raw.get("apiGroups") or ())
        self.resources = frozenset(raw.get("resources") or ())
        self.names = frozenset(raw.get("resourceNames") or ())
        self.urls = tuple(raw.get("nonResourceURLs") or ())
        self.all_verbs = "*" in self.verbs
        self.all_groups = "*" in self.groups
        self.all_resources = "*" in self.resources

    def allows_resource(self, verb: str, group: str, resource: str, subresource: str, name: str) -> bool:
        """``RuleAllows`` for a resource request; ``resource`` is the plural alone."""
        if not (self.all_verbs or verb in self.verbs):
            return False
        if not (self.all_groups or group in self.groups):
            return False
        if not self.all_resources:
            res = self.resources
            if subresource:
                if f"{resource}/{subresource}" not in res and f"*/{subresource}" not in res:
                    return False
            elif resource not in res:
                return False
        return not self.names or name in self.names

    def allows_path(self, verb: str, path: str) -> bool:
        """``RuleAllows`` for a non-resource request: the URL exactly, ``*``, or a ``prefix*``."""
        if not (self.all_verbs or verb in self.verbs):
            return False
        for url in self.urls:
            if url == "*" or url == path or (url.endswith("*") and path.startswith(url.rstrip("*"))):
                return True
        return False


def rules_of(obj: dict[str, Any]) -> tuple[Rule, ...]:
    return tuple(Rule(r) for r in obj.get("rules") or () if isinstance(r, dict))


class RoleEntry:
    __slots__ = ("aggregation", "labels", "name", "namespace", "rules")

    def __init__(self, namespace: str, name: str, obj: dict[str, Any]) -> None:
        self.namespace, self.name = namespace, name
        self.rules = rules_of(obj)
        self.labels: dict[str, str] = (obj.get("metadata") or {}).get("labels") or {}
        agg = obj.get("aggregationRule")
        self.aggregation: list[dict[str, Any]] | None = (
            list(agg.get("clusterRoleSelectors") or []) if isinstance(agg, dict) else None)


class Binding:
    """A RoleBinding (``namespace`` set) or ClusterRoleBinding, with its subjects as index keys."""

    __slots__ = ("kind", "name", "namespace", "role_kind", "role_name", "subjects")

    def __init__(self, namespace: str, name: str, obj: dict[str, Any]) -> None:
        self.kind = "RoleBinding" if namespace else "ClusterRoleBinding"
        self.namespace, self.name = namespace, name
        ref = obj.get("roleRef") or {}
        self.role_kind: str = ref.get("kind") or ""
        self.role_name: str = ref.get("name") or ""
        #: (index key, kube's description of the subject) per subject that can match anyone.
        self.subjects: list[tuple[str, str]] = []
        for s in obj.get("subjects") or ():
            if not isinstance(s, dict):
                continue
            key = subject_key(s, namespace)
            if key is not None:
                self.subjects.append((key, describe_subject(s, namespace)))

    def describe(self, subject: str) -> str:
        """``describe`` of rule.go's clusterRoleBindingDescriber / roleBindingDescriber."""
        name = self.name if not self.namespace else f"{self.name}/{self.namespace}"
        return f'{self.kind} "{name}" of {self.role_kind} "{self.role_name}" to {subject}'


def subject_key(s: dict[str, Any], namespace: str) -> str | None:
    """The index key a subject matches users by (``appliesToUser``): ``u:<user name>`` (users and
    service accounts, as ``system:serviceaccount:<ns>:<name>``) or ``g:<group>``."""
    kind, name = s.get("kind"), s.get("name") or ""
    if kind == "User":
        return "u:" + name
    if kind == "Group":
        return "g:" + name
    if kind == "ServiceAccount":
        ns = s.get("namespace") or namespace
        if not ns:
            return None
        return f"u:{SA_PREFIX}{ns}:{name}"
    return None


def describe_subject(s: dict[str, Any], namespace: str) -> str:
    if s.get("kind") == "ServiceAccount":
        return f'{s.get("kind")} "{s.get("name", "")}/{s.get("namespace") or namespace}"'
    return f'{s.get("kind")} "{s.get("name", "")}"'


class TenantRbac:
    """One tenant's RBAC state and its subject index."""

    def __init__(self) -> None:
        self.roles: dict[tuple[str, str], RoleEntry] = {}
        self.clusterroles: dict[str, RoleEntry] = {}
        self.bindings: dict[tuple[str, str], Binding] = {}  # (namespace or "", name)
        # key -> {(namespace, binding name): (binding, subject description)}; "" is the cluster.
        self.by_subject: dict[tuple[str, str], dict[str, tuple[Binding, str]]] = {}

    def _index(self, b: Binding, add: bool) -> None:
        for key, desc in b.subjects:
            k = (b.namespace, key)
            if add:
                self.by_subject.setdefault(k, {})[b.name] = (b, desc)
            else:
                got = self.by_subject.get(k)
                if got is not None:
                    got.pop(b.name, None)
                    if not got:
                        del self.by_subject[k]

    def apply(self, resource: str, namespace: str, name: str, obj: dict[str, Any] | None) -> None:
        if resource == "roles":
            if obj is None:
                self.roles.pop((namespace, name), None)
            else:
                self.roles[(namespace, name)] = RoleEntry(namespace, name, obj)
        elif resource == "clusterroles":
            if obj is None:
                self.clusterroles.pop(name, None)
            else:
                self.clusterroles[name] = RoleEntry("", name, obj)
        elif resource in ("rolebindings", "clusterrolebindings"):
            ns = namespace if resource == "rolebindings" else ""
            old = self.bindings.pop((ns, name), None)
            if old is not None:
                self._index(old, add=False)
            if obj is not None:
                b = self.bindings[(ns, name)] = Binding(ns, name, obj)
                self._index(b, add=True)

    def role_rules(self, kind: str, name: str, namespace: str) -> tuple[Rule, ...] | None:
        """``GetRoleReferenceRules``: None when the role does not exist."""
        if kind == "ClusterRole":
            cr = self.clusterroles.get(name)
            return None if cr is None else cr.rules
        if kind == "Role":
            r = self.roles.get((namespace, name))
            return None if r is None else r.rules
        return None

    def visit(self, name: str, groups: tuple[str, ...], namespace: str, *, dedupe: bool = False) -> Iterator[
            tuple[Binding, str, tuple[Rule, ...] | None]]:
        """(binding, subject description, its role's rules or None when missing) for each binding
        that applies to the user: cluster bindings first, then those of ``namespace``. A binding
        naming the user more than once (by name and by a group) comes once per match unless
        ``dedupe``: a decision only re-checks its rules, a listing of rules wants it once."""
        by_subject = self.by_subject
        clusterroles, roles = self.clusterroles, self.roles
        for scope in (("", namespace) if namespace else ("",)):
            seen: set[str] | None = set() if dedupe else None
            for key in ("u:" + name, *["g:" + g for g in groups]):
                got = by_subject.get((scope, key))
                if not got:
                    continue
                for bname, (b, desc) in got.items():
                    if seen is not None:
                        if bname in seen:
                            continue
                        seen.add(bname)
                    if b.role_kind == "ClusterRole":
                        entry = clusterroles.get(b.role_name)
                    elif b.role_kind == "Role":
                        entry = roles.get((b.namespace, b.role_name))
                    else:
                        entry = None
                    yield b, desc, None if entry is None else entry.rules


class RbacIndex:
    """Every tenant's :class:`TenantRbac`; fed by the projection, read by the authorizer."""

    def __init__(self) -> None:
        self.tenants: dict[str, TenantRbac] = {}
        self._empty = TenantRbac()
        #: Bumped by every change applied: whoever caches decisions drops them when it moves.
        self.generation = 0

    def tenant(self, tenant: str) -> TenantRbac:
        return self.tenants.get(tenant) or self._empty

    def apply(self, tenant: str, resource: str, namespace: str, name: str, data: bytes | None) -> None:
        self.generation += 1
        t = self.tenants.get(tenant)
        if t is None:
            t = self.tenants[tenant] = TenantRbac()
        obj = None
        if data is not None:
            try:
                obj = _decode(data)
            except msgspec.DecodeError:
                return
            if not isinstance(obj, dict):
                return
        t.apply(resource, namespace, name, obj)
