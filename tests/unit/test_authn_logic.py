"""The authentication chain's decisions (actors/_authn.py): kube's union order, the authenticated
group, anonymous, and impersonation's attributes and semantics (endpoints/filters/impersonation.go)."""

from __future__ import annotations

import pytest

from actors import Forbidden, Request, TokenAuthenticator, UserInfo, attributes_of, forbidden
from actors._authn import Authenticator, impersonate, with_authenticated
from kinds._errors import BadRequest, Unauthorized


def authorize(req: Request, user: UserInfo) -> None:
    """An authorizer allowing system:masters only, refusing in kube's words (the RBAC authorizer's
    ``authorize_request`` has this signature)."""
    if "system:masters" not in user.groups:
        raise forbidden(user, attributes_of(req))


MASTER = UserInfo(name="root", groups=("system:masters", "system:authenticated"))
PLAIN = UserInfo(name="bob", groups=("system:authenticated",))


def _recording(allow: set[str] | None = None):  # type: ignore[no-untyped-def]
    seen: list[tuple[str, str, str, str, str, str]] = []

    def check(req: Request, user: UserInfo) -> None:
        assert req.rdef is not None
        seen.append((req.verb, req.rdef.group, req.rdef.plural, req.namespace, req.name, req.subresource))
        if allow is not None and req.rdef.plural not in allow:
            authorize(req, user)  # Forbidden, in kube's words

    return seen, check


def test_every_item_is_authorized_with_kube_attributes_in_kube_order() -> None:
    seen, check = _recording()
    headers = (("impersonate-user", "alice"), ("impersonate-group", "g1"), ("impersonate-group", "g2"),
               ("impersonate-extra-scopes", "view"), ("impersonate-extra-acme.com%2fproject", "p1"),
               ("impersonate-uid", "u-1"))
    user = impersonate(PLAIN, headers, check)
    assert seen == [("impersonate", "", "users", "", "alice", ""),
                    ("impersonate", "", "groups", "", "g1", ""),
                    ("impersonate", "", "groups", "", "g2", ""),
                    ("impersonate", "authentication.k8s.io", "userextras", "", "view", "scopes"),
                    ("impersonate", "authentication.k8s.io", "userextras", "", "p1", "acme.com/project"),
                    ("impersonate", "authentication.k8s.io", "uids", "", "u-1", "")]
    assert user == UserInfo(name="alice", uid="u-1", groups=("g1", "g2", "system:authenticated"),
                            extra={"scopes": ["view"], "acme.com/project": ["p1"]}, impersonator="bob")


def test_service_accounts_get_their_groups_unless_groups_are_given() -> None:
    seen, check = _recording()
    user = impersonate(PLAIN, (("impersonate-user", "system:serviceaccount:ns1:bot"),), check)
    assert seen == [("impersonate", "", "serviceaccounts", "ns1", "bot", "")]
    assert user.groups == ("system:serviceaccounts", "system:serviceaccounts:ns1", "system:authenticated")
    user = impersonate(PLAIN, (("impersonate-user", "system:serviceaccount:ns1:bot"),
                               ("impersonate-group", "only")), check)
    assert user.groups == ("only", "system:authenticated")
    # Not a service-account name (an extra colon): a user.
    seen.clear()
    impersonate(PLAIN, (("impersonate-user", "system:serviceaccount:ns1:a:b"),), check)
    assert seen[0][2] == "users"


def test_anonymous_and_unauthenticated_groups() -> None:
    _, check = _recording()
    assert impersonate(PLAIN, (("impersonate-user", "system:anonymous"),), check).groups == (
        "system:unauthenticated",)
    assert impersonate(PLAIN, (("impersonate-user", "x"), ("impersonate-group", "system:unauthenticated")),
                       check).groups == ("system:unauthenticated",)
    assert impersonate(PLAIN, (("impersonate-user", "x"), ("impersonate-group", "system:authenticated")),
                       check).groups == ("system:authenticated",)


def test_the_first_denied_item_is_the_answer() -> None:
    _, check = _recording(allow={"users"})
    with pytest.raises(Forbidden) as e:
        impersonate(PLAIN, (("impersonate-user", "alice"), ("impersonate-group", "g1"),
                            ("impersonate-uid", "u")), check)
    assert e.value.message == ('groups "g1" is forbidden: User "bob" cannot impersonate resource "groups" in API '
                               'group "" at the cluster scope')
    _, check = _recording(allow={"users", "groups"})
    with pytest.raises(Forbidden) as e:
        impersonate(PLAIN, (("impersonate-user", "alice"), ("impersonate-extra-scopes", "view")), check)
    assert e.value.message == ('userextras.authentication.k8s.io "view" is forbidden: User "bob" cannot impersonate '
                               'resource "userextras/scopes" in API group "authentication.k8s.io" at the cluster '
                               'scope')
    with pytest.raises(Forbidden) as e:
        impersonate(PLAIN, (("impersonate-user", "alice"), ("impersonate-uid", "u-9")), check)
    assert e.value.message.startswith('uids.authentication.k8s.io "u-9" is forbidden: User "bob" cannot impersonate')
    # system:masters may impersonate anyone, others (here) no one.
    assert impersonate(MASTER, (("impersonate-user", "alice"),), authorize).name == "alice"
    with pytest.raises(Forbidden):
        impersonate(PLAIN, (("impersonate-user", "alice"),), authorize)


