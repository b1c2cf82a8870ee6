"""Pure parts of the storage, certificate and quota plugins and of the quota controller."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from actors._admission_certs import csr_organizations
from actors._admission_plugins import usage_of
from actors._admission_storage import claim_class
from actors._quota_controller import corrected_status, kinds_of


def _csr_b64(*orgs: str) -> str:
    import base64

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x"),
                      *(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs)])
    pem = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256()).public_bytes(
        serialization.Encoding.PEM)
    return base64.b64encode(b"leading text\n" + pem).decode()


def test_csr_organizations() -> None:
    assert csr_organizations(_csr_b64("a", "system:masters")) == ["a", "system:masters"]
    for bad in ("", "!!!", "LS0tLS1CRUdJTg==", None):
        with pytest.raises(ValueError, match="^PEM block type must be CERTIFICATE REQUEST$"):
            csr_organizations(bad)


def test_claim_class() -> None:
    assert claim_class({"spec": {"storageClassName": "fast"}}) == "fast"
    assert claim_class({"metadata": {"annotations": {"volume.beta.kubernetes.io/storage-class": "old"}},
                        "spec": {"storageClassName": "fast"}}) == "old"
    assert claim_class({"spec": {}}) == ""


def test_usage_of_ended_pods() -> None:
    pod = {"spec": {"containers": [{"resources": {"requests": {"cpu": "250m"}}}]}, "status": {"phase": "Running"}}
    assert usage_of("", "pods", pod) == {"count/pods": 1, "pods": 1, "requests.cpu": Fraction(1, 4),
                                         "cpu": Fraction(1, 4)}
    pod["status"]["phase"] = "Failed"
    assert usage_of("", "pods", pod) == {"count/pods": 1}
    assert usage_of("apps", "deployments", {}) == {"count/deployments.apps": 1}


def test_kinds_a_quota_counts() -> None:
    assert kinds_of({"pods": "1", "requests.memory": "1Gi", "count/deployments.apps": "2", "configmaps": "3",
                     "count/widgets.example.com": "1"}) == {
        ("", "pods"), ("apps", "deployments"), ("", "configmaps"), ("example.com", "widgets")}


def test_corrected_status_fills_at_once_and_corrects_when_settled() -> None:
    quota = {"spec": {"hard": {"pods": "10", "requests.cpu": "2"}}, "status": {}}
    usage = {"pods": 3, "requests.cpu": Fraction(1, 2)}
    assert corrected_status(quota, usage, settled=False) == (
        {"hard": {"pods": "10", "requests.cpu": "2"}, "used": {"pods": "3", "requests.cpu": "500m"}}, False)
    quota["status"] = {"hard": {"pods": "10", "requests.cpu": "2"}, "used": {"pods": "4", "requests.cpu": "0.5"}}
    # 0.5 == 500m: no change; pods differ: held back until the quota settles.
    assert corrected_status(quota, usage, settled=False) == (None, True)
    status, held = corrected_status(quota, usage, settled=True)
    assert not held and status == {"hard": {"pods": "10", "requests.cpu": "2"},
                                   "used": {"pods": "3", "requests.cpu": "0.5"}}
    # A key dropped from hard leaves used; a new one is filled even when unsettled.
    quota["spec"]["hard"] = {"pods": "10", "secrets": "1"}
    status, held = corrected_status(quota, {"pods": 4, "secrets": 0}, settled=False)
    assert status == {"hard": {"pods": "10", "secrets": "1"}, "used": {"pods": "4", "secrets": "0"}} and not held


class _QuotaState:
    def __init__(self, names: list[str]) -> None:
        self.by_ns = {"ns": set(names)}
        self._names = names

    def sorted_names(self, namespace: str) -> list[str]:
        return list(self._names)


class _Projection:
    def __init__(self, names: list[str]) -> None:
        self.quotas = _QuotaState(names)

    def state(self, tenant: str, group: str, resource: str) -> _QuotaState:
        return self.quotas


class _Core:
    """Counts the refunds the plugin asks for (each decide applied once)."""

    def __init__(self) -> None:
        from kinds import Registry

        self.registry = Registry()
        self.used: dict[str, int] = {"a": 5, "b": 5}

    async def guaranteed_update(self, req: Any, key: Any, decide: Any) -> None:
        entry = type("E", (), {"seq": 1})()
        quota = {"metadata": {"name": key.name}, "spec": {"hard": {"pods": "10"}},
                 "status": {"used": {"pods": str(self.used[key.name])}}}
        decision = await decide(entry, quota)
        if isinstance(decision, tuple):
            self.used[key.name] = int(decision[1]["status"]["used"]["pods"])


async def test_a_delete_decided_twice_is_refunded_once() -> None:
    from actors._admission import Attributes
    from actors._admission_plugins import ResourceQuota
    from actors.messages import Request
    from kinds import Registry

    plugin = ResourceQuota(_Projection(["a", "b"]))  # type: ignore[arg-type]
    core = plugin.core = _Core()
    rdef = Registry().by_resource("", "pods")
    pod = {"metadata": {"name": "p"}, "spec": {"containers": []}}
    a = Attributes(Request(verb="delete", rdef=rdef, namespace="ns", name="p", audit_id="req-1"), "DELETE", "p")
    for _ in range(3):  # the resource actor's retry loop deciding the same delete again
        await plugin.validate(a, None, pod)
    assert core.used == {"a": 4, "b": 4}
    other = Attributes(Request(verb="delete", rdef=rdef, namespace="ns", name="p", audit_id="req-2"), "DELETE", "p")
    await plugin.validate(other, None, pod)
    assert core.used == {"a": 3, "b": 3}
    marked = {**pod, "metadata": {"name": "p", "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    third = Attributes(Request(verb="delete", rdef=rdef, namespace="ns", name="p", audit_id="req-3"), "DELETE", "p")
    await plugin.validate(third, None, marked)
    assert core.used == {"a": 3, "b": 3}


def test_claim_usage_and_byte_units() -> None:
    from actors._admission_plugins import _fmt

    pvc = {"spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "1536Mi"}}}}
    assert usage_of("", "persistentvolumeclaims", pvc) == {
        "count/persistentvolumeclaims": 1, "persistentvolumeclaims": 1, "requests.storage": 1536 * 2 ** 20,
        "fast.storageclass.storage.k8s.io/persistentvolumeclaims": 1,
        "fast.storageclass.storage.k8s.io/requests.storage": 1536 * 2 ** 20}
    assert kinds_of({"requests.storage": "1", "fast.storageclass.storage.k8s.io/persistentvolumeclaims": "1"}) == {
        ("", "persistentvolumeclaims")}
    assert _fmt(1536 * 2 ** 20, "requests.storage") == "1536Mi"
    assert _fmt(2 ** 30, "fast.storageclass.storage.k8s.io/requests.storage") == "1Gi"
    assert _fmt(1500, "requests.memory") == "1500" and _fmt(0, "requests.storage") == "0"
    assert _fmt(2048, "pods") == "2048" and _fmt(Fraction(1, 2), "requests.cpu") == "500m"
