"""CustomResourceDefinitions through the real HTTP face: a CRD established and served on two
gateways, custom resources validated (schema, CEL), pruned and defaulted, status and scale, and
a CRD's deletion removing its custom resources (watchers see DELETED)."""

from __future__ import annotations

import json

import httpx
import pytest
import trio

from tests.conftest import client_for, poll_until

pytestmark = pytest.mark.integration

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
WIDGETS = "/apis/example.com/v1/namespaces/default/widgets"
MERGE = {"Content-Type": "application/merge-patch+json"}


def widget_crd() -> dict:
    spec_schema = {
        "type": "object",
        "required": ["size"],
        "x-kubernetes-validations": [
            {"rule": "self.size <= self.maxSize", "message": "size must not exceed maxSize", "fieldPath": ".size",
             "reason": "FieldValueInvalid"},
            {"rule": "!has(oldSelf.color) || self.color == oldSelf.color", "message": "color is immutable"},
        ],
        "properties": {
            "size": {"type": "integer", "minimum": 1, "maximum": 100},
            "maxSize": {"type": "integer", "default": 10},
            "color": {"type": "string", "enum": ["red", "green", "blue"], "default": "red"},
            "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 8},
            "port": {"x-kubernetes-int-or-string": True},
            "replicas": {"type": "integer", "default": 1},
            "selector": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"],
                      "categories": ["all"]},
            "versions": [
                {"name": "v1", "served": True, "storage": True,
                 "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                     "spec": spec_schema,
                     "status": {"type": "object", "properties": {"replicas": {"type": "integer"},
                                                                 "phase": {"type": "string"}}}}}},
                 "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                                                          "statusReplicasPath": ".status.replicas",
                                                          "labelSelectorPath": ".spec.selector"}},
                 "selectableFields": [{"jsonPath": ".spec.color"}],
                 "additionalPrinterColumns": [
                     {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                     {"name": "Color", "type": "string", "jsonPath": ".spec.color", "priority": 1}]},
                {"name": "v1beta1", "served": True, "storage": False,
                 "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}},
            ],
        },
    }


async def established(api: httpx.AsyncClient, name: str) -> dict:
    crd: dict = {}

    async def probe() -> bool:
        nonlocal crd
        r = await api.get(f"{CRDS}/{name}")
        crd = r.json()
        return any(c["type"] == "Established" and c["status"] == "True"
                   for c in (crd.get("status") or {}).get("conditions") or ())

    await poll_until(probe)
    return crd


def widget(obj_name: str, **spec: object) -> dict:
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": obj_name, "labels": {"app": "w"}},
            "spec": spec}


