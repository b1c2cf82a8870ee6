"""kube's bootstrap RBAC policy (``plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go``), the
part of it a cluster without nodes and controllers of its own needs: the user-facing roles
(cluster-admin, admin, edit, view and the aggregate-to-* roles they are built from),
system:basic-user, system:discovery, system:public-info-viewer, system:monitoring and
system:service-account-issuer-discovery, and their ClusterRoleBindings. The rules are kube's in
full, also for resources jetkube does not serve yet: they are just data, and match what
kube-apiserver creates (``testdata/cluster-roles.yaml``, checked by tests/unit/test_rbac_logic.py).

:func:`reconcile_role` and :func:`reconcile_binding` are ``pkg/registry/rbac/reconciliation``'s
non-destructive reconciliation, run at every start: an object that is missing is created; one whose
``rbac.authorization.kubernetes.io/autoupdate`` annotation is ``"false"`` is left alone; otherwise
missing rules, labels, annotations, aggregation selectors and subjects are added and nothing the
user added is removed.
"""

from __future__ import annotations

import copy
from typing import Any

RBAC_API = "rbac.authorization.k8s.io/v1"
AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"
BOOTSTRAP_LABELS = {"kubernetes.io/bootstrapping": "rbac-defaults"}
READ = ["get", "list", "watch"]
WRITE = ["create", "delete", "deletecollection", "patch", "update"]
READ_WRITE = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
AGG_ADMIN = "rbac.authorization.k8s.io/aggregate-to-admin"
AGG_EDIT = "rbac.authorization.k8s.io/aggregate-to-edit"
AGG_VIEW = "rbac.authorization.k8s.io/aggregate-to-view"


def _r(groups: list[str], resources: list[str], verbs: list[str], names: list[str] | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"apiGroups": groups, "resources": resources, "verbs": verbs}
    if names:
        rule["resourceNames"] = names
    return rule


def _urls(urls: list[str], verbs: list[str]) -> dict[str, Any]:
    return {"nonResourceURLs": urls, "verbs": verbs}


def _role(name: str, rules: list[dict[str, Any]] | None, *, labels: dict[str, str] | None = None,
          aggregate_from: str | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": RBAC_API, "kind": "ClusterRole", "metadata": {
        "name": name, "labels": {**BOOTSTRAP_LABELS, **(labels or {})}, "annotations": {AUTOUPDATE: "true"}},
        "rules": rules}
    if aggregate_from:
        obj["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": {aggregate_from: "true"}}]}
    return obj


def _binding(name: str, role: str, groups: list[str]) -> dict[str, Any]:
    return {"apiVersion": RBAC_API, "kind": "ClusterRoleBinding", "metadata": {
        "name": name, "labels": dict(BOOTSTRAP_LABELS), "annotations": {AUTOUPDATE: "true"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g} for g in groups]}


def cluster_roles() -> list[dict[str, Any]]:
    """The bootstrap ClusterRoles, sorted by name as kube's testdata."""
    roles = [
        _role("cluster-admin", [_r(["*"], ["*"], ["*"]), _urls(["*"], ["*"])]),
        _role("admin", None, aggregate_from=AGG_ADMIN),
        _role("edit", None, labels={AGG_ADMIN: "true"}, aggregate_from=AGG_EDIT),
        _role("view", None, labels={AGG_EDIT: "true"}, aggregate_from=AGG_VIEW),
        _role("system:aggregate-to-admin", [
            _r(["authorization.k8s.io"], ["localsubjectaccessreviews"], ["create"]),
            _r(["rbac.authorization.k8s.io"], ["rolebindings", "roles"], READ_WRITE),
        ], labels={AGG_ADMIN: "true"}),
        _role("system:aggregate-to-edit", [
            _r([""], ["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"],
               READ),
            _r([""], ["serviceaccounts"], ["impersonate"]),
            _r([""], ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"], WRITE),
            _r([""], ["pods/eviction"], ["create"]),
            _r([""], ["configmaps", "persistentvolumeclaims", "replicationcontrollers",
                      "replicationcontrollers/scale", "secrets", "serviceaccounts", "services", "services/proxy"],
               WRITE),
            _r([""], ["serviceaccounts/token"], ["create"]),
            _r(["", "events.k8s.io"], ["events"], WRITE),
            _r(["apps"], ["daemonsets", "deployments", "deployments/rollback", "deployments/scale", "replicasets",
                          "replicasets/scale", "statefulsets", "statefulsets/scale"], WRITE),
            _r(["autoscaling"], ["horizontalpodautoscalers"], WRITE),
            _r(["batch"], ["cronjobs", "jobs"], WRITE),
            _r(["extensions"], ["daemonsets", "deployments", "deployments/rollback", "deployments/scale",
                                "ingresses", "networkpolicies", "replicasets", "replicasets/scale",
                                "replicationcontrollers/scale"], WRITE),
            _r(["policy"], ["poddisruptionbudgets"], WRITE),
            _r(["networking.k8s.io"], ["ingresses", "networkpolicies"], WRITE),
            _r(["coordination.k8s.io"], ["leases"], READ_WRITE),
            _r(["resource.k8s.io"], ["resourceclaims", "resourceclaimtemplates"], WRITE),
        ], labels={AGG_EDIT: "true"}),
        _role("system:aggregate-to-view", [
            _r([""], ["configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status", "pods",
                      "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services",
                      "services/status"], READ),
            _r([""], ["bindings", "limitranges", "namespaces/status", "pods/log", "pods/status",
                      "replicationcontrollers/status", "resourcequotas", "resourcequotas/status"], READ),
            _r([""], ["namespaces"], READ),
            _r(["", "events.k8s.io"], ["events"], READ),
            _r(["discovery.k8s.io"], ["endpointslices"], READ),
            _r(["apps"], ["controllerrevisions", "daemonsets", "daemonsets/status", "deployments",
                          "deployments/scale", "deployments/status", "replicasets", "replicasets/scale",
                          "replicasets/status", "statefulsets", "statefulsets/scale", "statefulsets/status"], READ),
            _r(["autoscaling"], ["horizontalpodautoscalers", "horizontalpodautoscalers/status"], READ),
            _r(["batch"], ["cronjobs", "cronjobs/status", "jobs", "jobs/status"], READ),
            _r(["extensions"], ["daemonsets", "daemonsets/status", "deployments", "deployments/scale",
                                "deployments/status", "ingresses", "ingresses/status", "networkpolicies",
                                "replicasets", "replicasets/scale", "replicasets/status",
                                "replicationcontrollers/scale"], READ),
            _r(["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"], READ),
            _r(["networking.k8s.io"], ["ingresses", "ingresses/status", "networkpolicies"], READ),
            _r(["resource.k8s.io"], ["resourceclaims", "resourceclaims/status", "resourceclaimtemplates"], READ),
        ], labels={AGG_VIEW: "true"}),
        _role("system:basic-user", [
            _r(["authorization.k8s.io"], ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], ["create"]),
            _r(["authentication.k8s.io"], ["selfsubjectreviews"], ["create"]),
        ]),
        _role("system:discovery", [_urls(["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi",
                                          "/openapi/*", "/readyz", "/version", "/version/"], ["get"])]),
        _role("system:monitoring", [
            _urls(["/healthz", "/healthz/*", "/livez", "/livez/*", "/metrics", "/metrics/slis", "/readyz",
                   "/readyz/*", "/statusz"], ["get"]),
            _r([""], ["nodes/metrics"], ["get"]),
        ]),
        _role("system:public-info-viewer", [_urls(["/healthz", "/livez", "/readyz", "/version", "/version/"],
                                                  ["get"])]),
        _role("system:service-account-issuer-discovery", [_urls(
            ["/.well-known/openid-configuration", "/.well-known/openid-configuration/", "/openid/v1/jwks",
             "/openid/v1/jwks/"], ["get"])]),
    ]
    return sorted(roles, key=lambda r: r["metadata"]["name"])


