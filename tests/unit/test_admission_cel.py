"""CEL for admission policies: the authorizer library (kinds/_cel.py), schema types and type
checking (kinds/_cel_types.py, kinds/_admissionreg.py), and kube's per-validation decisions and
audit annotations of a policy (actors/_admission_policies.py)."""

from __future__ import annotations

from typing import Any

import pytest

from actors._admission import add_audit_annotation, audit_annotations, collecting_warnings
from actors._admission_policies import PolicyDispatcher, _Policy
from kinds import Registry
from kinds._admissionreg import POLICY_VARIABLES, policy_type_check, types_to_check
from kinds._cel import authorizer_value, authorizing, compile_cel
from kinds._cel_types import check_expression, schema_types
from kinds._errors import Forbidden
from kinds._schemas import schema_for

RR = {"group": "apps", "resource": "deployments", "subresource": "", "namespace": "ns", "name": "d"}


def test_authorizer_library_builds_checks_and_asks_the_installed_authorizer() -> None:
    seen: list[dict[str, str]] = []

    def check(attrs: dict[str, str]) -> tuple[bool, str, str]:
        seen.append(attrs)
        return attrs.get("resource") == "deployments", "RBAC: allowed by x", ""

    data = {"authorizer": authorizer_value(RR)}
    cases = {
        "authorizer.group('apps').resource('deployments').namespace('a').name('n').check('create').allowed()": True,
        "authorizer.group('').resource('pods').subresource('log').check('get').allowed()": False,
        "authorizer.requestResource.check('delete').allowed()": True,
        "authorizer.requestResource.check('delete').reason()": "RBAC: allowed by x",
        "authorizer.serviceAccount('ns', 'sa').path('/healthz').check('get').errored()": False,
        "authorizer.path('/metrics').check('get').error()": "",
    }
    with authorizing(check):
        for expr, want in cases.items():
            assert compile_cel(expr, POLICY_VARIABLES).evaluate(data) == want, expr
    assert seen[0] == {"group": "apps", "resource": "deployments", "namespace": "a", "name": "n", "verb": "create"}
    assert seen[1]["subresource"] == "log" and seen[1]["group"] == ""
    assert seen[2] == {**RR, "verb": "delete"}
    assert seen[4] == {"serviceAccount": "ns/sa", "path": "/healthz", "verb": "get"}


def test_authorizer_functions_refuse_other_receivers() -> None:
    prog = compile_cel("object.check('get').allowed()", POLICY_VARIABLES)
    with authorizing(lambda a: (True, "", "")), pytest.raises(Exception, match="no such overload"):
        prog.evaluate({"object": {"spec": {}}})


DEPLOY = schema_for("apps", "v1", "Deployment")


@pytest.mark.parametrize("expr", [
    "object.spec.replicas <= 5", "object.spec.replicas < 3.5", "object.metadata.labels['a'] == 'b'",
    "object.metadata.?annotations.?x.orValue('') == ''", "object.spec.strategy.rollingUpdate.maxSurge == 1",
    "object.metadata.creationTimestamp == null", "oldObject == null || oldObject.spec.replicas == 1",
    "object.spec.template.spec.containers.all(c, c.image.startsWith('r/'))", "variables.anything.goes",
    "request.userInfo.username == 'x'", "authorizer.requestResource.check('get').allowed()",
    "object.spec.template.spec.containers[0].resources.limits['cpu'] == '1'",
])
def test_schema_types_report_nothing_for_valid_expressions(expr: str) -> None:
    types = schema_types({"object": DEPLOY, "oldObject": DEPLOY})
    assert check_expression(expr, POLICY_VARIABLES, types) == ""


def test_schema_types_report_unknown_fields_and_bad_overloads_in_cel_go_words() -> None:
    types = schema_types({"object": DEPLOY, "oldObject": DEPLOY})
    expr = "object.spec.template.spec.containers.all(c, c.securityContext.Privileged)"
    assert check_expression(expr, POLICY_VARIABLES, types) == (
        "ERROR: <input>:1:62: undefined field 'Privileged'\n | " + expr + "\n | " + "." * 61 + "^")
    got = check_expression("object.spec.replicas.startsWith('x')", POLICY_VARIABLES, types)
    assert "found no matching overload for 'startsWith' applied to '(int, string)'" in got
    assert "undeclared reference to 'nobody'" in check_expression("nobody == 1", POLICY_VARIABLES, types)


