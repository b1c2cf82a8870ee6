"""RBAC without a server: rule matching, resolution, the Forbidden wording, escalation checks,
aggregation and the bootstrap policy.

The rule and authorizer cases are kube's: ``plugin/pkg/auth/authorizer/rbac/rbac_test.go``
(``TestRuleMatches``, ``TestAuthorizer``) and ``pkg/registry/rbac/validation/policy_compact_test.go``
/ ``policy_comparator_test.go`` style ``Covers`` cases.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from actors import Attributes, Authorizer, Forbidden, Request, UserInfo, attributes_of, forbidden
from actors._authz import _uncovered, compact_rules, compact_string, parse_modes
from actors._bootstrap_policy import cluster_role_bindings, cluster_roles, reconcile_binding, reconcile_role
from actors._rbac_controllers import aggregated_rules
from kinds import Registry
from projections import RbacIndex, Rule

DATA = Path(__file__).parent.parent / "data" / "rbac"
REG = Registry()


def rule(verbs: str, groups: str | None = None, resources: str | None = None, urls: str | None = None,
         names: str | None = None) -> dict[str, Any]:
    """kube's test ``newRule``: comma lists (``""`` is the core group); None leaves a field unset."""
    out: dict[str, Any] = {}
    for key, value in (("apiGroups", groups), ("resources", resources), ("nonResourceURLs", urls),
                       ("resourceNames", names)):
        if value is not None:
            out[key] = value.split(",")
    out["verbs"] = verbs.split(",")
    return out


def index_of(*objs: dict[str, Any], tenant: str = "root") -> RbacIndex:
    idx = RbacIndex()
    plural = {"Role": "roles", "ClusterRole": "clusterroles", "RoleBinding": "rolebindings",
              "ClusterRoleBinding": "clusterrolebindings"}
    for o in objs:
        meta = o["metadata"]
        idx.apply(tenant, plural[o["kind"]], meta.get("namespace", ""), meta["name"], msgspec.json.encode(o))
    return idx


def cluster_role(name: str, *rules: dict[str, Any], labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"kind": "ClusterRole", "metadata": {"name": name, "labels": labels or {}}, "rules": list(rules)}


def role(ns: str, name: str, *rules: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "Role", "metadata": {"name": name, "namespace": ns}, "rules": list(rules)}


def subjects(*specs: str) -> list[dict[str, Any]]:
    out = []
    for s in specs:
        kind, name = s.split(":", 1)
        if kind == "ServiceAccount":
            ns, _, n = name.partition("/")
            out.append({"kind": kind, "name": n, **({"namespace": ns} if ns else {})})
        else:
            out.append({"kind": kind, "name": name, "apiGroup": "rbac.authorization.k8s.io"})
    return out


def crb(name: str, role_name: str, *subs: str) -> dict[str, Any]:
    return {"kind": "ClusterRoleBinding", "metadata": {"name": name},
            "roleRef": {"kind": "ClusterRole", "name": role_name}, "subjects": subjects(*subs)}


def rb(ns: str, name: str, kind: str, role_name: str, *subs: str) -> dict[str, Any]:
    return {"kind": "RoleBinding", "metadata": {"name": name, "namespace": ns},
            "roleRef": {"kind": kind, "name": role_name}, "subjects": subjects(*subs)}


def res(verb: str, group: str = "", resource: str = "", sub: str = "", ns: str = "", name: str = "") -> Attributes:
    return Attributes(verb=verb, api_group=group, resource=resource, subresource=sub, namespace=ns, name=name)


def url(verb: str, path: str) -> Attributes:
    return Attributes(verb=verb, resource_request=False, path=path)


# ---- TestRuleMatches (rbac_test.go) -----------------------------------------------------------------