def test_items_without_a_user_are_a_bad_request() -> None:
    _, check = _recording()
    for h in (("impersonate-group", "g"), ("impersonate-uid", "u"), ("impersonate-extra-k", "v")):
        with pytest.raises(BadRequest, match="without impersonating a user"):
            impersonate(MASTER, (h,), check)


def test_the_chain_order_and_the_authenticated_group() -> None:
    tokens = TokenAuthenticator({"t": UserInfo(name="bob", groups=("qa",))})
    chain = Authenticator(tokens)
    assert chain.authenticate(Request(verb="get", token="t")).groups == ("qa", "system:authenticated")
    with pytest.raises(Unauthorized):
        chain.authenticate(Request(verb="get"))
    anon = Authenticator(tokens, anonymous=True)
    assert anon.authenticate(Request(verb="get")) == UserInfo(name="system:anonymous",
                                                             groups=("system:unauthenticated",))
    with pytest.raises(Unauthorized):
        anon.authenticate(Request(verb="get", token="wrong"))
    assert with_authenticated(UserInfo(name="system:anonymous")).groups == ()
    assert with_authenticated(UserInfo(name="x", groups=("system:unauthenticated",))).groups == (
        "system:unauthenticated",)


def _ca(tmp_path, name):  # type: ignore[no-untyped-def]
    from gateway._pki import ensure_pki

    ensure_pki(tmp_path / name)
    return tmp_path / name


def _leaf(ca_dir, subject, eku=None, days=1):  # type: ignore[no-untyped-def]
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ca_key = serialization.load_pem_private_key((ca_dir / "pki" / "ca.key").read_bytes(), None)
    ca = x509.load_pem_x509_certificate((ca_dir / "pki" / "ca.crt").read_bytes())
    now = datetime.datetime.now(datetime.UTC)
    b = (x509.CertificateBuilder().subject_name(x509.Name(subject)).issuer_name(ca.subject)
         .public_key(ec.generate_private_key(ec.SECP256R1()).public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=days)))
    if eku is not None:
        b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return b.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)  # type: ignore[arg-type]


def test_client_certificates_are_verified_as_go_does(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from actors import CertificateAuthority
    from actors._authn import certificate_user

    mine, theirs = _ca(tmp_path, "mine"), _ca(tmp_path, "theirs")  # both CAs are named CN=jetkube-ca
    leaf_pem = (mine / "pki" / "apiserver.crt").read_bytes()
    ca = CertificateAuthority(leaf_pem + (mine / "pki" / "ca.crt").read_bytes())  # non-CA entries are ignored
    assert len(ca.cas) == 1
    with pytest.raises(ValueError):
        CertificateAuthority(leaf_pem)
    cn = x509.NameAttribute(NameOID.COMMON_NAME, "alice")
    uid = x509.NameAttribute(x509.ObjectIdentifier("0.9.2342.19200300.100.1.1"), "u-1")
    org = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dev")
    der = _leaf(mine, [org, cn, uid])  # no EKU: unrestricted, as Go
    user = certificate_user(ca.verify(der), der)
    assert user is not None and (user.name, user.uid, user.groups) == ("alice", "u-1", ("dev",))
    for bad, detail in ((_leaf(theirs, [cn]), "x509: certificate signed by unknown authority"),
                        (_leaf(mine, [cn], eku=[ExtendedKeyUsageOID.SERVER_AUTH]),
                         "x509: certificate specifies an incompatible key usage"),
                        (_leaf(mine, [cn], days=-0.5), "x509: certificate has expired or is not yet valid: "),
                        (b"garbage", "x509: malformed certificate")):
        for _ in range(2):  # the second time from the cache (failures are not cached)
            with pytest.raises(Unauthorized) as e:
                ca.verify(bad)
            assert e.value.detail.startswith(detail)  # type: ignore[attr-defined]
    two_uids = _leaf(mine, [cn, uid, uid])
    with pytest.raises(Unauthorized):
        certificate_user(ca.verify(two_uids), two_uids)
    nameless = _leaf(mine, [org])
    assert certificate_user(ca.verify(nameless), nameless) is None  # no CN: not authenticated, not an error