def test_custom_resource_schemas_inline_objects_and_dyn_fields() -> None:
    crd = {"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
            "size": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}},
            "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "port": {"x-kubernetes-int-or-string": True},
            "byName": {"type": "object", "additionalProperties": {"type": "object", "properties": {
                "on": {"type": "boolean"}}}},
            "loose": {"type": "object", "properties": {"odd-name": {"type": "string"}}}}}}}
    types = schema_types({"object": crd})
    for ok in ("object.spec.size > 1", "object.spec.tags.exists(t, t == 'a')", "object.spec.extra.any.thing",
               "object.spec.port == 80 || object.spec.port == 'http'", "object.spec.byName['a'].on",
               "object.spec.loose.whatever == 1"):
        assert check_expression(ok, POLICY_VARIABLES, types) == "", ok
    assert "undefined field 'off'" in check_expression("object.spec.byName['a'].off", POLICY_VARIABLES, types)


def test_types_to_check_and_policy_warnings_as_kube() -> None:
    reg = Registry()

    def resolve(g: str, v: str, r: str) -> list[tuple[str, str, str, Any]]:
        d = reg.get(g, v, r)
        return [(d.group, d.version, d.kind, schema_for(d.group, d.version, d.kind))] if d else []

    spec: dict[str, Any] = {
        "matchConstraints": {"resourceRules": [
            {"apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["replicasets", "*", "deployments/scale",
                                                                         "deployments"]},
            {"apiGroups": ["*"], "apiVersions": ["v1"], "resources": ["pods"]},
            {"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods", "nosuch"]}]},
        "validations": [{"expression": "object.spec.replicas > 0"},
                        {"expression": "true", "messageExpression": "params.data.x"}]}
    kinds = types_to_check(spec, resolve)
    assert [k[:3] for k in kinds] == [("", "v1", "Pod"), ("apps", "v1", "Deployment"), ("apps", "v1", "ReplicaSet")]
    warnings = policy_type_check(spec, kinds, schema_for("", "v1", "ConfigMap"), None)
    assert warnings == [{"fieldRef": "spec.validations[0].expression",
                         "warning": "/v1, Kind=Pod: ERROR: <input>:1:12: undefined field 'replicas'\n"
                                    " | object.spec.replicas > 0\n | ...........^\n"}]


def _policy(validations: list[dict[str, Any]], annotations: list[dict[str, Any]] | None = None,
            failure_policy: str = "Fail") -> _Policy:
    return _Policy({"metadata": {"name": "p"}, "spec": {"failurePolicy": failure_policy, "validations": validations,
                                                         "auditAnnotations": annotations or []}})


def test_every_validation_is_decided_with_its_index() -> None:
    p = _policy([{"expression": "object.a > 1", "message": "a"}, {"expression": "object.b > 1"},
                 {"expression": "object.nosuch > 1"}, {"expression": "true"}],
                [{"key": "k", "valueExpression": "'v-' + string(object.a)"}, {"key": "n", "valueExpression": "null"},
                 {"key": "bad", "valueExpression": "object.nosuch"}])
    r = PolicyDispatcher._evaluate(p, {"object": {"a": 0, "b": 0}})
    assert [(f.index, f.message) for f in r.failures] == [
        (0, "a"), (1, "failed expression: object.b > 1"),
        (2, "expression 'object.nosuch > 1' resulted in error: no such key: nosuch")]
    assert r.annotations[0] == ("k", "v-0", "")
    assert r.annotations[1][0] == "bad" and r.annotations[1][1] is None and "resulted in error" in r.annotations[1][2]
    ignore = _policy([{"expression": "object.nosuch > 1"}], [{"key": "bad", "valueExpression": "object.x"}],
                     "Ignore")
    r = PolicyDispatcher._evaluate(ignore, {"object": {}})
    assert r.failures == [] and r.annotations == [("bad", None, "")]


def test_audit_annotations_are_per_write_and_ride_on_a_denial() -> None:
    assert audit_annotations() == {}
    with pytest.raises(Forbidden) as e, collecting_warnings():
        add_audit_annotation("p/k", "v")
        add_audit_annotation("p/k", "second value is dropped, as kube's AddAnnotation")
        add_audit_annotation("long/k", "x" * 20_000)
        assert audit_annotations()["p/k"] == "v"
        assert len(audit_annotations()["long/k"]) == 10 * 1024
        raise Forbidden("no")
    assert e.value.audit_annotations["p/k"] == "v"  # type: ignore[attr-defined]
    assert audit_annotations() == {}