def cluster_role_bindings() -> list[dict[str, Any]]:
    """The bootstrap ClusterRoleBindings of :func:`cluster_roles` (``ClusterRoleBindings()``)."""
    return [
        _binding("cluster-admin", "cluster-admin", ["system:masters"]),
        _binding("system:basic-user", "system:basic-user", ["system:authenticated"]),
        _binding("system:discovery", "system:discovery", ["system:authenticated"]),
        _binding("system:monitoring", "system:monitoring", ["system:monitoring"]),
        _binding("system:public-info-viewer", "system:public-info-viewer",
                 ["system:authenticated", "system:unauthenticated"]),
        _binding("system:service-account-issuer-discovery", "system:service-account-issuer-discovery",
                 ["system:serviceaccounts"]),
    ]


def _merge_meta(current: dict[str, Any], expected: dict[str, Any]) -> bool:
    """Add the expected labels and annotations the current object lacks; True when any was."""
    changed = False
    meta = current.setdefault("metadata", {})
    for field in ("labels", "annotations"):
        have = meta.get(field) or {}
        for k, v in (expected["metadata"].get(field) or {}).items():
            if k not in have:
                have[k] = v
                changed = True
        if have:
            meta[field] = have
    return changed


def _autoupdate(current: dict[str, Any]) -> bool:
    return ((current.get("metadata") or {}).get("annotations") or {}).get(AUTOUPDATE) != "false"


def reconcile_role(current: dict[str, Any] | None, expected: dict[str, Any],
                   covered: Any = None) -> dict[str, Any] | None:
    """The ClusterRole to write, or None when ``current`` is fine as it is. ``covered(have, want)``
    tells whether rules ``have`` cover ``want`` (RBAC's Covers); by default, rule by rule equality."""
    if current is None:
        return copy.deepcopy(expected)
    if not _autoupdate(current):
        return None
    out = copy.deepcopy(current)
    changed = _merge_meta(out, expected)
    if expected.get("aggregationRule"):
        have = ((out.get("aggregationRule") or {}).get("clusterRoleSelectors")) or []
        missing = [s for s in expected["aggregationRule"]["clusterRoleSelectors"] if s not in have]
        if missing or not out.get("aggregationRule"):
            out["aggregationRule"] = {"clusterRoleSelectors": [*have, *missing]}
            changed = True
    else:
        have_rules = out.get("rules") or []
        want = expected.get("rules") or []
        missing_rules = [r for r in want if not (covered(have_rules, [r]) if covered else r in have_rules)]
        if missing_rules:
            out["rules"] = [*have_rules, *missing_rules]
            changed = True
    return out if changed else None


def reconcile_binding(current: dict[str, Any] | None, expected: dict[str, Any]) -> dict[str, Any] | None:
    """The ClusterRoleBinding to write, or None. A binding to another role is left alone here
    (kube recreates it; the user who changed it meant it)."""
    if current is None:
        return copy.deepcopy(expected)
    if not _autoupdate(current):
        return None
    out = copy.deepcopy(current)
    changed = _merge_meta(out, expected)
    have = out.get("subjects") or []
    keys = {(s.get("kind"), s.get("name"), s.get("namespace", "")) for s in have}
    missing = [s for s in expected["subjects"] if (s["kind"], s["name"], s.get("namespace", "")) not in keys]
    if missing:
        out["subjects"] = [*have, *missing]
        changed = True
    return out if changed else None
