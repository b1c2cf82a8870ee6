"""CertificateApproval, CertificateSigning, CertificateSubjectRestriction, StorageObjectInUseProtection
and PersistentVolumeClaimResize through the real HTTP face, with users from a token file whose
permissions come from RBAC bindings made on another gateway."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import Running, StartServer, client_for

pytestmark = pytest.mark.integration

CSRS = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
MERGE = {"Content-Type": "application/merge-patch+json"}
TOKENS = "approver-token,approver,u-approver\nsigner-token,signer,u-signer\nnobody-token,nobody,u-nobody\n"
RBAC = "/apis/rbac.authorization.k8s.io/v1"


def pem_csr(cn: str, *orgs: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.NameAttribute(NameOID.COMMON_NAME, cn), *(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o)
                                                           for o in orgs)]
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names)).sign(key, hashes.SHA256())
    return base64.b64encode(csr.public_bytes(serialization.Encoding.PEM)).decode()


def csr(name: str, signer: str, request: str, usages: tuple[str, ...] = ("client auth",)) -> dict[str, Any]:
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
            "spec": {"request": request, "signerName": signer, "usages": list(usages)}}


def as_user(running: Running, token: str) -> httpx.AsyncClient:
    assert running.http_url is not None
    return httpx.AsyncClient(base_url=running.http_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def role(name: str, *rules: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
            "rules": list(rules)}


def bind(name: str, role_name: str, user: str) -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
            "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": user}]}


CSR_RULES = {"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests",
                                                                 "certificatesigningrequests/approval",
                                                                 "certificatesigningrequests/status"],
             "verbs": ["get", "list", "create", "update", "patch"]}


async def test_certificate_plugins_on_two_gateways(start_server: StartServer, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(TOKENS)
    a, b = await start_server(token_file=str(tokens)), await start_server(token_file=str(tokens))
    async with client_for(a) as admin, as_user(b, "approver-token") as approver, \
            as_user(b, "signer-token") as signer, as_user(a, "nobody-token") as nobody:
        with trio.fail_after(60):
            # Everyone may write CSRs and their subresources; only the signers rules differ.
            assert (await admin.post(f"{RBAC}/clusterroles", json=role("csr-writer", CSR_RULES))).status_code == 201
            for user in ("approver", "signer", "nobody"):
                r = await admin.post(f"{RBAC}/clusterrolebindings", json=bind(f"csr-{user}", "csr-writer", user))
                assert r.status_code == 201, r.text
            # approve on one signer by name; sign on a whole domain (<domain>/*).
            r = await admin.post(f"{RBAC}/clusterroles", json=role("approve-example", {
                "apiGroups": ["certificates.k8s.io"], "resources": ["signers"], "verbs": ["approve"],
                "resourceNames": ["example.com/one"]}))
            assert r.status_code == 201, r.text
            r = await admin.post(f"{RBAC}/clusterroles", json=role("sign-example", {
                "apiGroups": ["certificates.k8s.io"], "resources": ["signers"], "verbs": ["sign"],
                "resourceNames": ["example.com/*"]}))
            assert r.status_code == 201, r.text
            for name, role_name, user in (("ap", "approve-example", "approver"), ("sg", "sign-example", "signer")):
                assert (await admin.post(f"{RBAC}/clusterrolebindings",
                                         json=bind(name, role_name, user))).status_code == 201

            request = pem_csr("me", "dev")
            for name, signer_name in (("one", "example.com/one"), ("two", "example.com/two")):
                r = await nobody.post(CSRS, json=csr(name, signer_name, request))
                assert r.status_code == 201, r.text
            approved = {"status": {"conditions": [{"type": "Approved", "status": "True", "reason": "OK"}]}}
            # CertificateApproval: the approver (bound on gateway a, writing on gateway b at once).
            r = await nobody.patch(f"{CSRS}/one/approval", headers=MERGE, json=approved)
            assert r.status_code == 403, r.text
            assert r.json()["message"] == ('certificatesigningrequests.certificates.k8s.io "one" is forbidden: user '
                                           'not permitted to approve requests with signerName "example.com/one"')
            r = await approver.patch(f"{CSRS}/one/approval", headers=MERGE, json=approved)
            assert r.status_code == 200, r.text
            r = await approver.patch(f"{CSRS}/two/approval", headers=MERGE, json=approved)
            assert r.status_code == 403
            assert 'signerName "example.com/two"' in r.json()["message"]
            # CertificateSigning: status.certificate needs sign (the domain wildcard grants it).
            cert = {"status": {"certificate": base64.b64encode(b"not checked here").decode()}}
            r = await approver.patch(f"{CSRS}/one/status", headers=MERGE, json=cert)
            assert r.status_code == 403, r.text
            assert r.json()["message"] == ('certificatesigningrequests.certificates.k8s.io "one" is forbidden: user '
                                           'not permitted to sign requests with signerName "example.com/one"')
            r = await signer.patch(f"{CSRS}/one/status", headers=MERGE, json=cert)
            assert r.status_code == 200, r.text
            # A status write that changes neither the certificate nor the conditions needs no sign.
            r = await nobody.patch(f"{CSRS}/one/status", headers=MERGE, json={"metadata": {"labels": {"x": "y"}}})
            assert r.status_code == 200, r.text
            # CertificateSubjectRestriction: no system:masters for the kube-apiserver-client signer.
            client_signer = "kubernetes.io/kube-apiserver-client"
            r = await admin.post(CSRS, json=csr("masters", client_signer, pem_csr("root", "dev", "system:masters")))
            assert r.status_code == 403, r.text
            assert r.json()["message"] == ('certificatesigningrequests.certificates.k8s.io "masters" is forbidden: use '
                                           'of kubernetes.io/kube-apiserver-client signer with system:masters group '
                                           'is not allowed')
            r = await admin.post(CSRS, json=csr("other-signer", "example.com/one",
                                                pem_csr("root", "system:masters")))
            assert r.status_code == 201, r.text
            r = await admin.post(CSRS, json=csr("devs", client_signer, pem_csr("me", "dev")))
            assert r.status_code == 201, r.text
            garbage = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").decode()
            r = await admin.post(CSRS, json=csr("garbage", client_signer, garbage))
            assert r.status_code == 403, r.text
            assert r.json()["message"] == ('certificatesigningrequests.certificates.k8s.io "garbage" is forbidden: '
                                           'failed to parse CSR: PEM block type must be CERTIFICATE REQUEST')


PVCS = "/api/v1/namespaces/default/persistentvolumeclaims"


def claim(name: str, size: str, storage_class: str | None = "expandable") -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name}, "spec": spec}


async def bound(api: httpx.AsyncClient, name: str) -> None:
    cur = (await api.get(f"{PVCS}/{name}")).json()
    cur["status"] = {"phase": "Bound"}
    r = await api.put(f"{PVCS}/{name}/status", json=cur)
    assert r.status_code == 200, r.text


async def test_storage_protection_and_claim_resize(start_server: StartServer) -> None:
    async with client_for(await start_server()) as api:
        with trio.fail_after(60):
            for name, expand in (("expandable", True), ("fixed", False)):
                r = await api.post("/apis/storage.k8s.io/v1/storageclasses", json={
                    "metadata": {"name": name}, "provisioner": "example.com/p", "allowVolumeExpansion": expand})
                assert r.status_code == 201, r.text
            # StorageObjectInUseProtection: the finalizer on every new claim and volume, once.
            for i in range(3):
                r = await api.post(PVCS, json=claim(f"c{i}", "1Gi"))
                assert r.status_code == 201, r.text
                assert r.json()["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
            mine = claim("mine", "1Gi", "fixed")
            mine["metadata"]["finalizers"] = ["example.com/keep", "kubernetes.io/pvc-protection"]
            r = await api.post(PVCS, json=mine)
            assert r.json()["metadata"]["finalizers"] == ["example.com/keep", "kubernetes.io/pvc-protection"]
            r = await api.post("/api/v1/persistentvolumes", json={
                "metadata": {"name": "pv0"}, "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                                                      "hostPath": {"path": "/tmp/pv0"}}})
            assert r.status_code == 201, r.text
            assert r.json()["metadata"]["finalizers"] == ["kubernetes.io/pv-protection"]

            # PersistentVolumeClaimResize: growing needs a bound claim and an expandable class.
            grow = {"spec": {"resources": {"requests": {"storage": "2Gi"}}}}
            r = await api.patch(f"{PVCS}/c0", headers=MERGE, json=grow)
            assert r.status_code == 403, r.text
            assert r.json()["message"] == ('persistentvolumeclaims "c0" is forbidden: Only bound persistent volume '
                                           'claims can be expanded')
            await bound(api, "c0")
            r = await api.patch(f"{PVCS}/c0", headers=MERGE, json=grow)
            assert r.status_code == 200, r.text
            assert r.json()["spec"]["resources"]["requests"]["storage"] == "2Gi"
            await bound(api, "mine")
            r = await api.patch(f"{PVCS}/mine", headers=MERGE, json=grow)
            assert r.status_code == 403, r.text
            assert r.json()["message"] == ('persistentvolumeclaims "mine" is forbidden: only dynamically provisioned '
                                           'pvc can be resized and the storageclass that provisions the pvc must '
                                           'support resize')
            # ResourceQuota charges a claim's storage, and its growth on update.
            r = await api.post("/api/v1/namespaces/default/resourcequotas", json={
                "metadata": {"name": "storage"}, "spec": {"hard": {
                    "requests.storage": "6Gi", "expandable.storageclass.storage.k8s.io/requests.storage": "5Gi"}}})
            assert r.status_code == 201, r.text
            r = await api.post(PVCS, json=claim("c3", "512Mi"))
            assert r.status_code == 201, r.text
            q = (await api.get("/api/v1/namespaces/default/resourcequotas/storage")).json()["status"]["used"]
            # c0 2Gi + c1, c2 1Gi (expandable), mine 1Gi (fixed), c3 512Mi.
            assert q == {"requests.storage": "5632Mi",
                         "expandable.storageclass.storage.k8s.io/requests.storage": "4608Mi"}, q
            # Growth past both limits is refused.
            await bound(api, "c3")
            r = await api.patch(f"{PVCS}/c3", headers=MERGE, json=grow)
            assert r.status_code == 403, r.text
            assert r.json()["message"] == (
                'persistentvolumeclaims "c3" is forbidden: exceeded quota: storage, requested: '
                'expandable.storageclass.storage.k8s.io/requests.storage=1536Mi,requests.storage=1536Mi, used: '
                'expandable.storageclass.storage.k8s.io/requests.storage=4608Mi,requests.storage=5632Mi, limited: '
                'expandable.storageclass.storage.k8s.io/requests.storage=5Gi,requests.storage=6Gi')
            r = await api.patch(f"{PVCS}/c3", headers=MERGE, json={"spec": {"resources": {"requests": {
                "storage": "1Gi"}}}})
            assert r.status_code == 200, r.text
            q = (await api.get("/api/v1/namespaces/default/resourcequotas/storage")).json()["status"]["used"]
            assert q == {"requests.storage": "6Gi", "expandable.storageclass.storage.k8s.io/requests.storage": "5Gi"}
            # An unchanged or smaller request is not the plugin's business.
            r = await api.patch(f"{PVCS}/mine", headers=MERGE, json={"metadata": {"labels": {"a": "b"}}})
            assert r.status_code == 200, r.text

            # Without the controllers that remove it, the protection finalizer keeps a deleted claim
            # (marked for deletion) until a client removes the finalizer, as on a kube without them.
            r = await api.delete(f"{PVCS}/c1")
            assert r.status_code == 200, r.text
            got = (await api.get(f"{PVCS}/c1")).json()
            assert got["metadata"]["deletionTimestamp"] and got["metadata"]["finalizers"] == [
                "kubernetes.io/pvc-protection"]
            r = await api.patch(f"{PVCS}/c1", headers=MERGE, json={"metadata": {"finalizers": None}})
            assert r.status_code == 200, r.text
            assert (await api.get(f"{PVCS}/c1")).status_code == 404
