"""Every kind of identity is authorized by RBAC alike (issue 8's "done when"): a static-token user,
a client-certificate user, an OIDC user and a service account are refused before a RoleBinding names
them, allowed after, refused again once it is deleted — on both of two gateways."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import jwt as pyjwt
import pytest
import trio
import yaml

from gateway._server import Running
from tests.conftest import StartServer, client_for
from tests.integration.test_authn import _https, _idp_key, _sign
from tests.integration.test_rbac import RBAC, binding, cluster_role, cm_path, forbidden, ok

pytestmark = pytest.mark.integration

NS = "a"


def subject(kind: str, name: str) -> dict[str, str]:
    if kind == "ServiceAccount":
        return {"kind": kind, "name": name, "namespace": NS}
    return {"kind": kind, "name": name, "apiGroup": "rbac.authorization.k8s.io"}


async def test_each_kind_of_identity_through_a_binding_lifecycle(start_server: StartServer, tmp_path: Path) -> None:
    (tmp_path / "tokens.csv").write_text("alice-token,alice,u-alice\n")
    key, jwks = _idp_key("k1")
    (tmp_path / "jwks.json").write_text(json.dumps(jwks))
    (tmp_path / "auth.yaml").write_text(yaml.safe_dump({
        "apiVersion": "apiserver.config.k8s.io/v1", "kind": "AuthenticationConfiguration",
        "jwt": [{"issuer": {"url": "https://idp.example", "audiences": ["jetkube"],
                            "jwksFile": str(tmp_path / "jwks.json")},
                 "claimMappings": {"username": {"claim": "email", "prefix": ""}}}]}))
    shared = tmp_path / "shared"  # one CA and service-account key for both gateways
    kw: dict[str, Any] = {"data_dir": str(shared), "token_file": str(tmp_path / "tokens.csv"),
                          "authentication_config": str(tmp_path / "auth.yaml")}
    gws: list[Running] = [await start_server(**kw), await start_server(**kw)]
    crt, pem = _sign(shared, tmp_path / "certs", "carl")
    now = int(time.time())
    oidc_token = pyjwt.encode({"iss": "https://idp.example", "aud": "jetkube", "sub": "d-1",
                               "email": "dana@example.com", "email_verified": True, "iat": now, "exp": now + 600},
                              key, algorithm="RS256", headers={"kid": "k1"})
    with trio.fail_after(90):
        async with client_for(gws[0]) as admin:
            await ok(await admin.post("/api/v1/namespaces", json={"metadata": {"name": NS}}), 201)
            for i in range(3):
                await ok(await admin.post(cm_path(NS), json={"metadata": {"name": f"cm{i}"}}), 201)
            await ok(await admin.post(f"{RBAC}/clusterroles", json=cluster_role(
                "cm-reader", {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]})), 201)
            await ok(await admin.post(f"/api/v1/namespaces/{NS}/serviceaccounts",
                                      json={"metadata": {"name": "robot"}}), 201)
            sa_token = (await ok(await admin.post(f"/api/v1/namespaces/{NS}/serviceaccounts/robot/token",
                                                  json={"spec": {}}), 201))["status"]["token"]

            def clients(g: Running) -> dict[str, tuple[dict[str, str], str, httpx.AsyncClient]]:
                bearer = {"alice": "alice-token", "dana@example.com": oidc_token,
                          "system:serviceaccount:a:robot": sa_token}
                out = {name: (subject("User", name) if ":" not in name else subject("ServiceAccount", "robot"),
                              name, httpx.AsyncClient(base_url=g.http_url or "", timeout=30,
                                                      headers={"Authorization": f"Bearer {t}"}))
                       for name, t in bearer.items()}
                out["carl"] = (subject("User", "carl"), "carl", _https(g, shared / "pki" / "ca.crt", crt, pem))
                return out

            per_gateway = [clients(g) for g in gws]
            try:
                for who in per_gateway[0]:
                    sub, name, _ = per_gateway[0][who]
                    denied = (f'configmaps is forbidden: User "{name}" cannot list resource "configmaps" in API '
                              f'group "" in the namespace "{NS}"')
                    for cs in per_gateway:
                        await forbidden(await cs[who][2].get(cm_path(NS)), denied)
                    rb = binding(f"reads-{len(who)}", "ClusterRole", "cm-reader", sub, ns=NS)
                    await ok(await admin.post(f"{RBAC}/namespaces/{NS}/rolebindings", json=rb), 201)
                    for cs in per_gateway:
                        items = (await ok(await cs[who][2].get(cm_path(NS))))["items"]
                        assert [i["metadata"]["name"] for i in items] == ["cm0", "cm1", "cm2", "kube-root-ca.crt"]
                        await forbidden(await cs[who][2].get(cm_path("default")))
                    await ok(await admin.delete(f"{RBAC}/namespaces/{NS}/rolebindings/{rb['metadata']['name']}"))
                    async with client_for(gws[1]) as admin_b:  # a consistent read on the other gateway
                        await ok(await admin_b.get(f"{RBAC}/namespaces/{NS}/rolebindings"))
                    for cs in per_gateway:
                        await forbidden(await cs[who][2].get(cm_path(NS)), denied)
            finally:
                for cs in per_gateway:
                    for _, _, c in cs.values():
                        await c.aclose()


async def test_issuer_discovery_for_unauthenticated_readers(start_server: StartServer) -> None:
    """kube's way to publish the service-account issuer to anyone: anonymous requests on, and the
    bootstrap role ``system:service-account-issuer-discovery`` bound to ``system:unauthenticated``
    (kube binds it to ``system:serviceaccounts`` only). Before that binding an anonymous read is 403;
    after it, a third party reads both documents without a credential and verifies a token with PyJWT."""
    s = await start_server(anonymous_auth=True)
    async with client_for(s) as admin, httpx.AsyncClient(base_url=s.http_url or "", timeout=30) as anon:
        with trio.fail_after(60):
            for path in ("/.well-known/openid-configuration", "/openid/v1/jwks"):
                await forbidden(await anon.get(path))
            await ok(await admin.post(f"{RBAC}/clusterrolebindings", json=binding(
                "public-issuer-discovery", "ClusterRole", "system:service-account-issuer-discovery",
                {"kind": "Group", "name": "system:unauthenticated", "apiGroup": "rbac.authorization.k8s.io"})), 201)
            await ok(await admin.post("/api/v1/namespaces/default/serviceaccounts", json={"metadata": {"name": "bot"}}),
                     201)
            token = (await ok(await admin.post("/api/v1/namespaces/default/serviceaccounts/bot/token",
                                               json={"spec": {"audiences": ["vault"]}}), 201))["status"]["token"]
            conf = await ok(await anon.get("/.well-known/openid-configuration"))
            keys = pyjwt.PyJWKSet.from_dict(await ok(await anon.get("/openid/v1/jwks")))
            claims = pyjwt.decode(token, keys[pyjwt.get_unverified_header(token)["kid"]].key,
                                  algorithms=conf["id_token_signing_alg_values_supported"], audience="vault",
                                  issuer=conf["issuer"])
            assert claims["sub"] == "system:serviceaccount:default:bot"
            await forbidden(await anon.get("/api/v1/namespaces/default/configmaps"))  # nothing else