RULE_CASES: list[tuple[str, dict[str, Any], list[tuple[Attributes, bool]]]] = [
    ("star verb, exact match other", rule("*", "group1", "resource1"), [
        (res("verb1", "group1", "resource1"), True), (res("verb1", "group2", "resource1"), False),
        (res("verb1", "group1", "resource2"), False), (res("verb2", "group1", "resource1"), True)]),
    ("star group, exact match other", rule("verb1", "*", "resource1"), [
        (res("verb1", "group1", "resource1"), True), (res("verb1", "group2", "resource1"), True),
        (res("verb1", "group1", "resource2"), False), (res("verb2", "group1", "resource1"), False)]),
    ("star resource, exact match other", rule("verb1", "group1", "*"), [
        (res("verb1", "group1", "resource1"), True), (res("verb1", "group2", "resource1"), False),
        (res("verb1", "group1", "resource2"), True), (res("verb2", "group1", "resource1"), False)]),
    ("tuple expansion", rule("verb1,verb2", "group1,group2", "resource1,resource2"), [
        (res(v, g, r), True) for v in ("verb1", "verb2") for g in ("group1", "group2")
        for r in ("resource1", "resource2")]),
    ("subresource expansion", rule("*", "*", "resource1/subresource1"), [
        (res("verb1", "group1", "resource1", "subresource1"), True),
        (res("verb1", "group2", "resource1", "subresource2"), False),
        (res("verb1", "group1", "resource2", "subresource1"), False),
        (res("verb1", "group1", "resource1"), False)]),
    ("star subresource", rule("*", "*", "*/scale"), [
        (res("get", "apps", "deployments", "scale"), True), (res("get", "apps", "deployments"), False),
        (res("get", "apps", "deployments", "status"), False)]),
    ("star nonresource, exact match other", rule("verb1", urls="*"), [
        (url("verb1", "/foo"), True), (url("verb1", "/foo/bar/one"), True), (url("verb2", "/foo"), False)]),
    ("star nonresource subpath", rule("verb1", urls="/foo/*"), [
        (url("verb1", "/foo"), False), (url("verb1", "/foo/bar"), True), (url("verb1", "/foo/baz/one"), True),
        (url("verb1", "/bar"), False)]),
    ("star verb, exact nonresource", rule("*", urls="/foo,/foo/bar/one"), [
        (url("verb1", "/foo"), True), (url("verb1", "/foo/bar"), False), (url("verb1", "/foo/bar/one"), True),
        (url("verb2", "/foo"), True)]),
    ("resource names", rule("get", "", "configmaps", names="a,b"), [
        (res("get", "", "configmaps", name="a"), True), (res("get", "", "configmaps", name="c"), False),
        (res("get", "", "configmaps"), False), (res("list", "", "configmaps", name="a"), False)]),
    ("a resource rule never allows a path, a URL rule never a resource", rule("*", "*", "*"), [
        (url("get", "/api"), False), (res("get", "", "pods"), True)]),
]


@pytest.mark.parametrize("name,raw,cases", RULE_CASES, ids=[c[0] for c in RULE_CASES])
def test_rule_matches(name: str, raw: dict[str, Any], cases: list[tuple[Attributes, bool]]) -> None:
    r = Rule(raw)
    for a, want in cases:
        got = (r.allows_resource(a.verb, a.api_group, a.resource, a.subresource, a.name) if a.resource_request
               else r.allows_path(a.verb, a.path))
        assert got is want, (name, a)


# ---- TestAuthorizer (rbac_test.go) -----------------------------------------------------------------

def user(name: str, *groups: str, tenant: str = "root") -> UserInfo:
    return UserInfo(name=name, groups=groups, tenant=tenant)


def test_authorizer_cluster_role_bound_in_a_namespace() -> None:
    az = Authorizer(index_of(cluster_role("admin", rule("*", "*", "*", "*")),
                             rb("ns1", "b", "ClusterRole", "admin", "User:admin", "Group:admins")))
    ok = [(user("admin"), res("get", "", "Pods", ns="ns1")), (user("admin", "group1"), res("watch", "", "Foobar",
                                                                                          ns="ns1")),
          (user("joe", "admins"), res("watch", "", "Foobar", ns="ns1")),
          (user("joe", "group1", "admins"), res("watch", "", "Foobar", ns="ns1"))]
    bad = [(user("admin"), res("GET", "", "Pods", ns="ns2")), (user("admin"), res("GET", "", "Nodes")),
           (user("admin", "admins"), res("GET", "", "Pods", ns="ns2"))]
    for u, a in ok:
        assert az.authorize(u, a).allowed, a
    for u, a in bad:
        assert not az.authorize(u, a).allowed, a