async def test_crd_served_validated_and_deleted(start_server) -> None:  # type: ignore[no-untyped-def]
    one, two = await start_server(), await start_server()
    async with client_for(one) as api, client_for(two) as api2:
        with trio.fail_after(60):
            # The second gateway is up before the CRD exists: it learns the kind from the log.
            assert (await api2.get(WIDGETS)).status_code == 404
            r = await api.post(CRDS, json=widget_crd())
            assert r.status_code == 201, r.text
            crd = await established(api, "widgets.example.com")
            conds = {c["type"]: c for c in crd["status"]["conditions"]}
            assert conds["NamesAccepted"]["reason"] == "NoConflicts"
            assert conds["Established"]["reason"] == "InitialNamesAccepted"
            assert crd["status"]["acceptedNames"]["kind"] == "Widget"
            assert crd["status"]["storedVersions"] == ["v1"]

            await poll_until(lambda: api2.get(WIDGETS))
            async def served_on_two() -> bool:
                return (await api2.get(WIDGETS)).status_code == 200
            await poll_until(served_on_two)

            # Discovery on both gateways, legacy and aggregated.
            for c in (api, api2):
                r = await c.get("/apis/example.com/v1")
                assert r.status_code == 200, r.text
                res = {x["name"]: x for x in r.json()["resources"]}
                assert res["widgets"]["kind"] == "Widget" and res["widgets"]["shortNames"] == ["wd"]
                assert res["widgets"]["categories"] == ["all"] and res["widgets"]["namespaced"] is True
                assert "widgets/status" in res and "widgets/scale" in res
                groups = [g["name"] for g in (await c.get("/apis")).json()["groups"]]
                assert "example.com" in groups

            # Create through the other gateway: defaults applied, unknown fields pruned (warned).
            r = await api2.post(WIDGETS, json={**widget("w1", size=5, bogus=1, free={"x": 1}),
                                               "status": {"phase": "ignored"}})
            assert r.status_code == 201, r.text
            w1 = r.json()
            assert w1["spec"] == {"size": 5, "maxSize": 10, "color": "red", "replicas": 1, "free": {"x": 1}}
            assert "status" not in w1 and w1["metadata"]["generation"] == 1
            assert 'unknown field \\"spec.bogus\\"' in r.headers.get("warning", "")

            # Schema checks with kube's messages and paths.
            r = await api.post(WIDGETS, json=widget("w2", size=500, color="pink", name="ABC"))
            assert r.status_code == 422, r.text
            msg = r.json()["message"]
            assert 'Widget.example.com "w2" is invalid' in msg
            assert "spec.size: Invalid value: 500: spec.size in body should be less than or equal to 100" in msg
            assert 'spec.color: Unsupported value: "pink": supported values: "red", "green", "blue"' in msg
            assert "spec.name: Invalid value: \"ABC\": spec.name in body should match '^[a-z]+$'" in msg
            r = await api.post(WIDGETS, json=widget("w2", size="big"))
            assert r.status_code == 422 and 'spec.size in body must be of type integer: "string"' in r.json()["message"]
            r = await api.post(WIDGETS, json=widget("w2"))
            assert r.status_code == 422 and "spec.size: Required value" in r.text
            r = await api.post(WIDGETS, json=widget("w2", size=3, tags=["a", "a"]))
            assert r.status_code == 422 and 'spec.tags[1]: Duplicate value: "a"' in r.json()["message"]

            # CEL: the rule's message at its fieldPath; a transition rule with oldSelf.
            r = await api.post(WIDGETS, json=widget("w2", size=20, maxSize=15))
            assert r.status_code == 422, r.text
            causes = r.json()["details"]["causes"]
            assert {"reason": "FieldValueInvalid", "message": 'Invalid value: "object": size must not exceed maxSize',
                    "field": "spec.size"} in causes, causes
            r = await api.patch(f"{WIDGETS}/w1", content=json.dumps({"spec": {"color": "blue"}}), headers=MERGE)
            assert r.status_code == 422 and "color is immutable" in r.text, r.text
            r = await api.patch(f"{WIDGETS}/w1", content=json.dumps({"spec": {"size": 7}}), headers=MERGE)
            assert r.status_code == 200 and r.json()["metadata"]["generation"] == 2

            # Status: written through /status only; the main resource ignores it.
            w = (await api.get(f"{WIDGETS}/w1")).json()
            r = await api.put(f"{WIDGETS}/w1/status", json={**w, "status": {"replicas": 1, "phase": "Ready"}})
            assert r.status_code == 200 and r.json()["status"]["phase"] == "Ready"
            assert r.json()["metadata"]["generation"] == 2

            # Scale from the CRD's paths.
            r = await api.get(f"{WIDGETS}/w1/scale")
            assert r.status_code == 200 and r.json()["spec"]["replicas"] == 1, r.text
            assert r.json()["status"]["replicas"] == 1
            r = await api.patch(f"{WIDGETS}/w1/scale", content=b'{"spec":{"replicas":4}}', headers=MERGE)
            assert r.status_code == 200, r.text
            assert (await api.get(f"{WIDGETS}/w1")).json()["spec"]["replicas"] == 4

            # Another served version: the same object, apiVersion rewritten.
            r = await api2.get("/apis/example.com/v1beta1/namespaces/default/widgets/w1")
            assert r.status_code == 200 and r.json()["apiVersion"] == "example.com/v1beta1", r.text

            # selectableFields: a field selector on spec.color.
            r = await api.get(WIDGETS, params={"fieldSelector": "spec.color=red"})
            assert r.status_code == 200 and [i["metadata"]["name"] for i in r.json()["items"]] == ["w1"], r.text
            r = await api.get(WIDGETS, params={"fieldSelector": "spec.color=blue"})
            assert r.status_code == 200 and r.json()["items"] == []

            # Tables with the printer columns.
            r = await api.get(WIDGETS, headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
            assert r.status_code == 200, r.text
            table = r.json()
            assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Size", "Color"]
            assert table["rows"][0]["cells"][:3] == ["w1", 7, "red"]

            # More objects, then the CRD's deletion: every one a DELETED event, then the kind goes.
            for i in range(2, 6):
                assert (await api.post(WIDGETS, json=widget(f"w{i}", size=i))).status_code == 201
            rv = (await api.get(WIDGETS)).json()["metadata"]["resourceVersion"]
            deleted: list[str] = []
            done = trio.Event()

            async def watch() -> None:
                async with api2.stream("GET", f"{WIDGETS}?watch=1&resourceVersion={rv}") as resp:
                    async for line in resp.aiter_lines():
                        ev = json.loads(line)
                        if ev["type"] == "DELETED":
                            deleted.append(ev["object"]["metadata"]["name"])
                            if len(deleted) == 5:
                                done.set()
                                return

            async with trio.open_nursery() as n:
                n.start_soon(watch)
                r = await api.delete(f"{CRDS}/widgets.example.com")
                assert r.status_code == 200, r.text
                await done.wait()
            assert sorted(deleted) == ["w1", "w2", "w3", "w4", "w5"]

            async def gone() -> bool:
                return ((await api.get(f"{CRDS}/widgets.example.com")).status_code == 404
                        and (await api2.get("/apis/example.com/v1")).status_code == 404)
            await poll_until(gone)
            assert (await api2.get(WIDGETS)).status_code == 404


async def test_crd_checked(api: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        bad = widget_crd()
        bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"] = {
            "properties": {"size": {"type": "integer"}}}
        r = await api.post(CRDS, json=bad)
        assert r.status_code == 422, r.text
        assert ("spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty "
                "for specified object fields") in r.json()["message"]
        bad = widget_crd()
        bad["metadata"]["name"] = "gadgets.example.com"
        r = await api.post(CRDS, json=bad)
        assert r.status_code == 422 and 'must be spec.names.plural+"."+spec.group' in r.json()["message"]
        bad = widget_crd()
        bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
            "x-kubernetes-validations"][0]["rule"] = "self.size <="
        r = await api.post(CRDS, json=bad)
        assert r.status_code == 422 and "compilation failed" in r.json()["message"]

        # A kind already held by another CRD of the group: NamesAccepted False, not established.
        assert (await api.post(CRDS, json=widget_crd())).status_code == 201
        await established(api, "widgets.example.com")
        other = widget_crd()
        other["metadata"]["name"] = "gizmos.example.com"
        other["spec"]["names"] = {"plural": "gizmos", "kind": "Widget"}
        assert (await api.post(CRDS, json=other)).status_code == 201

        async def rejected() -> bool:
            st = (await api.get(f"{CRDS}/gizmos.example.com")).json().get("status") or {}
            conds = {c["type"]: c for c in st.get("conditions") or ()}
            return conds.get("NamesAccepted", {}).get("status") == "False"
        await poll_until(rejected)
        st = (await api.get(f"{CRDS}/gizmos.example.com")).json()["status"]
        conds = {c["type"]: c for c in st["conditions"]}
        assert conds["NamesAccepted"]["reason"] == "KindConflict"
        assert conds["NamesAccepted"]["message"] == '"Widget" is already in use'
        assert conds["Established"]["status"] == "False"
        assert (await api.get("/apis/example.com/v1/namespaces/default/gizmos")).status_code == 404
        # The holder goes: the name is free, the other CRD is accepted and established.
        assert (await api.delete(f"{CRDS}/widgets.example.com")).status_code == 200
        await established(api, "gizmos.example.com")

        async def served() -> bool:
            return (await api.get("/apis/example.com/v1/namespaces/default/gizmos")).status_code == 200
        await poll_until(served)


async def test_gateway_started_later_serves_the_crd(start_server) -> None:  # type: ignore[no-untyped-def]
    """A gateway that starts after the CRD exists learns it from the log's replay."""
    one = await start_server()
    async with client_for(one) as api:
        with trio.fail_after(60):
            assert (await api.post(CRDS, json=widget_crd())).status_code == 201
            await established(api, "widgets.example.com")
            assert (await api.post(WIDGETS, json=widget("early", size=2))).status_code == 201
            later = await start_server()
            async with client_for(later) as api2:
                r = await api2.get(f"{WIDGETS}/early")
                assert r.status_code == 200 and r.json()["spec"]["maxSize"] == 10, r.text
                r = await api2.get("/openapi/v3/apis/example.com/v1")
                assert r.status_code == 200 and "com.example.v1.Widget" in r.json()["components"]["schemas"]
