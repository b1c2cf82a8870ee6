"""kube-apiserver's HTTP details that every client sees, through a real gateway: the ``Cache-Control``
its ``WithCacheControl`` filter puts on every answer (``endpoints/filters/cachecontrol.go``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import yaml

from gateway._fast import FastPath
from tests.conftest import StartServer, client_for, poll_until

pytestmark = pytest.mark.integration

CM = "/api/v1/namespaces/default/configmaps"
NO_CACHE = ["no-cache, private"]
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


async def test_every_answer_has_kubes_cache_control(start_server: StartServer, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """``no-cache, private`` on every answer, whichever path writes it (the fast path, Quart's handler, an
    error, a watch, a HEAD, a 401 before authentication), once; a handler's own value instead of it
    (OpenAPI's ``public, immutable`` for a document asked by its hash, the OIDC discovery's max-age)."""
    fast: list[str] = []
    real_serve = FastPath._serve

    async def counted(self: FastPath, scope: Any, receive: Any, send: Any, *args: Any) -> None:
        fast.append(scope["path"])
        await real_serve(self, scope, receive, send, *args)

    monkeypatch.setattr(FastPath, "_serve", counted)
    tokens = tmp_path / "tokens.csv"
    tokens.write_text("bobtoken,bob,u-bob\n")
    gw = await start_server(token_file=str(tokens))
    with trio.fail_after(60):
        async with client_for(gw) as api:
            r = await api.post(CM, json={"metadata": {"name": "c1"}})
            assert r.status_code == 201, r.text
            answers = [r, await api.get(f"{CM}/c1"), await api.get(CM), await api.head(CM),
                       await api.get(CM, headers={"Accept": TABLE}), await api.get(CM, headers={"Accept": "application/yaml"}),
                       await api.get("/api"), await api.get("/apis/apps/v1"), await api.get("/version"),
                       await api.get("/openapi/v3"), await api.get("/healthz"), await api.get("/metrics"),
                       await api.get(f"{CM}/missing"), await api.get("/nothing/here"),
                       await api.post(CM, content=b"{", headers={"Content-Type": "application/json"})]
            assert fast.count(f"{CM}/c1") == 1 and fast.count(CM) >= 3  # (the fast path's: JSON writes and reads)
            async with api.stream("GET", CM, params={"watch": "1", "timeoutSeconds": "5"}) as w:
                assert w.status_code == 200
                answers.append(w)
            async with httpx.AsyncClient(base_url=str(gw.http_url)) as anon:
                answers.append(await anon.get(CM))  # 401
                answers.append(await anon.get(CM, headers={"Authorization": "Bearer bobtoken"}))  # 403
            for a in answers:
                assert a.headers.get_list("Cache-Control") == NO_CACHE, (a.request.method, a.url, a.status_code)

            # A handler's own value replaces it.
            index = (await api.get("/openapi/v3")).json()
            url = index["paths"]["api/v1"]["serverRelativeURL"]
            r = await api.get(url)
            assert r.status_code == 200 and r.headers.get_list("Cache-Control") == ["public, immutable"]
            r = await api.get(url.partition("?")[0])  # (no hash: the default)
            assert r.status_code == 200 and r.headers.get_list("Cache-Control") == NO_CACHE
            r = await api.get("/.well-known/openid-configuration")
            assert r.status_code == 200 and r.headers.get_list("Cache-Control") == ["public, max-age=3600"]


async def test_version_is_json_alone(start_server: StartServer) -> None:
    """``/version`` is a go-restful route that Produces JSON alone (``server/routes/version.go``): an Accept
    with neither ``application/json`` nor ``*/*`` is its router's 406, a Status negotiated as kube writes its
    errors (YAML for a YAML Accept, else JSON)."""
    gw = await start_server()
    with trio.fail_after(30):
        async with client_for(gw) as api:
            for accept in (None, "application/json", "application/json, */*", "*/*", "application/yaml, */*"):
                r = await api.get("/version", headers={"Accept": accept} if accept else {})
                assert r.status_code == 200 and r.json()["major"] == "1", (accept, r.text)
            want = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "406: Not Acceptable\n\nAvailable representations: application/json",
                    "reason": "NotAcceptable", "details": {}, "code": 406}
            r = await api.get("/version", headers={"Accept": "application/yaml"})
            assert r.status_code == 406 and r.headers["Content-Type"] == "application/yaml", r.text
            assert yaml.safe_load(r.content) == want
            for accept in ("application/*", "text/html", "*", "application/vnd.kubernetes.protobuf"):
                r = await api.get("/version", headers={"Accept": accept})
                assert (r.status_code, r.headers["Content-Type"], r.json()) == (406, "application/json", want), accept


ROUTE_406 = ("406: Not Acceptable\n\nAvailable representations: application/json, application/yaml, "
             "application/vnd.kubernetes.protobuf")
