"""Resource definitions: kinds are data.

One ``ResourceDef`` drives routing, discovery, validation, field selectors and storage for a kind;
per-kind behaviour that Kubernetes treats specially lives in small strategy hooks on the actor
side, keyed by ``(group, resource)``. The built-in definitions below are the kinds jetkube serves.
"""

from __future__ import annotations

from typing import Literal

import msgspec

NameRule = Literal["subdomain", "label", "path"]

_RW_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
# The namespace storage has no deletecollection (kube-apiserver answers 405 for DELETE on the
# collection): deleting every namespace, the immortal ones included, is not one request.
_NAMESPACE_VERBS = tuple(v for v in _RW_VERBS if v != "deletecollection")


class ResourceDef(msgspec.Struct, frozen=True):
    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = _RW_VERBS
    # Extra selectable fields beyond metadata.name / metadata.namespace, as dotted paths into the
    # object; the writer extracts their values into every event (``Event.fields``).
    field_selectors: tuple[str, ...] = ()
    name_rule: NameRule = "subdomain"
    # False for virtual, create-only kinds answered by an actor and never stored (reviews).
    stored: bool = True
    # Subresources: name -> verbs (e.g. {"token": ("create",)} on serviceaccounts).
    subresources: dict[str, tuple[str, ...]] = {}

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"


_RBAC = "rbac.authorization.k8s.io"
BUILTIN: tuple[ResourceDef, ...] = (
    ResourceDef("", "v1", "Namespace", "namespaces", "namespace", False, ("ns",),
                verbs=_NAMESPACE_VERBS, field_selectors=("status.phase",), name_rule="label"),
    ResourceDef("", "v1", "ConfigMap", "configmaps", "configmap", True, ("cm",)),
    ResourceDef("", "v1", "Secret", "secrets", "secret", True, field_selectors=("type",)),
    ResourceDef("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", True, ("sa",),
                subresources={"token": ("create",)}),
    # Minimal Service definition for cluster IP / node port allocation (issue 11, fix-gc); the
    # workload-kinds branch brings the full one: keep that one at merge.
    ResourceDef("", "v1", "Service", "services", "service", True, ("svc",), categories=("all",),
                subresources={"status": ("get", "patch", "update")}),
    ResourceDef("", "v1", "Event", "events", "event", True, ("ev",),
                field_selectors=("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                                 "involvedObject.uid", "involvedObject.apiVersion",
                                 "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
                                 "reportingComponent", "source", "type"),
                name_rule="path"),
    ResourceDef("coordination.k8s.io", "v1", "Lease", "leases", "lease", True),
    ResourceDef(_RBAC, "v1", "Role", "roles", "role", True, name_rule="path"),
    ResourceDef(_RBAC, "v1", "ClusterRole", "clusterroles", "clusterrole", False,
                name_rule="path"),
    ResourceDef(_RBAC, "v1", "RoleBinding", "rolebindings", "rolebinding", True,
                name_rule="path"),
    ResourceDef(_RBAC, "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding", False, name_rule="path"),
    ResourceDef("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview",
                False, verbs=("create",), stored=False),
    ResourceDef("authentication.k8s.io", "v1beta1", "SelfSubjectReview", "selfsubjectreviews",
                "selfsubjectreview", False, verbs=("create",), stored=False),
    ResourceDef("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews",
                "selfsubjectaccessreview", False, verbs=("create",), stored=False),
    ResourceDef("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews",
                "selfsubjectrulesreview", False, verbs=("create",), stored=False),
)


class Registry:
    """Lookup of served resources by (group, version, plural) and by (group, plural)."""

    def __init__(self, defs: tuple[ResourceDef, ...] = BUILTIN) -> None:
        self._by_gvr = {(d.group, d.version, d.plural): d for d in defs}
        self._by_gr: dict[tuple[str, str], ResourceDef] = {}
        for d in sorted(defs, key=lambda d: _version_rank(d.version)):
            self._by_gr.setdefault((d.group, d.plural), d)  # the preferred version
        self.defs = defs

    def get(self, group: str, version: str, plural: str) -> ResourceDef | None:
        return self._by_gvr.get((group, version, plural))

    def by_resource(self, group: str, plural: str) -> ResourceDef | None:
        return self._by_gr.get((group, plural))

    def group_versions(self) -> dict[str, list[str]]:
        """Served versions per group, preferred first (v1 before v1beta1 before v1alpha1)."""
        out: dict[str, list[str]] = {}
        for d in sorted(self.defs, key=lambda d: _version_rank(d.version)):
            out.setdefault(d.group, [])
            if d.version not in out[d.group]:
                out[d.group].append(d.version)
        return out


def _version_rank(version: str) -> tuple[int, int, int]:
    """Kubernetes version priority: GA before beta before alpha, higher numbers first."""
    import re

    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if m is None:
        return (3, 0, 0)
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    return (stage, -int(m.group(1)), -int(m.group(3) or 0))


def field_value(obj: dict, path: str) -> str:
    """The string value at a dotted path, "" when missing (as Kubernetes field labels do).

    ``source`` on events is the apiserver's special case: ``source.component``.
    """
    if path == "source":
        path = "source.component"
    cur: object = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)