def test_mutation_type_names_are_rewritten_outside_string_literals_only() -> None:
    from kinds._cel_mutation import _literal_fields, _rewrite

    text, paths = _rewrite("Object{spec: Object.spec{x: 'Object.spec{', y: \"JSONPatch{\"}} + r'Object.a{'")
    assert text == "Object{spec: Object_spec{x: 'Object.spec{', y: \"JSONPatch{\"}} + r'Object.a{'"
    assert paths == {(), ("spec",)}
    assert _literal_fields(text, paths) == {(): {"spec"}, ("spec",): {"x", "y"}}


def test_apply_configuration_typed_by_the_schema_and_merged_as_smd() -> None:
    from kinds._cel_mutation import compile_mutation
    from kinds._fieldpath import builtin_type, merge

    obj = {"metadata": {"name": "d", "labels": {"a": "b"}},
           "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    m = compile_mutation("Object{spec: Object.spec{replicas: 0, paused: false, template: Object.spec.template{"
                         "spec: Object.spec.template.spec{containers: [Object.spec.template.spec.containers{"
                         "name: 'c', image: 'nginx:2'}]}}}, metadata: Object.metadata{labels: {'x': 'y'}}}",
                         "ApplyConfiguration", DEPLOY)
    cfg = m.evaluate({"object": obj})
    # Zero values set by the expression are kept (proto2 presence); ints stay ints.
    assert cfg["spec"]["replicas"] == 0 and cfg["spec"]["paused"] is False
    merged = merge(obj, cfg, builtin_type("apps", "v1", "Deployment"))
    assert merged["metadata"]["labels"] == {"a": "b", "x": "y"}
    assert merged["spec"]["template"]["spec"]["containers"] == [{"name": "c", "image": "nginx:2"}]
    with pytest.raises(Exception) as e:
        compile_mutation("Object{spec: Object.spec{replicaz: 1}}", "ApplyConfiguration", DEPLOY)
    # kube's names and columns (the caret under the field).
    assert str(e.value) == ("ERROR: <input>:1:34: undefined field 'replicaz'\n"
                            " | Object{spec: Object.spec{replicaz: 1}}\n | " + "." * 33 + "^")
    with pytest.raises(Exception, match="must evaluate to Object"):
        compile_mutation("object", "ApplyConfiguration", DEPLOY).evaluate({"object": obj})


def test_json_patch_values_escape_key_and_typed_values() -> None:
    from kinds._cel_mutation import compile_mutation

    m = compile_mutation("[JSONPatch{op: 'add', path: '/metadata/annotations/' + jsonpatch.escapeKey('a/b~c'), "
                         "value: {'n': 2, 'f': 1.5, 'l': [1, 'x', null]}}, JSONPatch{op: 'remove', path: '/x'},"
                         " JSONPatch{op: 'add', path: '/spec/template/spec/containers/-',"
                         " value: Object.spec.template.spec.containers{name: 's', image: 'i'}}]", "JSONPatch", DEPLOY)
    assert m.evaluate({}) == [
        {"op": "add", "path": "/metadata/annotations/a~1b~0c", "value": {"n": 2, "f": 1.5, "l": [1, "x", None]}},
        {"op": "remove", "path": "/x"},
        {"op": "add", "path": "/spec/template/spec/containers/-", "value": {"name": "s", "image": "i"}}]
    with pytest.raises(Exception, match="must evaluate to a list of JSONPatch"):
        compile_mutation("[1]", "JSONPatch", DEPLOY).evaluate({})


def test_variables_are_typed_by_their_expressions_for_type_checking() -> None:
    spec = {"variables": [{"name": "spec", "expression": "object.spec"},
                          {"name": "n", "expression": "variables.spec.replicas"},
                          {"name": "cs", "expression": "object.spec.template.spec.containers"},
                          {"name": "bad", "expression": "object.nope"}],
            "validations": [{"expression": "variables.n <= 3 && variables.spec.paused == false"},
                            {"expression": "variables.spec.replicaz > 1"},
                            {"expression": "variables.cs.all(c, c.imag != '')"},
                            {"expression": "variables.bad.anything == 1"}]}
    warnings = policy_type_check(spec, [("apps", "v1", "Deployment", DEPLOY)], None, None)
    assert [(w["fieldRef"], w["warning"].split("\n")[0]) for w in warnings] == [
        ("spec.validations[1].expression",
         "apps/v1, Kind=Deployment: ERROR: <input>:1:15: undefined field 'replicaz'"),
        ("spec.validations[2].expression", "apps/v1, Kind=Deployment: ERROR: <input>:1:22: undefined field 'imag'")]
