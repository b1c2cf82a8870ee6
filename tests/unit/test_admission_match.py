"""Pure admission decisions: rule matching (kube's predicates/rules), the CEL wrapper, the quota
usage of an object."""

from __future__ import annotations

from fractions import Fraction

import pytest

from actors._admission_match import Conditions, rule_matches
from actors._admission_plugins import usage_of
from kinds._cel import MAX_EXPRESSION_LENGTH, CelCompileError, CelEvalError, compile_cel

RULE = {"operations": ["CREATE"], "apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments"],
        "scope": "*"}


@pytest.mark.parametrize(("resources", "resource", "sub", "want"), [
    (["deployments"], "deployments", "", True),
    (["deployments"], "deployments", "scale", False),
    (["*"], "deployments", "", True),
    (["*"], "deployments", "status", False),  # "*" is every resource but no subresource
    (["*/*"], "deployments", "status", True),
    (["*/scale"], "deployments", "scale", True),
    (["*/scale"], "deployments", "status", False),
    (["deployments/*"], "deployments", "status", True),
    (["deployments/*"], "replicasets", "status", False),
    (["deployments/status"], "deployments", "status", True),
])
def test_rule_resources(resources: list[str], resource: str, sub: str, want: bool) -> None:
    rule = {**RULE, "apiGroups": ["*"], "resources": resources}
    assert rule_matches(rule, "CREATE", "apps", "v1", resource, sub, True) is want


def test_rule_operation_group_version_scope() -> None:
    assert rule_matches(RULE, "CREATE", "apps", "v1", "deployments", "", True)
    assert not rule_matches(RULE, "UPDATE", "apps", "v1", "deployments", "", True)
    assert rule_matches({**RULE, "operations": ["*"]}, "DELETE", "apps", "v1", "deployments", "", True)
    assert not rule_matches(RULE, "CREATE", "", "v1", "deployments", "", True)
    assert not rule_matches(RULE, "CREATE", "apps", "v1beta1", "deployments", "", True)
    assert not rule_matches({**RULE, "scope": "Cluster"}, "CREATE", "apps", "v1", "deployments", "", True)
    assert rule_matches({**RULE, "scope": "Namespaced"}, "CREATE", "apps", "v1", "deployments", "", True)
    assert not rule_matches({**RULE, "resourceNames": ["a"]}, "CREATE", "apps", "v1", "deployments", "", True, "b")


def test_cel_wrapper() -> None:
    variables = ("object", "oldObject", "params")
    p = compile_cel("object.spec.replicas <= int(params.data.max)", variables)
    assert p.evaluate({"object": {"spec": {"replicas": 3}}, "params": {"data": {"max": "5"}}}) is True
    assert p.evaluate({"object": {"spec": {"replicas": 9}}, "params": {"data": {"max": "5"}}}) is False
    with pytest.raises(CelEvalError):
        p.evaluate({"object": {"spec": {}}, "params": {"data": {"max": "5"}}})
    # kube's libraries: strings, optionals, cross-type numerics, macros.
    assert compile_cel("object.?metadata.?labels.?app.orValue('none')", variables).evaluate(
        {"object": {"metadata": {}}}) == "none"
    assert compile_cel("'A-b'.lowerAscii().split('-')", variables).evaluate({}) == ["a", "b"]
    assert compile_cel("object.spec.replicas < 3.5", variables).evaluate({"object": {"spec": {"replicas": 3}}})
    assert compile_cel("object.c.all(x, x.startsWith('r/'))", variables).evaluate({"object": {"c": ["r/a"]}})
    assert compile_cel("oldObject == null", variables).evaluate({"oldObject": None}) is True
    with pytest.raises(CelCompileError):
        compile_cel("object.spec.replicas <=", variables)
    with pytest.raises(CelCompileError):
        compile_cel("nosuchvariable == 1", variables)
    with pytest.raises(CelCompileError, match="too long"):
        compile_cel("1 == 1 && " * (MAX_EXPRESSION_LENGTH // 9) + "true", variables)


def test_match_conditions() -> None:
    c = Conditions([{"name": "a", "expression": "object.metadata.name.startsWith('x')"},
                    {"name": "b", "expression": "request.operation == 'CREATE'"}])
    assert c.evaluate({"object": {"metadata": {"name": "xy"}}, "request": {"operation": "CREATE"}}) == (True, "")
    assert c.evaluate({"object": {"metadata": {"name": "y"}}, "request": {"operation": "CREATE"}}) == (False, "")
    ok, err = c.evaluate({"object": {"metadata": {}}, "request": {}})
    assert not ok and err.startswith("matchCondition 'a' failed")
    bad = Conditions([{"name": "c", "expression": "object.("}])
    assert bad.evaluate({})[1].startswith("compilation failed for matchCondition 'c'")


def test_quota_usage_of_a_pod() -> None:
    pod = {"spec": {"containers": [{"resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
                                   {"resources": {"limits": {"cpu": "1"}}}]}}
    u = usage_of("", "pods", pod)
    assert u["pods"] == 1 and u["count/pods"] == 1
    assert u["requests.cpu"] == Fraction(5, 4) and u["limits.cpu"] == 1
    assert u["requests.memory"] == 64 * 2**20
    assert usage_of("apps", "deployments", {}) == {"count/deployments.apps": 1}
