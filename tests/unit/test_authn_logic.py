"""The authentication chain's decisions (actors/_authn.py): kube's union order, the authenticated
group, anonymous, and impersonation's attributes and semantics (endpoints/filters/impersonation.go)."""

from __future__ import annotations

import pytest

from actors import Forbidden, Request, TokenAuthenticator, UserInfo, authorize
from actors._authn import Authenticator, impersonate, with_authenticated
from kinds._errors import BadRequest, Unauthorized

MASTER = UserInfo(name="root", groups=("system:masters", "system:authenticated"))
PLAIN = UserInfo(name="bob", groups=("system:authenticated",))


def _recording(allow: set[str] | None = None):  # type: ignore[no-untyped-def]
    seen: list[tuple[str, str, str, str, str, str]] = []

    def check(req: Request, user: UserInfo) -> None:
        assert req.rdef is not None
        seen.append((req.verb, req.rdef.group, req.rdef.plural, req.namespace, req.name, req.subresource))
        if allow is not None and req.rdef.plural not in allow:
            authorize(req, user)  # the interim policy's Forbidden, in kube's words

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
                            extra={"scopes": ["view"], "acme.com/project": ["p1"]})


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
    # With today's authorizer system:masters may impersonate anyone, others no one.
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
