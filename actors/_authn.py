"""Authentication as kube-apiserver chains it (``pkg/kubeapiserver/authenticator/config.go``):
front-proxy request headers, then x509 client certificates, then bearer tokens (static tokens,
service-account JWTs); the first success wins. Every authenticated user gets
``system:authenticated`` (kube's AuthenticatedGroupAdder); with ``anonymous`` a request with no
credentials at all is ``system:anonymous`` in ``system:unauthenticated`` (a bad credential stays
401, kube's ``union.NewFailOnError``). Impersonation comes after authentication and asks the
authorizer (``endpoints/filters/impersonation.go``).

Pure decisions: no I/O; the certificates arrive as DER bytes in the :class:`Request` (the gateway
takes them from the TLS connection), and are verified here with ``cryptography``.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable, Sequence
from urllib.parse import unquote

import cachetools
import msgspec
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bus import ROOT_TENANT
from kinds import ResourceDef
from kinds._errors import BadRequest, Unauthorized

from ._auth import AUTHENTICATED, TokenAuthenticator
from ._oidc import OIDCAuthenticator, unverified_issuer
from ._tokens import unauthorized
from .messages import Request, UserInfo

ANONYMOUS = "system:anonymous"
UNAUTHENTICATED = "system:unauthenticated"
SA_PREFIX = "system:serviceaccount:"
CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"
# The subject attribute kube reads a certificate user's uid from (AllowParsingUserUIDFromCertAuth).
_UID_OID = x509.ObjectIdentifier("0.9.2342.19200300.100.1.1")

IMPERSONATE_USER = "impersonate-user"
IMPERSONATE_GROUP = "impersonate-group"
IMPERSONATE_UID = "impersonate-uid"
IMPERSONATE_EXTRA = "impersonate-extra-"

# Verified certificates are remembered by fingerprint (bounded): one signature check per client,
# not per request. The validity window is checked on every use.
_CERT_CACHE_SIZE = 4096
_CERT_CACHE_TTL_S = 60.0


class CertificateAuthority:
    """Client certificates signed by one of a bundle of CAs (``--client-ca-file``), as Go's
    ``x509.Certificate.Verify`` with ExtKeyUsageClientAuth: the leaf must be directly issued by a
    CA of the bundle (its signature checked), inside its validity window, and its extended key
    usage, if it has one, must allow client authentication. (Only the leaf reaches the app before
    Python 3.13, so intermediates are not followed.)"""

    def __init__(self, pem: bytes) -> None:
        self.cas = tuple(c for c in x509.load_pem_x509_certificates(pem) if _is_ca(c))
        if not self.cas:
            raise ValueError("the client CA file holds no CA certificate")
        self._verified: cachetools.TTLCache[bytes, x509.Certificate] = cachetools.TTLCache(
            _CERT_CACHE_SIZE, _CERT_CACHE_TTL_S)

    def verify(self, der: bytes) -> x509.Certificate:
        """The certificate, verified; else :class:`Unauthorized` with Go's words in ``detail``."""
        fingerprint = hashlib.sha256(der).digest()
        cert = self._verified.get(fingerprint)
        if cert is None:
            cert = self._verify_signature(der)
            self._verified[fingerprint] = cert
        now = datetime.datetime.now(datetime.UTC)
        # Go's x509.CertificateInvalidError (Expired) wording.
        if now > cert.not_valid_after_utc:
            raise unauthorized(f"x509: certificate has expired or is not yet valid: current time {now:%Y-%m-%dT%H:%M:%SZ} "
                               f"is after {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}")
        if now < cert.not_valid_before_utc:
            raise unauthorized(f"x509: certificate has expired or is not yet valid: current time {now:%Y-%m-%dT%H:%M:%SZ} "
                               f"is before {cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ}")
        return cert

    def _verify_signature(self, der: bytes) -> x509.Certificate:
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            raise unauthorized("x509: malformed certificate") from None
        try:
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            eku = None
        except ValueError:
            raise unauthorized("x509: malformed certificate") from None
        if eku is not None and not ({ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
                                    & set(eku)):
            raise unauthorized("x509: certificate specifies an incompatible key usage")
        for ca in self.cas:
            if cert.issuer != ca.subject:
                continue
            try:
                cert.verify_directly_issued_by(ca)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return cert
        raise unauthorized("x509: certificate signed by unknown authority")


def bearer_token(authorization: str) -> str:
    """The token of an ``Authorization: Bearer <token>`` header value ("" for none or another scheme)."""
    return authorization[7:].strip() if authorization[:7].lower() == "bearer " else ""


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def certificate_user(cert: x509.Certificate, der: bytes) -> UserInfo | None:
    """kube's ``CommonNameUserConversion``: CN is the user (none: not authenticated), O the
    groups, the UID attribute the uid, and the certificate's fingerprint the credential id."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    name = str(cns[0].value) if cns else ""
    if not name:
        return None
    uids = cert.subject.get_attributes_for_oid(_UID_OID)
    if len(uids) > 1:
        raise unauthorized("expected at most one UID in the certificate subject")
    groups = tuple(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
    return UserInfo(name=name, uid=str(uids[0].value) if uids else "", groups=groups,
                    extra={CREDENTIAL_ID: [f"X509SHA256={hashlib.sha256(der).hexdigest()}"]})


class FrontProxy:
    """Request-header authentication (``--requestheader-client-ca-file``): an authenticating proxy
    presents its own client certificate, signed by this CA (and, if ``allowed_names`` is set,
    with one of those common names); only then are its ``X-Remote-User``, ``X-Remote-Group`` and
    ``X-Remote-Extra-<key>`` headers taken as the user (kube's ``headerrequest`` wrapped in an
    x509 verifier)."""

    def __init__(self, ca: CertificateAuthority, allowed_names: Sequence[str] = ()) -> None:
        self.ca, self.allowed_names = ca, frozenset(allowed_names)

    def authenticate(self, req: Request) -> UserInfo | None:
        if not req.client_cert:
            return None
        cert = self.ca.verify(req.client_cert)
        if self.allowed_names:
            cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            cn = str(cns[0].value) if cns else ""
            if cn not in self.allowed_names:
                raise unauthorized(f"x509: subject with cn={cn} is not in the allowed list")
        name = next((v for k, v in req.remote_headers if k == "x-remote-user" and v), "")
        if not name:
            return None
        groups = tuple(v for k, v in req.remote_headers if k == "x-remote-group")
        extra: dict[str, list[str]] = {}
        for k, v in req.remote_headers:
            if k.startswith("x-remote-extra-"):
                extra.setdefault(unquote(k.removeprefix("x-remote-extra-").lower()), []).append(v)
        return UserInfo(name=name, groups=groups, extra=extra)


class Authenticator:
    """The chain: front proxy, client certificate, bearer token (static, service-account, OIDC);
    anonymous when enabled (on every path, or only on ``anonymous_paths`` when given, as kube's
    AuthenticationConfiguration ``anonymous.conditions``)."""

    def __init__(self, tokens: TokenAuthenticator, *, client_ca: CertificateAuthority | None = None,
                 front_proxy: FrontProxy | None = None, anonymous: bool = False,
                 anonymous_paths: Sequence[str] = (), oidc: Sequence[OIDCAuthenticator] = ()) -> None:
        self.tokens, self.client_ca, self.front_proxy, self.anonymous = tokens, client_ca, front_proxy, anonymous
        self.anonymous_paths = frozenset(anonymous_paths)
        self.oidc = {a.issuer: a for a in oidc}

    def authenticate_token(self, token: str) -> UserInfo:
        """A bearer token's user: an OIDC issuer's token by its ``iss``, else static tokens and
        service-account JWTs."""
        if self.oidc:
            iss = unverified_issuer(token)
            if iss is not None and iss in self.oidc:
                return with_authenticated(self.oidc[iss].authenticate(token))
        return self.tokens.authenticate(token)  # adds system:authenticated itself

    def authenticate(self, req: Request) -> UserInfo:
        """The user ``req``'s credentials stand for; :class:`Unauthorized` if none does. As kube's
        union authenticator, a failing method does not stop the next one; without any success
        the request is 401 if a credential failed, else anonymous (when enabled) or 401."""
        failed: Unauthorized | None = None
        if self.front_proxy is not None and req.client_cert:
            try:
                user = self.front_proxy.authenticate(req)
                if user is not None:
                    return with_authenticated(user)
            except Unauthorized as e:
                failed = failed or e
        if self.client_ca is not None and req.client_cert:
            try:
                user = certificate_user(self.client_ca.verify(req.client_cert), req.client_cert)
                if user is not None:
                    return with_authenticated(user)
            except Unauthorized as e:
                failed = failed or e
        if req.token:
            return self.authenticate_token(req.token)
        if failed is not None:
            raise failed
        if self.anonymous and (not self.anonymous_paths or req.path in self.anonymous_paths):
            return UserInfo(name=ANONYMOUS, groups=(UNAUTHENTICATED,))
        raise Unauthorized("Unauthorized")


def with_authenticated(user: UserInfo) -> UserInfo:
    """kube's AuthenticatedGroupAdder: ``system:authenticated`` unless the user is anonymous or
    already in it or in ``system:unauthenticated``."""
    if user.name == ANONYMOUS or AUTHENTICATED in user.groups or UNAUTHENTICATED in user.groups:
        return user
    return msgspec.structs.replace(user, groups=(*user.groups, AUTHENTICATED))


# The resources the impersonation checks name (never stored, never served): kube's attributes.
_IMPERSONATION_DEFS = {
    "users": ResourceDef("", "v1", "User", "users", "user", False, stored=False),
    "groups": ResourceDef("", "v1", "Group", "groups", "group", False, stored=False),
    "serviceaccounts": ResourceDef("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", True,
                                   stored=False),
    "uids": ResourceDef("authentication.k8s.io", "v1", "UID", "uids", "uid", False, stored=False),
    "userextras": ResourceDef("authentication.k8s.io", "v1", "UserExtra", "userextras", "userextra", False,
                              stored=False),
}


def split_service_account(username: str) -> tuple[str, str] | None:
    """(namespace, name) of ``system:serviceaccount:<ns>:<name>``, else None (kube's SplitUsername)."""
    if not username.startswith(SA_PREFIX):
        return None
    ns, sep, name = username[len(SA_PREFIX):].partition(":")
    if not sep or not ns or not name or ":" in name:
        return None
    return ns, name


Authorize = Callable[[Request, UserInfo], None]


def impersonate(user: UserInfo, headers: tuple[tuple[str, str], ...], authorize: Authorize,
                tenant: str = ROOT_TENANT) -> UserInfo:
    """The user ``user`` acts as through ``Impersonate-*`` headers, each item authorized for
    ``user`` with the ``impersonate`` verb (the first denial is the 403); kube's
    ``WithImpersonation``. Groups, extras or a uid without a user: 400."""
    wanted = next((v for k, v in headers if k == IMPERSONATE_USER and v), "")
    groups_given = [v for k, v in headers if k == IMPERSONATE_GROUP]
    extras = [(unquote(k[len(IMPERSONATE_EXTRA):].lower()), v) for k, v in headers if k.startswith(IMPERSONATE_EXTRA)]
    uid = next((v for k, v in headers if k == IMPERSONATE_UID and v), "")
    # (resource, namespace, name, subresource) in kube's order: user, groups, extras, uid.
    checks: list[tuple[str, str, str, str]] = []
    groups: list[str] = []
    if wanted:
        sa = split_service_account(wanted)
        if sa is not None:
            checks.append(("serviceaccounts", sa[0], sa[1], ""))
            if not groups_given:
                groups = ["system:serviceaccounts", f"system:serviceaccounts:{sa[0]}"]
        else:
            checks.append(("users", "", wanted, ""))
    checks += [("groups", "", g, "") for g in groups_given]
    checks += [("userextras", "", v, k) for k, v in extras]
    if uid:
        checks.append(("uids", "", uid, ""))
    if not wanted:
        items = [f"{k.removeprefix('impersonate-')}={v!r}" for k, v in headers]
        raise BadRequest(f"requested {', '.join(items)} without impersonating a user")
    for resource, namespace, name, sub in checks:
        authorize(Request(verb="impersonate", rdef=_IMPERSONATION_DEFS[resource], tenant=tenant,
                          namespace=namespace, name=name, subresource=sub), user)
    groups += groups_given
    if wanted != ANONYMOUS:
        if AUTHENTICATED not in groups and UNAUTHENTICATED not in groups:
            groups.append(AUTHENTICATED)
    elif UNAUTHENTICATED not in groups:
        groups.append(UNAUTHENTICATED)
    extra: dict[str, list[str]] = {}
    for k, v in extras:
        extra.setdefault(k, []).append(v)
    return UserInfo(name=wanted, uid=uid, groups=tuple(groups), extra=extra, tenant=tenant,
                    impersonator=user.name)


def authenticate_request(authenticator: Authenticator, req: Request, authorize: Authorize) -> Request:
    """Authentication from the request's headers and client certificate alone, then any
    Impersonate-* headers (checked with ``authorize`` in the request's tenant): ``req`` with its
    user, or Unauthorized / Forbidden / BadRequest. The tenant is the gateway's (from the path):
    identities are global, permissions per tenant."""
    user = authenticator.authenticate(req)
    if req.impersonate:
        user = impersonate(user, req.impersonate, authorize, tenant=req.tenant)
    return msgspec.structs.replace(req, user=user)