def test_authorizer_non_resource_urls() -> None:
    az = Authorizer(index_of(
        cluster_role("getter", rule("get", urls="/apis")), cluster_role("any", rule("*", urls="/apis")),
        cluster_role("prefix", rule("get", urls="/apis/*")),
        crb("b1", "getter", "User:foo", "Group:bar"), crb("b2", "any", "User:admin", "Group:admin"),
        crb("b3", "prefix", "User:prefixed", "Group:prefixed")))
    for u, a in [(user("foo"), url("get", "/apis")), (user("", "bar"), url("get", "/apis")),
                 (user("admin"), url("watch", "/apis")), (user("prefixed"), url("get", "/apis/v1/foobar"))]:
        assert az.authorize(u, a).allowed, (u, a)
    for u, a in [(user("foo"), url("watch", "/apis")), (user("foo"), url("get", "/api/v1")),
                 (user("prefixed"), url("get", "/api/v1")), (user("prefixed"), url("get", "/apis"))]:
        assert not az.authorize(u, a).allowed, (u, a)


def test_resolution_subjects_and_scopes() -> None:
    az = Authorizer(index_of(
        cluster_role("reader", rule("get,list", "", "configmaps")),
        role("a", "secrets", rule("get", "", "secrets")),
        rb("a", "sa", "Role", "secrets", "ServiceAccount:/robot"),  # namespace defaults to the binding's
        rb("a", "other-ns-sa", "ClusterRole", "reader", "ServiceAccount:b/bot"),
        rb("a", "all-sas", "ClusterRole", "reader", "Group:system:serviceaccounts:a"),
        crb("everyone", "reader", "Group:system:authenticated"),
        crb("dangling", "missing", "User:carol")))
    robot = user("system:serviceaccount:a:robot", "system:serviceaccounts", "system:serviceaccounts:a")
    assert az.authorize(robot, res("get", "", "secrets", ns="a", name="s")).allowed
    assert not az.authorize(robot, res("get", "", "secrets", ns="b", name="s")).allowed
    bot = user("system:serviceaccount:b:bot")
    d = az.authorize(bot, res("list", "", "configmaps", ns="a"))
    assert d.allowed and d.reason == ('RBAC: allowed by RoleBinding "other-ns-sa/a" of ClusterRole "reader" to '
                                      'ServiceAccount "bot/b"')
    assert not az.authorize(bot, res("list", "", "configmaps", ns="b")).allowed
    d = az.authorize(user("x", "system:authenticated"), res("list", "", "configmaps"))
    assert d.reason == 'RBAC: allowed by ClusterRoleBinding "everyone" of ClusterRole "reader" to Group ' \
                       '"system:authenticated"'
    d = az.authorize(user("carol"), res("list", "", "configmaps"))
    assert not d.allowed and d.reason == 'RBAC: clusterroles.rbac.authorization.k8s.io "missing" not found'
    # Masters first, always; other tenants see nothing of this one.
    assert az.authorize(user("root", "system:masters"), res("delete", "x", "y")).allowed
    assert not az.authorize(user("x", "system:authenticated", tenant="t2"), res("list", "", "configmaps")).allowed


def test_index_follows_changes() -> None:
    idx = index_of(cluster_role("reader", rule("get", "", "configmaps")),
                   rb("a", "b", "ClusterRole", "reader", "User:alice"))
    az = Authorizer(idx)
    alice = user("alice")
    assert az.authorize(alice, res("get", "", "configmaps", ns="a")).allowed
    idx.apply("root", "clusterroles", "", "reader", msgspec.json.encode(cluster_role("reader", rule("list", "",
                                                                                                       "configmaps"))))
    assert not az.authorize(alice, res("get", "", "configmaps", ns="a")).allowed
    assert az.authorize(alice, res("list", "", "configmaps", ns="a")).allowed
    # A binding's subjects change: the old one is gone from the index.
    idx.apply("root", "rolebindings", "a", "b", msgspec.json.encode(rb("a", "b", "ClusterRole", "reader", "User:bob")))
    assert not az.authorize(alice, res("list", "", "configmaps", ns="a")).allowed
    assert az.authorize(user("bob"), res("list", "", "configmaps", ns="a")).allowed
    idx.apply("root", "rolebindings", "a", "b", None)
    assert not az.authorize(user("bob"), res("list", "", "configmaps", ns="a")).allowed
    assert idx.tenant("root").by_subject == {}