STREAM_406 = ROUTE_406 + ", application/json;stream=watch, application/vnd.kubernetes.protobuf;stream=watch"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
WIDGETS = "/apis/example.com/v1/namespaces/default/widgets"


def _refused(r: httpx.Response, message: str, code: int = 406) -> None:
    assert r.status_code == code, (r.request.url, r.text)
    assert r.json() == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
                        "reason": "NotAcceptable" if code == 406 else "UnsupportedMediaType", "details": {},
                        "code": code}


async def test_kubes_router_refuses_what_its_routes_do_not_produce(start_server: StartServer, tmp_path: Path) -> None:
    """A built-in kind's routes, ``/api``, ``/api/v1`` and a built-in ``/apis/<group>/<version>`` are go-restful
    routes: an Accept naming none of their types (exactly) and no ``*/*`` is the router's 406 (``application/*``
    and a bare ``*`` among them), after authorization; a bodiless write's is 415. ``/apis`` and
    ``/apis/<group>`` (kube-aggregator's handlers) and custom resources (apiextensions') only negotiate, so
    ``application/*`` is JSON there. kubectl's Accepts all pass."""
    tokens = tmp_path / "tokens.csv"
    tokens.write_text("bobtoken,bob,u-bob\n")
    gw = await start_server(token_file=str(tokens))
    with trio.fail_after(60):
        async with client_for(gw) as api:
            r = await api.post(CRDS, json={
                "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": "widgets.example.com"},
                "spec": {"group": "example.com", "scope": "Namespaced",
                         "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                         "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                             "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}})
            assert r.status_code == 201, r.text
            r = await api.post(CM, json={"metadata": {"name": "c1"}})
            assert r.status_code == 201, r.text

            async def served() -> bool:
                return (await api.get(WIDGETS)).status_code == 200

            await poll_until(served)
            for accept in ("application/*", "*", "text/html", "Application/JSON"):
                h = {"Accept": accept}
                _refused(await api.get(CM, headers=h), STREAM_406)  # (the fast path declines: the app's 406)
                _refused(await api.get(CM, params={"watch": "1"}, headers=h), STREAM_406)
                _refused(await api.get(f"{CM}/c1", headers=h), ROUTE_406)
                _refused(await api.get(f"{CM}/missing", headers=h), ROUTE_406)  # (the router before the handler)
                _refused(await api.post(CM, json={"metadata": {"name": "c2"}}, headers=h), ROUTE_406)
                _refused(await api.delete(f"{CM}/c1", headers=h), ROUTE_406)
                _refused(await api.post(CM, headers=h),
                         ROUTE_406.replace("406: Not Acceptable", "415: Unsupported Media Type"), 415)
                for path in ("/api", "/api/v1", "/apis/apps/v1"):
                    _refused(await api.get(path, headers=h), ROUTE_406)
            h = {"Accept": "application/*"}
            for path in ("/apis", "/apis/apps", "/apis/example.com", "/apis/example.com/v1", WIDGETS):
                r = await api.get(path, headers=h)
                assert r.status_code == 200 and r.headers["Content-Type"] == "application/json", (path, r.text)
            # What clients send passes the router.
            for accept in ("application/json, */*", "*/*", "application/json",
                           "application/vnd.kubernetes.protobuf,application/json", TABLE,
                           "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"):
                for path in (CM, f"{CM}/c1", "/api", "/api/v1", "/apis/apps/v1"):
                    r = await api.get(path, headers={"Accept": accept})
                    assert r.status_code == 200, (path, accept, r.text)
            async with httpx.AsyncClient(base_url=str(gw.http_url)) as anon:  # authorization first
                r = await anon.get(CM, headers={"Authorization": "Bearer bobtoken", "Accept": "application/*"})
                assert r.status_code == 403, r.text


async def test_aggregated_discovery_ignores_unknown_parameters(start_server: StartServer) -> None:
    """kube's aggregated discovery takes a clause whatever parameters it adds (``acceptMediaTypeOptions`` keeps
    unknown ones aside), and skips plain clauses before it (``DiscoveryEndpointRestrictions``)."""
    v2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    v2beta1 = v2.replace("v=v2", "v=v2beta1")
    gw = await start_server()
    with trio.fail_after(30):
        async with client_for(gw) as api:
            for accept, content_type in ((f"{v2};foo=bar", v2), (f"{v2beta1};x=1;profile=nopeer", v2beta1),
                                         (f"{v2};foo=bar,{v2beta1};foo=bar", v2), (f"application/json, {v2}", v2)):
                for path in ("/api", "/apis"):
                    r = await api.get(path, headers={"Accept": accept})
                    assert r.status_code == 200 and r.headers["Content-Type"] == content_type, (path, accept, r.text)
                    assert r.json()["kind"] == "APIGroupDiscoveryList"
                    assert r.json()["apiVersion"] == "apidiscovery.k8s.io/" + ("v2" if content_type == v2 else "v2beta1")
