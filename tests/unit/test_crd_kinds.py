"""kinds/_crd.py: CRD checks, definitions from a CRD, names acceptance, custom resource validation,
defaulting and CEL rules."""

from __future__ import annotations

import copy

from kinds._crd import (
    accepted_names_status,
    apply_defaults,
    defs_from_crd,
    structural_errors,
    validate_crd,
    validate_custom,
)

SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["size"],
            "x-kubernetes-validations": [
                {"rule": "self.size <= self.max", "messageExpression": "'size ' + string(self.size) + ' too big'",
                 "fieldPath": ".size", "reason": "FieldValueForbidden"},
                {"rule": "self.size >= oldSelf.size", "message": "may not shrink"},
            ],
            "properties": {
                "size": {"type": "integer", "minimum": 0},
                "max": {"type": "integer", "default": 3},
                "email": {"type": "string", "format": "email"},
                "port": {"x-kubernetes-int-or-string": True},
                "items": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                          "maxItems": 2,
                          "items": {"type": "object", "properties": {"name": {"type": "string"},
                                                                     "v": {"type": "string", "default": "x"}}}},
                "inner": {"type": "object", "x-kubernetes-embedded-resource": True,
                          "x-kubernetes-preserve-unknown-fields": True},
            },
        },
    },
}

CRD = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
       "metadata": {"name": "things.example.com"},
       "spec": {"group": "example.com", "scope": "Cluster",
                "names": {"plural": "things", "kind": "Thing", "shortNames": ["th"]},
                "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": SCHEMA}},
                             {"name": "v2", "served": True, "storage": False,
                              "schema": {"openAPIV3Schema": SCHEMA}}]}}


def obj(**spec: object) -> dict:
    return {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"}, "spec": spec}


def messages(causes: list) -> list[str]:
    return [f"{c.field}: {c.message}" for c in causes]


def test_valid_crd_and_its_definitions() -> None:
    assert validate_crd(CRD, None) == []
    defs = defs_from_crd(CRD)
    assert [(d.version, d.storage) for d in defs] == [("v1", ()), ("v2", ("example.com", "v1"))]
    assert defs[0].crd == "things.example.com" and not defs[0].namespaced and defs[0].short_names == ("th",)
    assert defs[0].read_defaults and defs[0].protobuf_message is None


def test_non_structural_schemas() -> None:
    errs = messages(structural_errors({"type": "object", "properties": {
        "a": {"properties": {"b": {"type": "string"}}},
        "c": {"type": "array"},
        "d": {"type": "object", "properties": {"x": {"type": "string"}}, "additionalProperties": {"type": "string"}},
        "e": {"type": "string", "x-kubernetes-preserve-unknown-fields": False},
    }}, "spec.versions[0].schema.openAPIV3Schema"))
    p = "spec.versions[0].schema.openAPIV3Schema"
    assert f"{p}.properties[a].type: Required value: must not be empty for specified object fields" in errs
    assert f"{p}.properties[c].items: Required value: must be specified" in errs
    assert (f"{p}.properties[d].additionalProperties: Forbidden: additionalProperties and properties are mutual "
            f"exclusive") in errs
    assert f"{p}.properties[e].x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined" \
        in errs
    bad = copy.deepcopy(CRD)
    bad["spec"]["group"], bad["metadata"]["name"] = "x.k8s.io", "things.x.k8s.io"
    assert any("protected groups must have approval annotation" in m for m in messages(validate_crd(bad, None)))
    bad = copy.deepcopy(CRD)
    bad["spec"]["versions"][1]["storage"] = True
    assert any("must have exactly one version marked as storage version" in m for m in messages(
        validate_crd(bad, None)))


def test_names_accepted_and_conflicts() -> None:
    st = accepted_names_status(CRD, set(), set(), now="T")
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["NamesAccepted"]["reason"] == "NoConflicts" and conds["Established"]["status"] == "True"
    assert st["acceptedNames"] == {"plural": "things", "shortNames": ["th"], "kind": "Thing",
                                   "listKind": "ThingList"}
    assert st["storedVersions"] == ["v1"]
    st = accepted_names_status(CRD, {"th"}, set(), now="T")
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["NamesAccepted"] == {"type": "NamesAccepted", "status": "False", "reason": "ShortNamesConflict",
                                      "message": '"th" is already in use', "lastTransitionTime": "T"}
    assert conds["Established"]["status"] == "False"


def test_values_defaults_and_rules() -> None:
    o = obj(size=5, items=[{"name": "a"}])
    apply_defaults(o, SCHEMA)
    assert o["spec"]["max"] == 3 and o["spec"]["items"] == [{"name": "a", "v": "x"}]
    errs = messages(validate_custom(o, None, SCHEMA))
    assert errs == ["spec.size: Forbidden: size 5 too big"], errs
    errs = messages(validate_custom(obj(size=-1, max=3, email="nope", port=1.5,
                                        items=[{"name": "a"}, {"name": "a"}, {"name": "b"}],
                                        inner={"x": 1}), None, SCHEMA))
    assert "spec.size: Invalid value: -1: spec.size in body should be greater than or equal to 0" in errs
    assert 'spec.email: Invalid value: "nope": spec.email in body must be of type email: "nope"' in errs
    assert 'spec.port: Invalid value: "number": spec.port in body must be of type integer,string: "number"' in errs
    assert "spec.items: Too many: 3: must have at most 2 items" in errs
    assert 'spec.items[1]: Duplicate value: map[string]interface {}{"name":"a"}' in errs
    assert "spec.inner.apiVersion: Required value: must not be empty" in errs
    # A type error blocks the rules, as kube's hasBlockingErr.
    assert any("some validation rules were not checked" in m for m in errs)
    assert messages(validate_custom(obj(), None, SCHEMA)) == [
        "spec.size: Required value",
        'spec: Invalid value: "object": no such key: size evaluating rule: self.size <= self.max']


def test_transition_rules_and_ratcheting() -> None:
    old = obj(size=2, max=10)
    assert messages(validate_custom(obj(size=1, max=10), old, SCHEMA)) == [
        'spec: Invalid value: "object": may not shrink']
    assert validate_custom(obj(size=3, max=10), old, SCHEMA) == []
    # An unchanged invalid value is not refused again (kube's ratcheting).
    stored = obj(size=20, max=10)
    assert validate_custom(copy.deepcopy(stored), stored, SCHEMA) == []