def test_modes() -> None:
    assert parse_modes("RBAC") == ("RBAC",)
    assert parse_modes("AlwaysDeny,RBAC") == ("AlwaysDeny", "RBAC")
    for bad in ("", "Foo", "RBAC,RBAC", "Node,RBAC", "Webhook"):
        with pytest.raises(ValueError):
            parse_modes(bad)
    idx = index_of(cluster_role("r", rule("get", "", "pods")), crb("b", "r", "User:u"))
    u = user("u")
    assert Authorizer(idx, ("AlwaysAllow",)).authorize(u, res("delete", "", "x")).allowed
    assert Authorizer(idx, ("RBAC", "AlwaysDeny")).authorize(u, res("get", "", "pods")).allowed
    d = Authorizer(idx, ("AlwaysDeny", "RBAC")).authorize(u, res("get", "", "pods"))
    assert not d.allowed and d.denied
    assert Authorizer(idx, ("AlwaysDeny",)).authorize(user("m", "system:masters"), res("get", "", "pods")).allowed


# ---- the Forbidden message (responsewriters.forbiddenMessage inside errors.NewForbidden) ---------------

def test_forbidden_messages() -> None:
    alice = user("alice")
    cm, ns, dep = REG.get("", "v1", "configmaps"), REG.get("", "v1", "namespaces"), REG.get("", "v1", "serviceaccounts")
    assert cm is not None and ns is not None and dep is not None

    def msg(req: Request) -> tuple[str, dict[str, str]]:
        e = forbidden(alice, attributes_of(req))
        return e.message, {"name": e.name, "group": e.group, "kind": e.kind}

    assert msg(Request(verb="list", rdef=cm, namespace="a")) == (
        'configmaps is forbidden: User "alice" cannot list resource "configmaps" in API group "" in the namespace "a"',
        {"name": "", "group": "", "kind": "configmaps"})
    assert msg(Request(verb="list", rdef=cm))[0] == (
        'configmaps is forbidden: User "alice" cannot list resource "configmaps" in API group "" at the cluster scope')
    assert msg(Request(verb="get", rdef=ns, name="x"))[0] == (
        'namespaces "x" is forbidden: User "alice" cannot get resource "namespaces" in API group "" in the '
        'namespace "x"')
    assert msg(Request(verb="create", rdef=dep, namespace="a", name="sa", subresource="token"))[0] == (
        'serviceaccounts "sa" is forbidden: User "alice" cannot create resource "serviceaccounts/token" in API '
        'group "" in the namespace "a"')
    role_def = REG.get("rbac.authorization.k8s.io", "v1", "clusterroles")
    assert role_def is not None
    assert msg(Request(verb="delete", rdef=role_def, name="r")) == (
        ('clusterroles.rbac.authorization.k8s.io "r" is forbidden: User "alice" cannot delete resource '
         '"clusterroles" in API group "rbac.authorization.k8s.io" at the cluster scope'),
        {"name": "r", "group": "rbac.authorization.k8s.io", "kind": "clusterroles"})
    e = forbidden(alice, attributes_of(Request(verb="get", path="/metrics")))
    assert e.message == 'forbidden: User "alice" cannot get path "/metrics"' and e.kind == ""


# ---- the bootstrap policy -------------------------------------------------------------------------

def _items(name: str) -> list[dict[str, Any]]:
    return list(yaml.safe_load((DATA / name).read_text())["items"])


def test_bootstrap_policy_is_kubes() -> None:
    assert cluster_roles() == _items("cluster-roles.yaml")
    assert cluster_role_bindings() == _items("cluster-role-bindings.yaml")


def bootstrap_index() -> RbacIndex:
    """The bootstrap policy with its aggregated roles filled in, as the controllers leave it."""
    roles = {r["metadata"]["name"]: r for r in cluster_roles()}
    for _ in range(3):  # admin <- edit <- view: each pass one level
        labels = {n: (r["metadata"].get("labels") or {}, r.get("rules") or []) for n, r in roles.items()}
        for n, r in roles.items():
            if r.get("aggregationRule"):
                r["rules"] = aggregated_rules(n, r["aggregationRule"]["clusterRoleSelectors"], labels)
    return index_of(*roles.values(), *cluster_role_bindings())


