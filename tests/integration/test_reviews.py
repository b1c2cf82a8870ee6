"""SelfSubjectReview, SelfSubjectAccessReview, SelfSubjectRulesReview and TokenRequest."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.conftest import StartServer, client_for

pytestmark = pytest.mark.integration


async def test_whoami_and_can_i(start_server: StartServer, tmp_path: Path) -> None:
    tokens = tmp_path / "t.csv"
    tokens.write_text('bobtoken,bob,u-bob,"devs"\n')
    server = await start_server(token_file=str(tokens))
    async with client_for(server) as api:
        with trio.fail_after(20):
            r = await api.post("/apis/authentication.k8s.io/v1/selfsubjectreviews",
                               json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
            assert r.status_code == 201, r.text
            info = r.json()["status"]["userInfo"]
            assert info["username"] == "admin" and "system:masters" in info["groups"]
            ssar = {"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
                    "spec": {"resourceAttributes": {"namespace": "default", "verb": "create",
                                                    "resource": "configmaps"}}}
            assert (await api.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                                   json=ssar)).json()["status"]["allowed"] is True
            bob = {"Authorization": "Bearer bobtoken"}
            r = await api.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", json=ssar, headers=bob)
            assert r.status_code == 201 and r.json()["status"]["allowed"] is False
            r = await api.post("/apis/authentication.k8s.io/v1beta1/selfsubjectreviews",
                               json={"apiVersion": "authentication.k8s.io/v1beta1", "kind": "SelfSubjectReview"},
                               headers=bob)
            assert r.json()["status"]["userInfo"]["username"] == "bob"
            assert r.json()["apiVersion"] == "authentication.k8s.io/v1beta1"
            r = await api.post("/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
                               json={"spec": {"namespace": "default"}}, headers=bob)
            assert r.status_code == 201 and r.json()["status"]["resourceRules"]
            assert (await api.get("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")).status_code == 405


async def test_token_request_bound_to_service_account(start_server: StartServer, tmp_path: Path) -> None:
    # Replicas share the signing key as kube's apiservers do: the same key file for both.
    a = await start_server(data_dir=str(tmp_path / "a"))
    b = await start_server(service_account_key_file=str(tmp_path / "a" / "pki" / "sa.key"))
    async with client_for(a) as api, client_for(b) as api_b:
        with trio.fail_after(30):
            await api.post("/api/v1/namespaces/default/serviceaccounts", json={"metadata": {"name": "bot"}})
            r = await api.post("/api/v1/namespaces/default/serviceaccounts/bot/token",
                               json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                     "spec": {"expirationSeconds": 3600}})
            assert r.status_code == 201, r.text
            token = r.json()["status"]["token"]
            assert r.json()["status"]["expirationTimestamp"].endswith("Z")
            sa_headers = {"Authorization": f"Bearer {token}"}
            # Accepted by both gateways (they were given the same key file), once each has applied the
            # service account: the authenticator looks it up in its projection (a consistent GET waits).
            for client in (api, api_b):
                assert (await client.get("/api/v1/namespaces/default/serviceaccounts/bot")).status_code == 200
            for client in (api, api_b):
                who = await client.post("/apis/authentication.k8s.io/v1/selfsubjectreviews", json={},
                                        headers=sa_headers)
                assert who.status_code == 201, who.text
                assert who.json()["status"]["userInfo"]["username"] == "system:serviceaccount:default:bot"
            # Not an admin: 403 on configmaps.
            assert (await api.get("/api/v1/namespaces/default/configmaps", headers=sa_headers)).status_code == 403
            assert (await api.post("/api/v1/namespaces/default/serviceaccounts/none/token",
                                   json={})).status_code == 404
            # Deleting the service account revokes the token, on every gateway once it has applied the
            # deletion (as kube-apiserver's cached service-account lookup); a consistent GET ensures that.
            await api.delete("/api/v1/namespaces/default/serviceaccounts/bot")
            for client in (api, api_b):
                assert (await client.get("/api/v1/namespaces/default/serviceaccounts/bot")).status_code == 404
                r = await client.post("/apis/authentication.k8s.io/v1/selfsubjectreviews", json={},
                                      headers=sa_headers)
                assert r.status_code == 401
            tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
            r = await api.get("/version", headers={"Authorization": f"Bearer {tampered}"})
            assert r.status_code == 401
