"""A write's answer in the view its ``Accept`` asks for, as kube's ``transformResponseObject``:
``as=PartialObjectMetadata`` answers the written object's metadata only (a Secret's data stays out of
the answer), ``as=Table`` a one-row Table, a deletecollection's list a Table or a
PartialObjectMetadataList; a Status (a delete done, a binding) stays a Status; the view the answer
cannot take is 406 — refused before anything is written when the answer's shape is known from the
request. Every write verb, several objects, with the fast path on (it leaves these Accepts to the
app: checked by Audit-Id) and off, the two answering the same."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from gateway._fast import FastPath
from tests.conftest import StartServer, client_for, default_service_account
from tests.integration.test_fast_path import fast_answers

pytestmark = pytest.mark.integration

POM = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
POM_BETA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1beta1"
# client-go's metadata client: the protobuf clause first (not served as a view: skipped), then JSON.
POM_CLIENT_GO = ("application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,"
                 "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json")
POM_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
TABLE = ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,"
         "application/json")  # kubectl's
TABLE_BETA = "application/json;as=Table;v=v1beta1;g=meta.k8s.io"
SECRETS = 8
NOT_A_LIST = "you requested PartialObjectMetadataList, but the requested object is not a list"
A_LIST = "you requested PartialObjectMetadata, but the requested object is a list"


def secret(name: str, **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "labels": {"set": "views"}, **meta},
            "stringData": {"password": f"hunter2-{name}"}}


def _metadata_only(r: httpx.Response, code: int, name: str, api_version: str = "meta.k8s.io/v1") -> dict[str, Any]:
    assert r.status_code == code, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    doc = r.json()
    assert doc["kind"] == "PartialObjectMetadata" and doc["apiVersion"] == api_version, doc
    assert set(doc) == {"kind", "apiVersion", "metadata"}, doc
    assert doc["metadata"]["name"] == name and doc["metadata"]["resourceVersion"], doc
    assert b"hunter2" not in r.content and b"aHVudGVy" not in r.content  # the data is not in the answer
    return doc


def _table(r: httpx.Response, code: int, names: list[str], api_version: str = "meta.k8s.io/v1") -> dict[str, Any]:
    assert r.status_code == code, r.text
    doc = r.json()
    assert doc["kind"] == "Table" and doc["apiVersion"] == api_version, doc
    assert [c["name"] for c in doc["columnDefinitions"]][:2] == ["Name", "Type"], doc["columnDefinitions"]
    assert [row["cells"][0] for row in doc["rows"]] == names, doc["rows"]
    return doc


def _status(r: httpx.Response, code: int, reason: str = "", message: str = "") -> dict[str, Any]:
    assert r.status_code == code, r.text
    doc = r.json()
    assert doc["kind"] == "Status", doc
    if reason:
        assert doc["reason"] == reason and doc["message"] == message, doc
    return doc


async def _every_verb(c: httpx.AsyncClient, ns: str) -> list[httpx.Response]:
    """Every write verb in the views, in namespace ``ns``; the answers, in order."""
    out: list[httpx.Response] = []
    base = f"/api/v1/namespaces/{ns}/secrets"
    r = await c.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    assert r.status_code == 201, r.text

    # create: every Accept flavour of PartialObjectMetadata, several objects.
    for i in range(SECRETS):
        accept = (POM, POM_BETA, POM_CLIENT_GO)[i % 3]
        r = await c.post(base, json=secret(f"s-{i}"), headers={"Accept": accept})
        doc = _metadata_only(r, 201, f"s-{i}", "meta.k8s.io/v1beta1" if accept == POM_BETA else "meta.k8s.io/v1")
        assert doc["metadata"]["managedFields"][0]["operation"] == "Update"  # as stored (kube's AsPartialObjectMetadata)
        out.append(r)
    got = await c.get(f"{base}/s-0")
    assert got.json()["data"]["password"] and got.json()["metadata"] == out[0].json()["metadata"]
    # create as Tables (v1 and v1beta1, includeObject=Object carries the object).
    r = await c.post(base, json=secret("t-0"), headers={"Accept": TABLE})
    doc = _table(r, 201, ["t-0"])
    assert doc["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    assert "managedFields" not in doc["rows"][0]["object"]["metadata"]
    assert doc["rows"][0]["cells"][1:3] == ["Opaque", 1]
    out.append(r)
    r = await c.post(base, json=secret("t-1"), params={"includeObject": "Object"}, headers={"Accept": TABLE_BETA})
    doc = _table(r, 201, ["t-1"], "meta.k8s.io/v1beta1")
    assert doc["rows"][0]["object"]["kind"] == "Secret" and doc["rows"][0]["object"]["data"]["password"]
    out.append(r)

    # refused before the write: the other kind of the two (406), a bad includeObject (400).
    r = await c.post(base, json=secret("x-0"), headers={"Accept": POM_LIST})
    out.append(r)
    _status(r, 406, "NotAcceptable", NOT_A_LIST)
    r = await c.post(base, json=secret("x-1"), params={"includeObject": "Everything"}, headers={"Accept": TABLE})
    out.append(r)
    assert _status(r, 400)["message"].startswith("Unable to convert to Table as requested: includeObject")
    for name in ("x-0", "x-1"):
        assert (await c.get(f"{base}/{name}")).status_code == 404  # nothing written
    before = (await c.get(f"{base}/s-1")).json()
    r = await c.put(f"{base}/s-1", json={**before, "stringData": {"k": "v"}}, headers={"Accept": POM_LIST})
    out.append(r)
    _status(r, 406, "NotAcceptable", NOT_A_LIST)
    assert (await c.get(f"{base}/s-1")).json() == before

    # update, every patch type, apply: metadata only.
    for i in range(3):
        cur = (await c.get(f"{base}/s-{i}")).json()
        r = await c.put(f"{base}/s-{i}", json={**cur, "stringData": {"password": f"hunter2-put-{i}"}},
                        headers={"Accept": POM})
        assert _metadata_only(r, 200, f"s-{i}")["metadata"]["resourceVersion"] != cur["metadata"]["resourceVersion"]
        out.append(r)
    patches = [
        ("application/merge-patch+json", b'{"metadata":{"labels":{"patched":"merge"}}}'),
        ("application/strategic-merge-patch+json", b'{"metadata":{"labels":{"patched":"strategic"}}}'),
        ("application/json-patch+json", b'[{"op":"add","path":"/metadata/labels/patched","value":"json"}]'),
    ]
    for i, (ctype, body) in enumerate(patches):
        r = await c.patch(f"{base}/s-{3 + i}", content=body, headers={"Content-Type": ctype, "Accept": POM})
        assert _metadata_only(r, 200, f"s-{3 + i}")["metadata"]["labels"]["patched"] in body.decode()
        out.append(r)
    r = await c.patch(f"{base}/s-6", content=b'{"metadata":{"labels":{"patched":"table"}}}',
                      headers={"Content-Type": "application/merge-patch+json", "Accept": TABLE})
    _table(r, 200, ["s-6"])
    out.append(r)
    applied = b'{"apiVersion":"v1","kind":"Secret","metadata":{"name":"a-0"},"stringData":{"password":"hunter2"}}'
    r = await c.patch(f"{base}/a-0", content=applied, params={"fieldManager": "views"},
                      headers={"Content-Type": "application/apply-patch+yaml", "Accept": POM})
    assert _metadata_only(r, 201, "a-0")["metadata"]["managedFields"][0]["manager"] == "views"
    out.append(r)
    r = await c.patch(f"{base}/a-0", content=applied, params={"fieldManager": "views", "dryRun": "All"},
                      headers={"Content-Type": "application/apply-patch+yaml", "Accept": POM_LIST})
    out.append(r)
    _status(r, 406, "NotAcceptable", NOT_A_LIST)

    # delete: a Status stays a Status whatever the view; an object still being deleted is transformed.
    r = await c.delete(f"{base}/s-7", headers={"Accept": POM})
    out.append(r)
    assert _status(r, 200)["status"] == "Success"
    r = await c.delete(f"{base}/a-0", headers={"Accept": POM_LIST})
    out.append(r)
    assert _status(r, 200)["details"]["name"] == "a-0"
    for i in range(2):
        r = await c.post(base, json=secret(f"f-{i}", finalizers=["example.com/hold"]))
        assert r.status_code == 201, r.text
    r = await c.delete(f"{base}/f-0", headers={"Accept": POM})
    out.append(r)
    assert _metadata_only(r, 200, "f-0")["metadata"]["deletionTimestamp"]
    # The answer's shape is known only once deleted: as kube, the delete is done, then 406.
    r = await c.delete(f"{base}/f-1", headers={"Accept": POM_LIST})
    out.append(r)
    _status(r, 406, "NotAcceptable", NOT_A_LIST)
    assert (await c.get(f"{base}/f-1")).json()["metadata"]["deletionTimestamp"]

    # deletecollection: a list, so PartialObjectMetadata is refused before anything is deleted.
    r = await c.delete(base, params={"labelSelector": "set=views"}, headers={"Accept": POM})
    out.append(r)
    _status(r, 406, "NotAcceptable", A_LIST)
    listed = (await c.get(base, params={"labelSelector": "set=views"})).json()["items"]
    names = sorted(o["metadata"]["name"] for o in listed)
    assert len(names) == SECRETS + 1 + 2, names  # s-0..s-6, t-0, t-1, f-0, f-1
    r = await c.delete(base, params={"labelSelector": "patched"}, headers={"Accept": POM_LIST})
    out.append(r)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["kind"] == "PartialObjectMetadataList" and doc["apiVersion"] == "meta.k8s.io/v1"
    assert sorted(i["metadata"]["name"] for i in doc["items"]) == ["s-3", "s-4", "s-5", "s-6"]
    assert all(i["kind"] == "PartialObjectMetadata" for i in doc["items"]) and b"hunter2" not in r.content
    r = await c.delete(base, params={"labelSelector": "set=views"}, headers={"Accept": TABLE})
    out.append(r)
    doc = _table(r, 200, ["f-0", "f-1", "s-0", "s-1", "s-2", "t-0", "t-1"])
    assert doc["metadata"]["resourceVersion"]
    return out


async def _subresources(c: httpx.AsyncClient, ns: str) -> None:
    """status and scale (objects), binding (a Status), a review (not stored): their answers too."""
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
              "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "d"}},
                       "template": {"metadata": {"labels": {"app": "d"}},
                                    "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    base = f"/apis/apps/v1/namespaces/{ns}/deployments"
    r = await c.post(base, json=deploy, headers={"Accept": POM})
    assert r.json()["kind"] == "PartialObjectMetadata", r.text
    r = await c.patch(f"{base}/d/status", content=b'{"status":{"observedGeneration":1}}',
                      headers={"Content-Type": "application/merge-patch+json", "Accept": POM})
    assert r.status_code == 200 and r.json()["kind"] == "PartialObjectMetadata", r.text
    r = await c.patch(f"{base}/d/scale", content=b'{"spec":{"replicas":3}}',
                      headers={"Content-Type": "application/merge-patch+json", "Accept": POM})
    assert r.status_code == 200, r.text
    assert r.json()["kind"] == "PartialObjectMetadata" and r.json()["metadata"]["name"] == "d", r.text
    r = await c.get(f"{base}/d/scale", headers={"Accept": POM})  # a GET of the Scale too
    assert r.json()["kind"] == "PartialObjectMetadata", r.text
    r = await c.patch(f"{base}/d/scale", content=b'{"spec":{"replicas":2}}',
                      headers={"Content-Type": "application/merge-patch+json", "Accept": TABLE})
    assert r.status_code == 200 and r.json()["kind"] == "Scale", r.text  # as a GET of /scale answers
    r = await c.put(f"{base}/d/scale", headers={"Accept": POM_LIST},
                    json={"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "d"},
                          "spec": {"replicas": 4}})
    _status(r, 406, "NotAcceptable", NOT_A_LIST)
    assert (await c.get(f"{base}/d")).json()["spec"]["replicas"] == 2  # not written
    pods = f"/api/v1/namespaces/{ns}/pods"
    await default_service_account(c, ns)
    r = await c.post(pods, json={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                                 "spec": {"containers": [{"name": "c", "image": "nginx"}]}}, headers={"Accept": TABLE})
    assert r.status_code == 201 and r.json()["kind"] == "Table", r.text
    assert r.json()["rows"][0]["cells"][0] == "p"
    r = await c.post(f"{pods}/p/binding", headers={"Accept": POM_LIST},
                     json={"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
                           "target": {"kind": "Node", "name": "n1"}})
    assert _status(r, 201)["status"] == "Success"  # a Status passes through any view
    assert (await c.get(f"{pods}/p")).json()["spec"]["nodeName"] == "n1"
    r = await c.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", headers={"Accept": POM},
                     json={"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                           "spec": {"resourceAttributes": {"verb": "get", "resource": "secrets"}}})
    assert r.status_code == 201 and r.json()["kind"] == "PartialObjectMetadata", r.text


def _comparable(r: httpx.Response, ns: str) -> tuple[Any, ...]:
    body = r.content.replace(ns.encode(), b"NS")
    body = re.sub(rb'"(uid|resourceVersion|creationTimestamp|deletionTimestamp|time)":"[^"]*"', rb'"\1":""', body)
    body = re.sub(rb'"cells":\["([^"]*)",(.*?)\]', rb'"cells":["\1"]', body)  # ages
    return r.status_code, r.headers["Content-Type"], body


async def test_write_answers_in_the_view_asked(start_server: StartServer, monkeypatch: pytest.MonkeyPatch) -> None:
    fast_ids = fast_answers(monkeypatch)
    gw = await start_server()
    with trio.fail_after(120):
        async with client_for(gw) as c:
            answers = {}
            for fast, ns in ((True, "views-f"), (False, "views-a")):
                monkeypatch.setattr(FastPath, "enabled", fast)
                answers[fast] = await _every_verb(c, ns)
                # the control: a plain JSON create is the fast path's when it is on
                r = await c.post(f"/api/v1/namespaces/{ns}/configmaps",
                                 json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "plain"}})
                assert r.status_code == 201 and (r.headers["Audit-Id"] in fast_ids) == fast
            assert not {r.headers["Audit-Id"] for r in answers[True]} & fast_ids  # the app answered every view
            assert len(answers[True]) == len(answers[False]) > 25
            for f, a in zip(answers[True], answers[False]):
                assert _comparable(f, "views-f") == _comparable(a, "views-a"), (f.request.url, f.text, a.text)
            await _subresources(c, "views-a")


async def test_an_accept_kube_serves_nothing_of_is_406(start_server: StartServer, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """kube's ``NegotiateOutputMediaType``: an Accept none of whose clauses it can serve is 406
    (before a write: nothing is written; after authorization: a user who may not gets the 403);
    what kube serves (YAML, unknown parameters, a YAML Table, a protobuf PartialObjectMetadata) is
    answered, in JSON. Fast path on and off alike."""
    tokens = tmp_path / "tokens.csv"
    tokens.write_text("bob-token,bob,u-bob\n")
    gw = await start_server(token_file=str(tokens))
    base = "/api/v1/namespaces/default/configmaps"
    with trio.fail_after(60):
        async with client_for(gw) as c, httpx.AsyncClient(
                base_url=str(gw.http_url), headers={"Authorization": "Bearer bob-token"}, timeout=30) as bob:
            for method in ("POST", "GET"):
                r = await bob.request(method, base, headers={"Accept": "application/xml"},
                                      json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bob"}}
                                      if method == "POST" else None)
                assert _status(r, 403)["reason"] == "Forbidden", r.text
            # A view a write cannot answer in (406) or a bad includeObject (400): bob may not write, so
            # kube's 403 (authorization comes before the handler checks the view). Nothing is written.
            cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bob"}}
            for method, path, accept, params in [
                    ("POST", base, POM_LIST, {}), ("POST", base, TABLE, {"includeObject": "Everything"}),
                    ("PUT", f"{base}/kube-root-ca.crt", POM_LIST, {}),
                    ("PATCH", f"{base}/kube-root-ca.crt", TABLE, {"includeObject": "Everything"}),
                    ("DELETE", base, POM, {}), ("DELETE", f"{base}/kube-root-ca.crt", TABLE,
                                                {"includeObject": "Everything"})]:
                headers = {"Accept": accept}
                body: dict[str, Any] = {"json": cm} if method in ("POST", "PUT") else {}
                if method == "PATCH":
                    headers["Content-Type"] = "application/merge-patch+json"
                    body = {"content": b'{"metadata":{"labels":{"a":"b"}}}'}
                r = await bob.request(method, path, headers=headers, params=params, **body)
                assert _status(r, 403)["reason"] == "Forbidden", (method, path, accept, r.text)
            assert (await c.get(f"{base}/bob")).status_code == 404
            assert "a" not in ((await c.get(f"{base}/kube-root-ca.crt")).json()["metadata"].get("labels") or {})
            for fast in (True, False):
                monkeypatch.setattr(FastPath, "enabled", fast)
                for i, accept in enumerate(("application/xml", "text/html", "*", "application/json;as=Table;v=v2;g=meta.k8s.io",
                                            "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io")):
                    name = f"n{int(fast)}-{i}"
                    r = await c.post(base, json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}},
                                     headers={"Accept": accept})
                    # A type none of the route's: kube's router (go-restful) refuses it before the handler
                    # negotiates (tests/unit/test_route_accept.py); a view the handler cannot make: its own 406.
                    _status(r, 406, "NotAcceptable", (
                        "406: Not Acceptable\n\nAvailable representations: application/json, application/yaml, "
                        "application/vnd.kubernetes.protobuf") if i < 3 else (
                        "only the following media types are accepted: application/json, application/yaml, "
                        "application/vnd.kubernetes.protobuf"))
                    assert (await c.get(f"{base}/{name}")).status_code == 404  # not written
                    for path in (base, f"{base}/kube-root-ca.crt"):
                        assert (await c.get(path, headers={"Accept": accept})).status_code == 406
                for accept in ("application/json;foo=bar",
                               "application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
                               "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"):
                    r = await c.get(f"{base}/kube-root-ca.crt", headers={"Accept": accept})
                    assert r.status_code == 200 and r.json()["kind"] == "ConfigMap", (accept, r.text)
                # a YAML Table is served, as kube (tests/integration/test_yaml_answers.py)
                r = await c.get(f"{base}/kube-root-ca.crt", headers={"Accept": "application/yaml;as=Table;v=v1;g=meta.k8s.io"})
                assert r.status_code == 200 and r.headers["Content-Type"] == "application/yaml", r.text
                name = f"ok-{int(fast)}"
                r = await c.post(base, json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}},
                                 headers={"Accept": "application/json;foo=bar"})
                assert r.status_code == 201, r.text