def test_bootstrap_authorization() -> None:
    """What the bootstrap policy lets everyone do (was: the interim policy's test)."""
    az = Authorizer(bootstrap_index())
    bob = user("bob", "system:authenticated")
    prom = user("prometheus", "system:monitoring", "system:authenticated")
    assert az.authorize(bob, url("get", "/version")).allowed
    assert az.authorize(bob, url("get", "/apis/apps/v1")).allowed
    assert az.authorize(bob, res("create", "authorization.k8s.io", "selfsubjectaccessreviews")).allowed
    assert not az.authorize(bob, res("get", "", "configmaps", ns="x", name="y")).allowed
    assert not az.authorize(bob, url("get", "/metrics")).allowed
    assert az.authorize(prom, url("get", "/metrics")).allowed
    assert az.authorize(prom, url("get", "/readyz/log")).allowed
    assert not az.authorize(prom, url("get", "/metricsx")).allowed
    assert not az.authorize(prom, url("post", "/metrics")).allowed
    assert not az.authorize(prom, res("get", "", "configmaps", ns="x", name="y")).allowed


def test_aggregation_view_edit_admin() -> None:
    idx = bootstrap_index()
    t = idx.tenant("root")
    raw = {n: [r.raw for r in e.rules] for n, e in t.clusterroles.items()}
    view, edit, admin = raw["view"], raw["edit"], raw["admin"]
    assert view == raw["system:aggregate-to-view"]
    assert all(r in edit for r in view) and all(r in edit for r in raw["system:aggregate-to-edit"])
    assert all(r in admin for r in edit) and all(r in admin for r in raw["system:aggregate-to-admin"])
    # Selectors: itself skipped, each rule once, sorted by role name.
    roles = {"agg": ({}, []), "b": ({"x": "1"}, [rule("get", "", "b")]), "a": ({"x": "1"}, [rule("get", "", "a"),
                                                                                           rule("get", "", "b")])}
    assert aggregated_rules("agg", [{"matchLabels": {"x": "1"}}], roles) == [rule("get", "", "a"), rule("get", "", "b")]
    assert aggregated_rules("agg", [{"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}], roles) == []


def test_reconcile_keeps_user_changes() -> None:
    expected = next(r for r in cluster_roles() if r["metadata"]["name"] == "system:discovery")
    assert reconcile_role(None, expected) == expected
    assert reconcile_role(expected, expected) is None
    mine = {**expected, "rules": [*expected["rules"], rule("get", urls="/mine")]}
    assert reconcile_role(mine, expected) is None  # an added rule stays
    less = {**expected, "rules": [rule("get", urls="/api")], "metadata": {**expected["metadata"], "labels": {}}}
    fixed = reconcile_role(less, expected)
    assert fixed is not None and fixed["rules"][0] == rule("get", urls="/api") and expected["rules"][0] in fixed["rules"]
    assert fixed["metadata"]["labels"] == {"kubernetes.io/bootstrapping": "rbac-defaults"}
    off = {**less, "metadata": {**less["metadata"], "annotations": {"rbac.authorization.kubernetes.io/autoupdate":
                                                                     "false"}}}
    assert reconcile_role(off, expected) is None
    b = cluster_role_bindings()[1]
    assert reconcile_binding({**b, "subjects": []}, b)["subjects"] == b["subjects"]  # type: ignore[index]
    extra = {**b, "subjects": [*b["subjects"], *subjects("User:me")]}
    assert reconcile_binding(extra, b) is None


# ---- escalation (policy_comparator.go Covers, CompactString) ----------------------------------------

def test_covers() -> None:
    owner = [Rule(rule("get,list", "", "configmaps,*/status")),
             Rule(rule("get", urls="/logs/*")), Rule(rule("get", "", "secrets", names="s1"))]
    assert not _uncovered(owner, [rule("get", "", "configmaps")])
    assert not _uncovered(owner, [rule("list", "", "pods/status,deployments/status")])
    assert _uncovered(owner, [rule("get", "", "pods")]) == [rule("get", "", "pods")]
    assert not _uncovered(owner, [rule("get", urls="/logs/a/b")])
    assert _uncovered(owner, [rule("get", urls="/logs")])
    assert not _uncovered(owner, [rule("get", "", "secrets", names="s1")])
    assert _uncovered(owner, [rule("get", "", "secrets")])  # all names need an owner rule without names
    assert not _uncovered([Rule(rule("*", "*", "*"))], [rule("create", "apps", "deployments/scale")])
    missing = _uncovered(owner, [rule("get,delete", "", "pods"), rule("get,post", urls="/x")])
    assert sorted(compact_string(r) for r in compact_rules(missing)) == [
        '{APIGroups:[""], Resources:["pods"], Verbs:["get" "delete"]}',
        '{NonResourceURLs:["/x"], Verbs:["get"]}', '{NonResourceURLs:["/x"], Verbs:["post"]}']


def test_guard_escalation() -> None:
    idx = index_of(cluster_role("cm-reader", rule("get", "", "configmaps")),
                   cluster_role("cm-writer", rule("get,create", "", "configmaps")),
                   rb("a", "b", "ClusterRole", "cm-reader", "User:alice"),
                   cluster_role("binder", rule("bind", "rbac.authorization.k8s.io", "clusterroles",
                                               names="cm-writer")),
                   crb("c", "binder", "User:binder"))
    az = Authorizer(idx)
    roles, bindings = REG.get("rbac.authorization.k8s.io", "v1", "roles"), REG.get("rbac.authorization.k8s.io", "v1",
                                                                                  "rolebindings")
    assert roles is not None and bindings is not None
    alice = user("alice", "system:authenticated")
    ok_role = role("a", "r", rule("get", "", "configmaps"))
    az.guard(Request(verb="create", rdef=roles, namespace="a", user=alice), ok_role, None)
    bad_role = role("a", "r", rule("get,delete", "", "configmaps"))
    with pytest.raises(Forbidden) as e:
        az.guard(Request(verb="create", rdef=roles, namespace="a", user=alice), bad_role, None)
    assert e.value.message == (
        'roles.rbac.authorization.k8s.io "r" is forbidden: user "alice" (groups=["system:authenticated"]) is '
        'attempting to grant RBAC permissions not currently held:\n{APIGroups:[""], Resources:["configmaps"], '
        'Verbs:["delete"]}')
    with pytest.raises(Forbidden):  # not in another namespace
        az.guard(Request(verb="create", rdef=roles, namespace="b", user=alice), role("b", "r", *ok_role["rules"]),
                 None)
    with pytest.raises(Forbidden, match="attempting to grant"):
        az.guard(Request(verb="create", rdef=bindings, namespace="a", user=alice),
                 rb("a", "x", "ClusterRole", "cm-writer", "User:bob"), None)
    az.guard(Request(verb="create", rdef=bindings, namespace="a", user=alice),
             rb("a", "x", "ClusterRole", "cm-reader", "User:bob"), None)
    binder = user("binder")
    az.guard(Request(verb="create", rdef=bindings, namespace="z", user=binder),
             rb("z", "x", "ClusterRole", "cm-writer", "User:bob"), None)
    with pytest.raises(Forbidden, match='"missing" not found'):
        az.guard(Request(verb="create", rdef=bindings, namespace="z", user=binder),
                 rb("z", "x", "ClusterRole", "missing", "User:bob"), None)
    # Only ownerReferences / finalizers change: not checked again.
    old = {**bad_role, "metadata": {**bad_role["metadata"], "uid": "u"}}
    new = {**bad_role, "metadata": {**bad_role["metadata"], "finalizers": ["f"]}}
    az.guard(Request(verb="update", rdef=roles, namespace="a", name="r", user=alice), new, old)


# ---- validation (pkg/apis/rbac/validation/validation.go) -------------------------------------------

def test_rbac_validation() -> None:
    from kinds._strategy import strategy_for

    defs = {p: REG.get("rbac.authorization.k8s.io", "v1", p) for p in ("roles", "clusterroles", "rolebindings",
                                                                        "clusterrolebindings")}

    def causes(plural: str, obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[tuple[str, str]]:
        rdef = defs[plural]
        assert rdef is not None
        s = strategy_for(rdef)
        s.prepare_for_create(obj)
        return [(c.field, c.message) for c in s.validate(obj, old, rdef)]

    meta = {"name": "x", "namespace": "a"}
    assert causes("roles", {"metadata": meta, "rules": [rule("get", "", "pods")]}) == []
    assert causes("roles", {"metadata": meta, "rules": [{"verbs": []}, rule("get", urls="/x"),
                                                        rule("get", "", "pods", urls="/y")]}) == [
        ("rules[0].verbs", "Required value: verbs must contain at least one value"),
        ("rules[0].apiGroups", "Required value: resource rules must supply at least one api group"),
        ("rules[0].resources", "Required value: resource rules must supply at least one resource"),
        ("rules[1].nonResourceURLs", ('Invalid value: []string{"/x"}: namespaced rules cannot apply to '
                                      'non-resource URLs')),
        ("rules[2].nonResourceURLs", ('Invalid value: []string{"/y"}: namespaced rules cannot apply to '
                                      'non-resource URLs')),
        ("rules[2].nonResourceURLs", ('Invalid value: []string{"/y"}: rules cannot apply to both regular resources '
                                      'and non-resource URLs'))]
    assert causes("clusterroles", {"metadata": {"name": "x"}, "rules": [rule("get", urls="/x")]}) == []
    b = {"metadata": meta, "roleRef": {"kind": "ClusterRole", "name": "view"},
         "subjects": [{"kind": "User", "name": "u"}, {"kind": "ServiceAccount", "name": "sa"}]}
    assert causes("rolebindings", b) == []
    assert b["roleRef"]["apiGroup"] == "rbac.authorization.k8s.io"  # defaulted, as the subjects' groups
    assert b["subjects"][0]["apiGroup"] == "rbac.authorization.k8s.io" and "apiGroup" not in b["subjects"][1]
    crb_ = {"metadata": {"name": "x"}, "roleRef": {"kind": "Role", "name": ""},
            "subjects": [{"kind": "ServiceAccount", "name": "sa"}, {"kind": "Robot", "name": "r"}]}
    assert causes("clusterrolebindings", crb_) == [
        ("roleRef.kind", 'Unsupported value: "Role": supported values: "ClusterRole"'),
        ("roleRef.name", "Required value"),
        ("subjects[0].namespace", "Required value"),
        ("subjects[1].kind", 'Unsupported value: "Robot": supported values: "ServiceAccount", "User", "Group"')]
    changed = {**b, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"}}
    assert causes("rolebindings", changed, b) == [(
        "roleRef", ('Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"ClusterRole", '
                    'Name:"edit"}: cannot change roleRef'))]


def test_authorization_mode_flag() -> None:
    from gateway._cli import _parser, settings_from_args

    assert settings_from_args(_parser().parse_args(["serve"])).authorization_modes == ("RBAC",)
    got = settings_from_args(_parser().parse_args(["serve", "--authorization-mode", "AlwaysDeny,RBAC"]))
    assert got.authorization_modes == ("AlwaysDeny", "RBAC")
    for bad in ("Node,RBAC", "RBAC,RBAC", "rbac"):
        with pytest.raises(SystemExit, match="--authorization-mode"):
            settings_from_args(_parser().parse_args(["serve", "--authorization-mode", bad]))


def test_authorize_request_for_impersonation() -> None:
    """The synchronous ``authorize(req, user)`` that impersonation checks call (verb impersonate)."""
    from kinds import ResourceDef

    users = ResourceDef("", "v1", "User", "users", "user", False, stored=False)
    sas = ResourceDef("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", True)
    az = Authorizer(index_of(
        cluster_role("impersonator", rule("impersonate", "", "users", names="bob")),
        role("a", "sa-impersonator", rule("impersonate", "", "serviceaccounts")),
        crb("i", "impersonator", "User:alice"), rb("a", "s", "Role", "sa-impersonator", "User:alice")))
    alice = user("alice", "system:authenticated")
    az.authorize_request(Request(verb="impersonate", rdef=users, name="bob"), alice)
    with pytest.raises(Forbidden) as e:
        az.authorize_request(Request(verb="impersonate", rdef=users, name="carol"), alice)
    assert e.value.message == ('users "carol" is forbidden: User "alice" cannot impersonate resource "users" in API '
                               'group "" at the cluster scope')
    az.authorize_request(Request(verb="impersonate", rdef=sas, namespace="a", name="robot"), alice)
    with pytest.raises(Forbidden, match='in the namespace "b"'):
        az.authorize_request(Request(verb="impersonate", rdef=sas, namespace="b", name="robot"), alice)
    az.authorize_request(Request(verb="impersonate", rdef=users, name="x"), user("root", "system:masters"))
