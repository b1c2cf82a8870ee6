"""The pure parts of CRD webhook conversion (kinds/_crd_conversion.py): the review sent, the answer
checked as kube's webhookConverter checks it, metadata restored, spec.conversion validated."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kinds._crd import defs_from_crd
from kinds._crd_conversion import (
    ConversionFailed,
    converted_from_review,
    pending,
    review_request,
    validate_conversion,
    webhook_of,
)

SRC = "stable.example.com/v1, Kind=CronTab"


def obj(name: str, version: str = "v1", **meta: Any) -> dict[str, Any]:
    return {"apiVersion": f"stable.example.com/{version}", "kind": "CronTab",
            "metadata": {"name": name, "namespace": "ns", "uid": f"u-{name}", "generation": 1,
                         "resourceVersion": "7", **meta}, "spec": {"a": 1}}


def answer(objs: list[dict[str, Any]], uid: str = "u1", **over: Any) -> dict[str, Any]:
    resp = {"uid": uid, "result": {"status": "Success"}, "convertedObjects": objs, **over}
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview", "response": resp}


def check(review: Any, originals: list[dict[str, Any]], *, is_list: bool = False, version: str = "v1") -> list:
    return converted_from_review(review, uid="u1", version=version, originals=originals,
                                 desired="stable.example.com/v2", source=SRC, is_list=is_list)


def to_v2(o: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(o)
    out["apiVersion"] = "stable.example.com/v2"
    return out


def test_review_carries_only_objects_not_in_the_desired_version() -> None:
    objs = [obj("a"), obj("b", "v2"), obj("c")]
    assert pending(objs, "stable.example.com/v2") == [0, 2]
    r = review_request([objs[0], objs[2]], "stable.example.com/v2", "u1", "v1")
    assert r["apiVersion"] == "apiextensions.k8s.io/v1" and r["kind"] == "ConversionReview"
    assert r["request"] == {"uid": "u1", "desiredAPIVersion": "stable.example.com/v2", "objects": [objs[0], objs[2]]}


def test_converted_objects_keep_the_original_metadata_but_labels_and_annotations() -> None:
    orig = obj("a", labels={"x": "1"})
    conv = to_v2(orig)
    conv["metadata"].update(generation=42, resourceVersion="1", finalizers=["f"], labels={"y": "2"},
                            annotations={"note": "hi"})
    got = check(answer([conv]), [orig])[0]
    assert got["apiVersion"] == "stable.example.com/v2"
    assert got["metadata"] == {**orig["metadata"], "labels": {"y": "2"}, "annotations": {"note": "hi"}}
    # Labels the webhook drops are dropped.
    conv["metadata"].pop("labels")
    assert "labels" not in check(answer([conv]), [orig])[0]["metadata"]


@pytest.mark.parametrize(("review", "message"), [
    ({"apiVersion": "v1", "kind": "Status"}, (f"conversion webhook for {SRC} failed: expected webhook response of "
                                             f"apiextensions.k8s.io/v1, Kind=ConversionReview, got v1, Kind=Status")),
    ({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview"},
     f"conversion webhook for {SRC} failed: no response provided"),
    (answer([], uid="other"), f'conversion webhook for {SRC} failed: expected response.uid="u1", got "other"'),
    (answer([], result={"status": "Failure", "message": "nope"}), f"conversion webhook for {SRC} failed: nope"),
    (answer([], result={"status": "Failure"}),
     f"conversion webhook for {SRC} failed: response.result.status was 'Failure', not 'Success'"),
    (answer([]), f"conversion webhook for {SRC} returned 0 objects, expected 1"),
    (answer([obj("a")]), (f"conversion webhook for {SRC} returned invalid object at index 0: invalid groupVersion "
                         f"(expected stable.example.com/v2, received stable.example.com/v1)")),
    (answer([{**to_v2(obj("a")), "kind": "Other"}]),
     (f"conversion webhook for {SRC} returned invalid object at index 0: invalid kind (expected CronTab, "
     f"received Other)")),
    (answer([to_v2(obj("b"))]), f"conversion webhook for {SRC} returned invalid object: must have the same name: a != b"),
    (answer([{**to_v2(obj("a")), "metadata": {**obj("a")["metadata"], "uid": "zzz"}}]),
     f"conversion webhook for {SRC} returned invalid object: must have the same UID: u-a != zzz"),
    (answer([{**to_v2(obj("a")), "metadata": {**obj("a")["metadata"], "labels": {"a": 1}}}]),
     (f"conversion webhook for {SRC} returned invalid metadata: metadata.labels[a] must be a string, but is int in "
     f"converted object")),
])
def test_bad_answers_fail_with_kubes_messages(review: Any, message: str) -> None:
    with pytest.raises(ConversionFailed) as e:
        check(review, [obj("a")])
    assert str(e.value) == message


def test_list_messages_name_the_index_and_invalid_labels_are_refused() -> None:
    bad = to_v2(obj("b"))
    bad["metadata"]["labels"] = {"bad key!": "v"}
    with pytest.raises(ConversionFailed) as e:
        check(answer([to_v2(obj("a")), bad]), [obj("a"), obj("b")], is_list=True)
    assert str(e.value).startswith(f"conversion webhook for {SRC} returned invalid metadata in object at index 1: "
                                   "metadata.labels: Invalid value: \"bad key!\"")


def test_v1beta1_reviews_are_not_checked_for_gvk_or_uid() -> None:
    review = {"response": {"uid": "whatever", "result": {"status": "Success"},
                           "convertedObjects": [to_v2(obj("a"))]}}
    assert check(review, [obj("a")], version="v1beta1")[0]["apiVersion"] == "stable.example.com/v2"


def crd(conversion: dict[str, Any] | None) -> dict[str, Any]:
    return {"metadata": {"name": "crontabs.stable.example.com"},
            "spec": {"group": "stable.example.com", "scope": "Namespaced",
                     "names": {"plural": "crontabs", "kind": "CronTab"}, "conversion": conversion,
                     "versions": [{"name": "v1", "served": True, "storage": True},
                                  {"name": "v2", "served": True, "storage": False}]}}


def test_webhook_settings_reach_every_served_version() -> None:
    hook = {"strategy": "Webhook", "webhook": {"conversionReviewVersions": ["v2", "v1beta1", "v1"],
                                               "clientConfig": {"service": {"name": "conv", "namespace": "sys",
                                                                            "path": "/convert"}, "caBundle": "Q0E="}}}
    want = {"url": "https://conv.sys.svc:443/convert", "caBundle": "Q0E=", "reviewVersion": "v1beta1"}
    assert webhook_of(crd(hook)) == want
    assert [d.conversion for d in defs_from_crd(crd(hook))] == [want, want]
    assert webhook_of(crd({"strategy": "None"})) is None
    assert [d.conversion for d in defs_from_crd(crd(None))] == [None, None]


def test_spec_conversion_validation() -> None:
    def messages(conv: Any) -> list[str]:
        return [f"{c.field}: {c.message}" for c in validate_conversion(conv)]

    assert messages(None) == [] and messages({"strategy": "None"}) == []
    assert messages({"strategy": "Webhook"}) == [
        "spec.conversion.webhookClientConfig: Required value: required when strategy is set to Webhook",
        "spec.conversion.conversionReviewVersions: Required value"]
    assert messages({"strategy": "Other"}) == [
        'spec.conversion.strategy: Unsupported value: "Other": supported values: "None", "Webhook"']
    both = {"strategy": "Webhook", "webhook": {"conversionReviewVersions": ["v1", "v1"], "clientConfig": {
        "url": "https://x/c", "service": {"name": "s", "namespace": "n"}}}}
    assert messages(both) == [
        "spec.conversion.webhookClientConfig: Required value: exactly one of url or service is required",
        'spec.conversion.conversionReviewVersions[1]: Invalid value: "v1": duplicate version']
    svc = {"strategy": "Webhook", "webhook": {"conversionReviewVersions": ["v1"], "clientConfig": {
        "service": {"name": "", "namespace": "n", "port": 0, "path": "convert"}}}}
    assert messages(svc) == [
        "spec.conversion.webhookClientConfig.service.name: Required value: service name is required",
        ("spec.conversion.webhookClientConfig.service.port: Invalid value: 0: port is not valid: must be between 1 "
        "and 65535, inclusive"),
        "spec.conversion.webhookClientConfig.service.path: Invalid value: \"convert\": must start with a '/'"]


def test_managers_of_another_version_conflict_where_that_version_names_the_field() -> None:
    """SMD's converter: a manager that set ``spec.size`` through v1 conflicts with an apply through
    v2 changing ``spec.dimension`` (the same field renamed), and loses it when forced."""
    from kinds._fieldpath import UNTYPED, ConflictError, ManagerSet, Updater, to_field_set

    def to_v1(o: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(o)
        spec = out.get("spec") or {}
        if "dimension" in spec:
            spec["size"] = spec.pop("dimension")
        out["apiVersion"] = "x/v1"
        return out

    live = {"apiVersion": "x/v2", "kind": "K", "spec": {"dimension": 5, "color": "red"}}
    alpha = to_field_set({"spec": {"size": 5}}, UNTYPED)
    config = {"apiVersion": "x/v2", "kind": "K", "spec": {"dimension": 7}}

    def managers() -> dict[str, ManagerSet]:
        return {"alpha": ManagerSet(copy.deepcopy(alpha), "x/v1", True)}

    # Without a view of v1 the rename goes unseen (the old behaviour).
    Updater(UNTYPED).apply(live, config, "x/v2", managers(), "beta", False)
    views = {"x/v1": (to_v1, UNTYPED)}
    with pytest.raises(ConflictError) as e:
        Updater(UNTYPED, views=views).apply(live, config, "x/v2", managers(), "beta", False)
    assert [(c.manager, c.path) for c in e.value.conflicts] == [("alpha", ("f:spec", "f:size"))]
    sets = managers()
    Updater(UNTYPED, views=views).apply(live, config, "x/v2", sets, "beta", True)
    assert "alpha" not in sets and sets["beta"].api_version == "x/v2"
