"""Bad input gets a clear Kubernetes Status (4xx with the right reason), never a 500."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio

from tests.conftest import StartServer, client_for

pytestmark = pytest.mark.integration

CM = "/api/v1/namespaces/default/configmaps"
J = {"Content-Type": "application/json"}


async def expect(r: httpx.Response, code: int, reason: str, text: str = "") -> None:
    assert r.status_code == code, r.text
    body = r.json()
    assert body["kind"] == "Status" and body["status"] == "Failure" and body["code"] == code
    assert body["reason"] == reason, body
    assert text in body["message"], body["message"]


async def test_bad_requests(api: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        await expect(await api.post(CM, content=b'{"metadata":', headers=J), 400, "BadRequest", "not valid JSON")
        await expect(await api.post(CM, content=b"[1,2]", headers=J), 400, "BadRequest")
        await expect(await api.post(CM, json={"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "x"}}),
                     400, "BadRequest", "kind")
        await expect(await api.post(CM, json={"apiVersion": "v2", "metadata": {"name": "x"}}), 400, "BadRequest",
                     "API version")
        await expect(await api.put(f"{CM}/a", json={"metadata": {"name": "b"}}), 400, "BadRequest",
                     "does not match the name on the URL")
        await expect(await api.post(CM, json={"metadata": {"name": "x", "namespace": "other"}}), 400, "BadRequest",
                     "namespace")
        await expect(await api.post(CM, json={"metadata": {"name": "Bad_Name"}}), 422, "Invalid",
                     'ConfigMap "Bad_Name" is invalid: metadata.name')
        r = await api.post(CM, json={"metadata": {"name": "ok", "labels": {"bad key!": "v"}}})
        await expect(r, 422, "Invalid", "metadata.labels")
        assert r.json()["details"]["causes"][0]["field"].startswith("metadata.labels")
        await expect(await api.post(CM, json={"metadata": {}}), 422, "Invalid", "name or generateName is required")
        await expect(await api.post(CM, json={"metadata": {"name": "k"}, "data": {"bad key": "v"}}), 422, "Invalid",
                     "data[bad key]")
        await expect(await api.post(CM, content=b"{}", headers={"Content-Type": "text/plain"}), 415,
                     "UnsupportedMediaType")
        await expect(await api.patch(f"{CM}/none", content=b"{}", headers={"Content-Type": "application/x"}), 415,
                     "UnsupportedMediaType")
        big = b'{"metadata":{"name":"big"},"data":{"k":"' + b"x" * (3 * 1024 * 1024 + 10) + b'"}}'
        await expect(await api.post(CM, content=big, headers=J), 413, "RequestEntityTooLarge")
        await expect(await api.get("/api/v1/nonsense"), 404, "NotFound")
        await expect(await api.get("/apis/example.com/v1/widgets"), 404, "NotFound")
        await expect(await api.get("/nothing/here"), 404, "NotFound")
        await expect(await api.get(CM + "?labelSelector=a%20in%20(b"), 400, "BadRequest")
        await expect(await api.get(CM + "?fieldSelector=spec.foo%3Dx"), 400, "BadRequest", "spec.foo")
        await expect(await api.get(CM + "?resourceVersionMatch=Exact"), 422, "Invalid", "resourceVersionMatch")
        await expect(await api.get(CM + "?resourceVersion=abc"), 400, "BadRequest")
        await expect(await api.get(CM + "?continue=garbage!!"), 400, "BadRequest", "continue")
        await expect(await api.post("/api/v1/namespaces/missing/configmaps", json={"metadata": {"name": "x"}}), 404,
                     "NotFound", 'namespaces "missing" not found')
        await expect(await api.delete("/api/v1/namespaces/default"), 403, "Forbidden", "may not be deleted")
        await expect(await api.post("/api/v1/configmaps", json={"metadata": {"name": "x"}}), 405,
                     "MethodNotAllowed")
        await expect(await api.get(CM + "?resourceVersion=999999&timeoutSeconds=1"), 504, "Timeout",
                     "Too large resource version")
        # Nothing above left a half-written object (kube-root-ca.crt is the root-CA controller's).
        names = [i["metadata"]["name"] for i in (await api.get(CM)).json()["items"]]
        assert names == ["kube-root-ca.crt"]


async def test_authentication_and_authorization(start_server: StartServer, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text('bobtoken,bob,u-bob,"devs,testers"\nroot-token,root,u-root,"system:masters"\n')
    server = await start_server(token_file=str(tokens))
    assert server.http_url is not None
    with trio.fail_after(20):
        async with httpx.AsyncClient(base_url=server.http_url) as anon:
            await expect(await anon.get("/api/v1/namespaces"), 401, "Unauthorized")
            await expect(await anon.get("/version"), 401, "Unauthorized")
            await expect(await anon.get(CM, headers={"Authorization": "Bearer wrong"}), 401, "Unauthorized")
            bob = {"Authorization": "Bearer bobtoken"}
            await expect(await anon.get(CM, headers=bob), 403, "Forbidden",
                         'configmaps is forbidden: User "bob" cannot list resource "configmaps" in API group "" in '
                         'the namespace "default"')
            # kube's RequestInfo: a namespace's own URL is in that namespace; the list is cluster-wide.
            await expect(await anon.get("/api/v1/namespaces/x", headers=bob), 403, "Forbidden",
                         'namespaces "x" is forbidden: User "bob" cannot get resource "namespaces" in API group "" '
                         'in the namespace "x"')
            await expect(await anon.get("/api/v1/namespaces", headers=bob), 403, "Forbidden",
                         'at the cluster scope')
            assert (await anon.get("/version", headers=bob)).status_code == 200
            root = {"Authorization": "Bearer root-token"}
            assert (await anon.get(CM, headers=root)).status_code == 200
            r = await anon.post(CM, headers=root, json={"metadata": {"name": "by-root"}})
            assert r.status_code == 201
        async with client_for(server) as api:
            assert (await api.get(f"{CM}/by-root")).status_code == 200


async def test_version_and_health(api: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        for path in ("/version", "/version/"):
            v = (await api.get(path)).json()
            assert v["major"] == "1" and v["minor"].isdigit() and v["gitVersion"].startswith("v1.")
        for path in ("/healthz", "/livez", "/readyz"):
            r = await api.get(path)
            assert r.status_code == 200 and r.text == "ok"
        r = await api.get("/readyz?verbose=")
        assert "[+]projection ok" in r.text
        assert (await api.get("/api")).json()["versions"] == ["v1"]
        groups = [g["name"] for g in (await api.get("/apis")).json()["groups"]]
        assert "coordination.k8s.io" in groups
        res = {r["name"] for r in (await api.get("/api/v1")).json()["resources"]}
        assert {"namespaces", "configmaps", "secrets", "serviceaccounts", "events"} <= res
        await api.get("/api/v1/namespaces")  # one consistent read
        metrics = (await api.get("/metrics")).text
        assert 'jetkube_stage_duration_seconds_count{stage="authn"}' in metrics
        count = next(line for line in metrics.splitlines() if line.startswith("jetkube_consistent_read_wait_seconds_count"))
        assert float(count.split()[1]) >= 1


@pytest.mark.parametrize("method,path,body,ctype,code", [
    ("GET", CM + "/x?resourceVersion=abc", b"", "application/json", 400),
    ("POST", "/api/v1/namespaces/default/secrets", b'{"metadata":{"name":"s"},"type":5}', "application/json", 400),
    ("POST", "/apis/coordination.k8s.io/v1/namespaces/default/leases",
     b'{"metadata":{"name":"l"},"spec":{"leaseDurationSeconds":"long"}}', "application/json", 400),
    ("POST", "/api/v1/namespaces/default/events", b'{"metadata":{"name":"e"},"involvedObject":"x"}',
     "application/json", 400),
    ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", b'{"spec":"x"}', "application/json", 400),
    ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", b'{"spec":{"resourceAttributes":"x"}}',
     "application/json", 400),
    ("POST", "/api/v1/namespaces/default/serviceaccounts/default/token", b'{"spec":"x"}', "application/json", 400),
    ("POST", CM, b"k8s\x00\n\x05", "application/vnd.kubernetes.protobuf", 400),
    ("PATCH", CM + "/x", b"apiVersion: v1", "application/apply-patch+yaml", 415),
])
async def test_malformed_input_is_a_4xx(api: httpx.AsyncClient, method: str, path: str, body: bytes, ctype: str,
                                        code: int) -> None:
    with trio.fail_after(20):
        await api.post(CM, json={"metadata": {"name": "x"}})
        r = await api.request(method, path, content=body, headers={"Content-Type": ctype})
        assert r.status_code == code, r.text
        assert r.json()["kind"] == "Status"
