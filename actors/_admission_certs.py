"""kube-apiserver's admission plugins for CertificateSigningRequests (certificates.k8s.io/v1).

- CertificateApproval: an update through ``certificatesigningrequests/approval`` needs the verb
  ``approve`` on the synthetic resource ``signers`` named after the request's (old) signerName,
  or on ``<domain>/*`` (plugin/pkg/admission/certificates/approval).
- CertificateSigning: an update through ``certificatesigningrequests/status`` that changes
  ``status.certificate`` or ``status.conditions`` needs ``sign`` on the same ``signers``
  (plugin/pkg/admission/certificates/signing).
- CertificateSubjectRestriction: a new request for the ``kubernetes.io/kube-apiserver-client``
  signer may not ask for the ``system:masters`` organization (group)
  (plugin/pkg/admission/certificates/subjectrestriction).

Authorization goes through the server's authorizer (the one the authz actor asks), with a
refusal decided again on a projection caught up with the log, so a role granted through any
gateway a moment ago counts.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from ._admission import Attributes
from ._admission_plugins import _forbidden

CERTIFICATES = "certificates.k8s.io"
KUBE_APISERVER_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"
_PEM_BLOCK = re.compile(rb"-----BEGIN ([^-\r\n]*)-----\r?\n(.*?)-----END \1-----", re.DOTALL)


def _is_csr(a: Attributes) -> bool:
    return (a.rdef.group, a.rdef.plural) == (CERTIFICATES, "certificatesigningrequests")


def _signer(obj: dict[str, Any] | None) -> str:
    spec = (obj or {}).get("spec")
    name = spec.get("signerName") if isinstance(spec, dict) else None
    return name if isinstance(name, str) else ""


async def authorized_for_signer(authorizer: Any, user: Any, verb: str, signer: str) -> bool:
    """kube's ``IsAuthorizedForSignerName``: ``verb`` on ``signers/<signer>``, else on
    ``signers/<domain>/*`` (the part of the name before its first ``/``)."""
    from ._authz import Attributes as AuthzAttributes

    if user is None or authorizer is None:
        return False
    for name in (signer, signer.split("/", 1)[0] + "/*"):
        a = AuthzAttributes(verb=verb, api_group=CERTIFICATES, resource="signers", name=name)
        if (await authorizer.authorize_fresh(user, a)).allowed:
            return True
    return False


class CertificateApproval:
    """``approve`` on the signer for writes through the approval subresource."""

    def __init__(self) -> None:
        self.authorizer: Any = None  # the server's Authorizer, attached by the pipeline

    async def validate(self, a: Attributes, obj: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        if a.subresource != "approval" or not _is_csr(a) or a.operation != "UPDATE":
            return
        # The old object's signer: an approval write may not change it (the strategy keeps the
        # spec), and the permission is the one for the request as it was.
        signer = _signer(old)
        if not await authorized_for_signer(self.authorizer, a.user, "approve", signer):
            raise _forbidden(a, f'user not permitted to approve requests with signerName "{signer}"')


class CertificateSigning:
    """``sign`` on the signer for status writes that change the certificate or the conditions."""

    def __init__(self) -> None:
        self.authorizer: Any = None

    async def validate(self, a: Attributes, obj: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        if a.subresource != "status" or not _is_csr(a) or a.operation != "UPDATE":
            return
        new_status = (obj or {}).get("status") or {}
        old_status = (old or {}).get("status") or {}
        if (new_status.get("certificate") == old_status.get("certificate")
                and (new_status.get("conditions") or None) == (old_status.get("conditions") or None)):
            return
        signer = _signer(old)
        if not await authorized_for_signer(self.authorizer, a.user, "sign", signer):
            raise _forbidden(a, f'user not permitted to sign requests with signerName "{signer}"')


def csr_organizations(request_b64: Any) -> list[str]:
    """The subject organizations of a CSR's ``spec.request`` (base64 of PEM, as the JSON carries
    ``[]byte``); raises ValueError with kube's ``ParseCSR`` wording when it is not one."""
    try:
        pem = base64.b64decode(request_b64 if isinstance(request_b64, str) else "", validate=True)
    except (binascii.Error, ValueError):
        pem = b""
    m = _PEM_BLOCK.search(pem)
    if m is None or m.group(1) != b"CERTIFICATE REQUEST":
        raise ValueError("PEM block type must be CERTIFICATE REQUEST")
    try:
        der = base64.b64decode(b"".join(m.group(2).split()), validate=True)
        csr = x509.load_der_x509_csr(der)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"x509: malformed certificate request: {e}") from None
    return [str(attr.value) for attr in csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]


class CertificateSubjectRestriction:
    """No ``system:masters`` group in a request for the kube-apiserver-client signer."""

    async def validate(self, a: Attributes, obj: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        if a.operation != "CREATE" or a.subresource or not _is_csr(a) or obj is None:
            return
        if _signer(obj) != KUBE_APISERVER_CLIENT_SIGNER:
            return
        try:
            groups = csr_organizations((obj.get("spec") or {}).get("request"))
        except ValueError as e:
            raise _forbidden(a, f"failed to parse CSR: {e}") from None
        if "system:masters" in groups:
            raise _forbidden(a, f"use of {KUBE_APISERVER_CLIENT_SIGNER} signer with system:masters group is not "
                                "allowed")


__all__ = ["CertificateApproval", "CertificateSigning", "CertificateSubjectRestriction", "authorized_for_signer",
           "csr_organizations"]
