"""Authentication as kube-apiserver does it (issue 8): x509 client certificates on the HTTPS port
beside bearer tokens, anonymous requests, impersonation, TokenReview, front-proxy headers, and the
modes of the files that hold secrets. Real nats-server, two gateways where it matters, real kubectl."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import ssl
import stat
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway._cli import certs_user
from gateway._pki import ensure_pki
from gateway._server import Running
from tests.conftest import StartServer

pytestmark = pytest.mark.integration

WHOAMI = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


def _tls(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def _https(running: Running, ca: Path, cert: Path | None = None, key: Path | None = None,
           **kw: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=running.https_url, verify=_tls(ca, cert, key), timeout=30, **kw)


def _sign(ca_dir: Path, out: Path, cn: str, *, orgs: tuple[str, ...] = (), days: float = 1,
          not_before_days: float = -1, eku: Any = ExtendedKeyUsageOID.CLIENT_AUTH) -> tuple[Path, Path]:
    """A client certificate signed by the CA in ``ca_dir/pki`` with any validity window or usage."""
    ca_key = serialization.load_pem_private_key((ca_dir / "pki" / "ca.key").read_bytes(), None)
    ca = x509.load_pem_x509_certificate((ca_dir / "pki" / "ca.crt").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([*(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs),
                                     x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now + datetime.timedelta(days=not_before_days))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    out.mkdir(parents=True, exist_ok=True)
    crt, kp = out / f"{cn}.crt", out / f"{cn}.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kp.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    return crt, kp


def _fingerprint(cert: Path) -> str:
    der = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(serialization.Encoding.DER)
    return "X509SHA256=" + hashlib.sha256(der).hexdigest()


async def test_client_certificates_and_tokens_on_two_gateways(start_server: StartServer, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    tokens = tmp_path / "tokens.csv"
    tokens.write_text('bob-token,bob,bob-uid,"qa"\n')
    a = await start_server(data_dir=str(shared), token_file=str(tokens))
    b = await start_server(data_dir=str(shared), token_file=str(tokens))
    ca = shared / "pki" / "ca.crt"
    alice = certs_user(shared, "alice", groups=["dev", "ops"], days=30, out_dir=tmp_path / "certs")
    other = tmp_path / "other"
    ensure_pki(other)  # another CA
    foreign = _sign(other, tmp_path / "foreign", "mallory", orgs=("system:masters",))
    expired = _sign(shared, tmp_path / "expired", "old", orgs=("system:masters",), days=-1, not_before_days=-3)
    future = _sign(shared, tmp_path / "future", "soon", orgs=("system:masters",), days=3, not_before_days=1)
    server_only = _sign(shared, tmp_path / "srv", "srv", orgs=("system:masters",),
                        eku=ExtendedKeyUsageOID.SERVER_AUTH)
    admin = (shared / "pki" / "admin.crt", shared / "pki" / "admin.key")
    with trio.fail_after(60):
        for g in (a, b):
            async with _https(g, ca, *alice) as c:
                r = await c.post(WHOAMI, json={})
                assert r.status_code == 201, r.text
                assert r.json()["status"]["userInfo"] == {
                    "username": "alice", "uid": "", "groups": ["dev", "ops", "system:authenticated"],
                    "extra": {"authentication.kubernetes.io/credential-id": [_fingerprint(alice[0])]}}
                r = await c.get(CONFIGMAPS)
                assert r.status_code == 403
                assert r.json()["message"] == ('configmaps is forbidden: User "alice" cannot list resource '
                                               '"configmaps" in API group "" in the namespace "default"')
            async with _https(g, ca, *alice, http2=True) as c:  # HTTP/2 (ALPN h2) carries it too
                r = await c.post(WHOAMI, json={})
                assert r.http_version == "HTTP/2" and r.json()["status"]["userInfo"]["username"] == "alice"
            # The same connection may carry a certificate and a token: the certificate is tried first.
            async with _https(g, ca, *alice, headers={"Authorization": "Bearer bob-token"}) as c:
                assert (await c.post(WHOAMI, json={})).json()["status"]["userInfo"]["username"] == "alice"
            async with _https(g, ca, headers={"Authorization": "Bearer bob-token"}) as c:
                who = (await c.post(WHOAMI, json={})).json()["status"]["userInfo"]
                assert who == {"username": "bob", "uid": "bob-uid", "groups": ["qa", "system:authenticated"]}
        # The generated admin certificate (system:masters): writes on one gateway, reads on the other.
        async with _https(a, ca, *admin) as ca_a, _https(b, ca, *admin) as ca_b:
            for i in range(20):
                r = await ca_a.post(CONFIGMAPS, json={"metadata": {"name": f"cm-{i}"}, "data": {"i": str(i)}})
                assert r.status_code == 201, r.text
            r = await ca_b.get(CONFIGMAPS, params={"resourceVersion": r.json()["metadata"]["resourceVersion"],
                                                   "resourceVersionMatch": "NotOlderThan"})
            assert r.status_code == 200, r.text
            assert sum(i["metadata"]["name"].startswith("cm-") for i in r.json()["items"]) == 20
            who = (await ca_b.post(WHOAMI, json={})).json()["status"]["userInfo"]
            assert who["username"] == "jetkube-admin"
            assert who["groups"] == ["system:masters", "system:authenticated"]
        # Certificates the client CA does not vouch for: 401 (not a failed handshake), on both
        # gateways; a valid token on the same connection still authenticates (kube's union).
        for g in (a, b):
            for bad in (foreign, expired, future, server_only):
                async with _https(g, ca, *bad) as c:
                    r = await c.get(CONFIGMAPS)
                    assert r.status_code == 401, (bad, r.text)
                    assert r.json()["message"] == "Unauthorized"
                async with _https(g, ca, *bad, headers={"Authorization": "Bearer bob-token"}) as c:
                    r = await c.post(WHOAMI, json={})
                    assert r.json()["status"]["userInfo"]["username"] == "bob"
            async with _https(g, ca) as c:
                assert (await c.get(CONFIGMAPS)).status_code == 401


async def test_client_ca_file_replaces_the_generated_ca(start_server: StartServer, tmp_path: Path) -> None:
    other = tmp_path / "other"
    ensure_pki(other)
    s = await start_server(data_dir=str(tmp_path / "jk"), client_ca_file=str(other / "pki" / "ca.crt"))
    ca = tmp_path / "jk" / "pki" / "ca.crt"
    theirs = _sign(other, tmp_path / "theirs", "carol", orgs=("team",))
    ours = _sign(tmp_path / "jk", tmp_path / "ours", "dave", orgs=("system:masters",))
    with trio.fail_after(30):
        async with _https(s, ca, *theirs) as c:
            r = await c.post(WHOAMI, json={})
            assert r.status_code == 201, r.text
            assert r.json()["status"]["userInfo"]["username"] == "carol"
        async with _https(s, ca, *ours) as c:
            assert (await c.post(WHOAMI, json={})).status_code == 401


def _kubectl(kubeconfig: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), *args], check=False, capture_output=True,
                          text=True,
                          timeout=60, env={**os.environ, "HOME": str(home)})


async def test_kubectl_uses_the_generated_client_certificate(server: Running, tmp_path: Path) -> None:
    out = await trio.to_thread.run_sync(lambda: _kubectl(server.kubeconfig, tmp_path, "--context", "jetkube-cert",
                                                         "auth", "whoami", "-o", "json"))
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)["status"]["userInfo"]
    assert info["username"] == "jetkube-admin"
    assert info["groups"] == ["system:masters", "system:authenticated"]
    assert info["extra"]["authentication.kubernetes.io/credential-id"][0].startswith("X509SHA256=")
    out = await trio.to_thread.run_sync(lambda: _kubectl(server.kubeconfig, tmp_path, "--context", "jetkube-cert",
                                                         "get", "namespaces", "-o", "name"))
    assert out.returncode == 0, out.stderr
    assert "namespace/default" in out.stdout.split()
    # A minted certificate, and one from another CA, through kubectl's own flags.
    data = Path(server.kubeconfig).parent
    mine = certs_user(data, "gina", groups=["dev"], out_dir=tmp_path / "gina")
    other = tmp_path / "other"
    ensure_pki(other)
    theirs = _sign(other, tmp_path / "theirs", "mallory", orgs=("system:masters",))
    import yaml

    config = yaml.safe_load(Path(server.kubeconfig).read_text())
    for (crt, key), expect in ((mine, "gina"), (theirs, None)):
        kc = tmp_path / f"kubeconfig-{crt.stem}"
        kc.write_text(yaml.safe_dump({**config, "current-context": "c", "contexts": [
            {"name": "c", "context": {"cluster": "jetkube", "user": "u"}}], "users": [
            {"name": "u", "user": {"client-certificate": str(crt), "client-key": str(key)}}]}))
        out = await trio.to_thread.run_sync(lambda kc=kc: _kubectl(kc, tmp_path, "auth", "whoami"))  # type: ignore[misc]
        if expect is None:
            assert out.returncode == 1
            assert "Unauthorized" in out.stderr
        else:
            assert out.returncode == 0, out.stderr
            rows = _whoami_rows(out.stdout)
            assert rows["Username"] == expect and rows["Groups"] == "[dev system:authenticated]"


async def test_files_holding_secrets_are_private(start_server: StartServer, tmp_path: Path) -> None:
    data = tmp_path / "new" / "data"
    (tmp_path / "kc").write_text("old")
    (tmp_path / "kc").chmod(0o644)
    running = await start_server(data_dir=str(data), kubeconfig=str(tmp_path / "kc"))
    pki = ensure_pki(data)
    for private in (running.kubeconfig, data / "pki" / "sa.key"):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "pki").stat().st_mode) == 0o700
    for key in (data / "pki" / "ca.key", pki.key, pki.tokens_file, pki.admin_key):
        assert key is not None and stat.S_IMODE(key.stat().st_mode) == 0o600, key
    crt, key = certs_user(data, "erin", groups=["g"], out_dir=tmp_path / "out")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    assert cert.subject.rfc4514_string() == "CN=erin,O=g"
    assert cert.not_valid_after_utc - cert.not_valid_before_utc < datetime.timedelta(days=366)


async def test_anonymous_requests_only_with_the_flag(start_server: StartServer) -> None:
    off = await start_server()
    on = await start_server(anonymous_auth=True)
    with trio.fail_after(30):
        for g in (off, on):
            assert g.http_url is not None
        async with httpx.AsyncClient(base_url=off.http_url or "", timeout=30) as c:
            for path in ("/version", "/api", CONFIGMAPS):
                r = await c.get(path)
                assert r.status_code == 401, path
                assert r.json()["message"] == "Unauthorized"
        async with httpx.AsyncClient(base_url=on.http_url or "", timeout=30) as c:
            assert (await c.get("/version")).status_code == 200
            r = await c.get(CONFIGMAPS)
            assert r.status_code == 403
            assert r.json()["message"] == ('configmaps is forbidden: User "system:anonymous" cannot list resource '
                                           '"configmaps" in API group "" in the namespace "default"')
            # A bad credential is not anonymous (kube's union.NewFailOnError).
            for token in ("nope", "a.b.c"):
                r = await c.get("/version", headers={"Authorization": f"Bearer {token}"})
                assert r.status_code == 401
        # Everyone authenticated is in system:authenticated (here: the admin token).
        async with httpx.AsyncClient(base_url=on.http_url or "", timeout=30,
                                     headers={"Authorization": f"Bearer {on.admin_token}"}) as c:
            who = (await c.post(WHOAMI, json={})).json()["status"]["userInfo"]
            assert who["groups"] == ["system:masters", "system:authenticated"]


def _whoami_rows(text: str) -> dict[str, str]:
    """``kubectl auth whoami``'s table: attribute -> value."""
    rows = {}
    for line in text.splitlines()[1:]:
        key, _, value = line.partition("   ")
        rows[key.strip()] = value.strip()
    return rows


async def test_kubectl_as_and_whoami_for_each_kind_of_identity(start_server: StartServer, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text('bob-token,bob,bob-uid,"qa,dev"\n')
    s = await start_server(token_file=str(tokens))
    kc = s.kubeconfig

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return _kubectl(kc, tmp_path, *args)

    async def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
        return await trio.to_thread.run_sync(lambda: run(*args))

    with trio.fail_after(120):
        # Impersonation by system:masters: alice may not list configmaps (kube's Forbidden) ...
        out = await kubectl("--as=alice", "get", "configmaps")
        assert out.returncode == 1
        assert out.stderr.strip() == ('Error from server (Forbidden): configmaps is forbidden: User "alice" cannot '
                                      'list resource "configmaps" in API group "" in the namespace "default"')
        # ... unless she is impersonated into system:masters too.
        assert (await kubectl("--as=alice", "--as-group=system:masters", "create", "configmap", "by-alice")
                ).returncode == 0
        assert (await kubectl("get", "configmap", "by-alice")).returncode == 0
        rows = _whoami_rows((await kubectl("auth", "whoami", "--as=alice", "--as-group=g1", "--as-group=g2",
                                           "--as-uid=u-1")).stdout)
        assert rows == {"Username": "alice", "UID": "u-1", "Groups": "[g1 g2 system:authenticated]"}
        rows = _whoami_rows((await kubectl("auth", "whoami", "--as=system:serviceaccount:ns1:bot")).stdout)
        assert rows["Username"] == "system:serviceaccount:ns1:bot"
        assert rows["Groups"] == "[system:serviceaccounts system:serviceaccounts:ns1 system:authenticated]"
        # A plain user may not impersonate: kube's message for the users resource.
        out = await kubectl("--token=bob-token", "--as=alice", "get", "configmaps")
        assert out.returncode == 1
        assert out.stderr.strip() == ('Error from server (Forbidden): users "alice" is forbidden: User "bob" cannot '
                                      'impersonate resource "users" in API group "" at the cluster scope')
        # whoami: a token user, a certificate user, a service-account token.
        rows = _whoami_rows((await kubectl("--token=bob-token", "auth", "whoami")).stdout)
        assert rows["Username"] == "bob" and rows["UID"] == "bob-uid"
        assert rows["Groups"] == "[qa dev system:authenticated]"
        rows = _whoami_rows((await kubectl("--context=jetkube-cert", "auth", "whoami")).stdout)
        assert rows["Username"] == "jetkube-admin"
        assert rows["Groups"] == "[system:masters system:authenticated]"
        fp = _fingerprint(Path(s.kubeconfig).parent / "pki" / "admin.crt")
        assert rows["Extra: authentication.kubernetes.io/credential-id"] == f"[{fp}]"
        assert (await kubectl("create", "serviceaccount", "bot")).returncode == 0
        token = (await kubectl("create", "token", "bot")).stdout.strip()
        rows = _whoami_rows((await kubectl(f"--token={token}", "auth", "whoami")).stdout)
        assert rows["Username"] == "system:serviceaccount:default:bot"
        assert rows["Groups"] == "[system:serviceaccounts system:serviceaccounts:default system:authenticated]"
        assert rows["UID"]


TOKENREVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
ISSUER = "https://kubernetes.default.svc.cluster.local"


def _review(token: str, audiences: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"token": token}
    if audiences is not None:
        spec["audiences"] = audiences
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}


async def test_token_review_on_two_gateways(start_server: StartServer, tmp_path: Path) -> None:
    import time

    import jwt as pyjwt

    from actors import SigningKey

    tokens = tmp_path / "tokens.csv"
    tokens.write_text('bob-token,bob,bob-uid,"qa"\n')
    shared = tmp_path / "shared"
    a = await start_server(data_dir=str(shared), token_file=str(tokens))
    b = await start_server(data_dir=str(shared), token_file=str(tokens))
    key = SigningKey((shared / "pki" / "sa.key").read_bytes())
    other = ec.generate_private_key(ec.SECP256R1())
    admin = {"Authorization": f"Bearer {a.admin_token}"}
    async with httpx.AsyncClient(base_url=a.http_url or "", headers=admin, timeout=30) as ca_, \
            httpx.AsyncClient(base_url=b.http_url or "", headers=admin, timeout=30) as cb:
        with trio.fail_after(60):
            r = await ca_.post("/api/v1/namespaces/default/serviceaccounts", json={"metadata": {"name": "bot"}})
            assert r.status_code == 201, r.text
            uid = r.json()["metadata"]["uid"]
            r = await ca_.post("/api/v1/namespaces/default/serviceaccounts/bot/token", json={})
            sa_token = r.json()["status"]["token"]
            jti = pyjwt.decode(sa_token, options={"verify_signature": False})["jti"]
            assert (await cb.get("/api/v1/namespaces/default/serviceaccounts/bot")).status_code == 200
            now = int(time.time())
            claims = {"iss": ISSUER, "sub": "system:serviceaccount:default:bot", "aud": [ISSUER], "iat": now,
                      "nbf": now, "exp": now + 3600,
                      "kubernetes.io": {"namespace": "default", "serviceaccount": {"name": "bot", "uid": uid}}}
            forged = pyjwt.encode(claims, other, algorithm="ES256", headers={"kid": key.kid})
            expired = key.sign({**claims, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600})
            for c in (ca_, cb):
                r = await c.post(TOKENREVIEWS, json=_review(sa_token))
                assert r.status_code == 201, r.text
                body = r.json()
                assert body["kind"] == "TokenReview" and body["apiVersion"] == "authentication.k8s.io/v1"
                assert body["status"] == {
                    "authenticated": True, "audiences": [ISSUER],
                    "user": {"username": "system:serviceaccount:default:bot", "uid": uid,
                             "groups": ["system:serviceaccounts", "system:serviceaccounts:default",
                                        "system:authenticated"],
                             "extra": {"authentication.kubernetes.io/credential-id": [f"JTI={jti}"]}}}
                r = await c.post(TOKENREVIEWS, json=_review("bob-token"))
                assert r.json()["status"] == {"authenticated": True, "audiences": [ISSUER], "user": {
                    "username": "bob", "uid": "bob-uid", "groups": ["qa", "system:authenticated"]}}
                for token, error in ((forged, "go-jose/go-jose: error in cryptographic primitive"),
                                     (expired, "service account token has expired"),
                                     ("nope", "invalid bearer token")):
                    r = await c.post(TOKENREVIEWS, json=_review(token))
                    assert r.status_code == 201, r.text
                    assert r.json()["status"] == {"user": {}, "error": error}, token
                r = await c.post(TOKENREVIEWS, json=_review(sa_token, ["other"]))
                assert r.json()["status"] == {
                    "user": {}, "error": f'token audiences ["{ISSUER}"] is invalid for the target audiences ["other"]'}
                r = await c.post(TOKENREVIEWS, json=_review(""))
                assert r.status_code == 400
                assert r.json()["message"] == "token is required for TokenReview in authentication"
            # Only callers allowed to create tokenreviews (today: system:masters).
            r = await ca_.post(TOKENREVIEWS, json=_review(sa_token), headers={"Authorization": "Bearer bob-token"})
            assert r.status_code == 403
            assert r.json()["message"] == (
                'tokenreviews.authentication.k8s.io is forbidden: User "bob" cannot create resource "tokenreviews" '
                'in API group "authentication.k8s.io" at the cluster scope')
            # A deleted service account: its token no longer reviews as authenticated.
            assert (await ca_.delete("/api/v1/namespaces/default/serviceaccounts/bot")).status_code == 200
            for c in (ca_, cb):
                assert (await c.get("/api/v1/namespaces/default/serviceaccounts/bot")).status_code == 404
                r = await c.post(TOKENREVIEWS, json=_review(sa_token))
                assert r.json()["status"] == {"user": {}, "error": "service account token has been invalidated"}
    # kubectl creates one too.
    review = tmp_path / "review.json"
    review.write_text(json.dumps(_review("bob-token")))
    out = await trio.to_thread.run_sync(lambda: _kubectl(a.kubeconfig, tmp_path, "create", "-f", str(review),
                                                         "-o", "json"))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"]["user"]["username"] == "bob"


async def test_front_proxy_headers_only_from_the_proxy_certificate(start_server: StartServer,
                                                                   tmp_path: Path) -> None:
    proxy_ca = tmp_path / "proxy-ca"
    ensure_pki(proxy_ca)
    s = await start_server(data_dir=str(tmp_path / "jk"),
                           requestheader_client_ca_file=str(proxy_ca / "pki" / "ca.crt"),
                           requestheader_allowed_names=("front-proxy",))
    ca = tmp_path / "jk" / "pki" / "ca.crt"
    proxy = _sign(proxy_ca, tmp_path / "p", "front-proxy")
    wrong_name = _sign(proxy_ca, tmp_path / "w", "not-the-proxy")
    alice = certs_user(tmp_path / "jk", "alice", groups=["dev"], out_dir=tmp_path / "a")
    remote = [("X-Remote-User", "carol"), ("X-Remote-Group", "g1"), ("X-Remote-Group", "g2"),
              ("X-Remote-Extra-Scopes", "view"), ("X-Remote-Extra-Acme.com%2fProject", "p1")]
    with trio.fail_after(60):
        async with _https(s, ca, *proxy) as c:
            r = await c.post(WHOAMI, json={}, headers=remote)
            assert r.status_code == 201, r.text
            assert r.json()["status"]["userInfo"] == {
                "username": "carol", "uid": "", "groups": ["g1", "g2", "system:authenticated"],
                "extra": {"scopes": ["view"], "acme.com/project": ["p1"]}}
            r = await c.get(CONFIGMAPS, headers=remote)
            assert r.status_code == 403
            assert 'User "carol" cannot list' in r.json()["message"]
            # The proxy's certificate alone is no user (it is not signed by the client CA).
            assert (await c.get(CONFIGMAPS)).status_code == 401
        # A certificate of the proxy CA with a name not allowed: the headers do not count.
        async with _https(s, ca, *wrong_name) as c:
            assert (await c.post(WHOAMI, json={}, headers=remote)).status_code == 401
        # A client certificate of the client CA: that user, whatever the headers say.
        async with _https(s, ca, *alice) as c:
            r = await c.post(WHOAMI, json={}, headers=remote)
            assert r.json()["status"]["userInfo"]["username"] == "alice"
        # Without a certificate the headers are ignored: the token's user, or 401.
        async with _https(s, ca, headers={"Authorization": f"Bearer {s.admin_token}"}) as c:
            r = await c.post(WHOAMI, json={}, headers=remote)
            assert r.json()["status"]["userInfo"]["username"] == "admin"
        async with _https(s, ca) as c:
            assert (await c.post(WHOAMI, json={}, headers=remote)).status_code == 401
        assert s.http_url is not None
        async with httpx.AsyncClient(base_url=s.http_url, timeout=30) as c:
            assert (await c.post(WHOAMI, json={}, headers=remote)).status_code == 401


async def test_service_account_tokens_as_kube_issues_them(start_server: StartServer, tmp_path: Path) -> None:
    import jwt as pyjwt

    s = await start_server()
    ns = "/api/v1/namespaces/default"
    async with httpx.AsyncClient(base_url=s.http_url or "", timeout=30,
                                 headers={"Authorization": f"Bearer {s.admin_token}"}) as api:
        with trio.fail_after(60):
            sa_uid = (await api.post(f"{ns}/serviceaccounts", json={"metadata": {"name": "bot"}})).json()[
                "metadata"]["uid"]
            secret_uid = (await api.post(f"{ns}/secrets", json={"metadata": {"name": "s1"}})).json()[
                "metadata"]["uid"]
            r = await api.post(f"{ns}/serviceaccounts/bot/token", json={"spec": {
                "audiences": ["vault", ISSUER], "expirationSeconds": 1200,
                "boundObjectRef": {"kind": "Secret", "apiVersion": "v1", "name": "s1", "uid": secret_uid}}})
            assert r.status_code == 201, r.text
            token = r.json()["status"]["token"]
            # A third party verifies it with PyJWT alone, from the discovery documents.
            conf = (await api.get("/.well-known/openid-configuration")).json()
            assert conf["issuer"] == ISSUER
            assert conf["jwks_uri"] == f"{s.https_url}/openid/v1/jwks"
            assert conf["id_token_signing_alg_values_supported"] == ["ES256"]
            r = await api.get("/openid/v1/jwks")
            assert r.headers["content-type"] == "application/jwk-set+json"
            keys = pyjwt.PyJWKSet.from_dict(r.json())
            kid = pyjwt.get_unverified_header(token)["kid"]
            claims = pyjwt.decode(token, keys[kid].key, algorithms=conf["id_token_signing_alg_values_supported"],
                                  audience="vault", issuer=conf["issuer"],
                                  options={"require": ["exp", "iat", "nbf", "jti", "sub"]})
            assert claims["sub"] == "system:serviceaccount:default:bot"
            assert claims["aud"] == ["vault", ISSUER]
            assert claims["exp"] - claims["iat"] == 1200 and claims["nbf"] == claims["iat"]
            assert claims["kubernetes.io"] == {"namespace": "default",
                                               "serviceaccount": {"name": "bot", "uid": sa_uid},
                                               "secret": {"name": "s1", "uid": secret_uid}}
            who = (await api.post(WHOAMI, json={}, headers={"Authorization": f"Bearer {token}"})).json()
            assert who["status"]["userInfo"]["extra"] == {
                "authentication.kubernetes.io/credential-id": [f"JTI={claims['jti']}"]}
            # The bound object must still exist with its uid: deleting (or re-creating) it revokes.
            assert (await api.delete(f"{ns}/secrets/s1")).status_code == 200
            assert (await api.post(f"{ns}/secrets", json={"metadata": {"name": "s1"}})).status_code == 201
            assert (await api.get("/version", headers={"Authorization": f"Bearer {token}"})).status_code == 401
            # Binding errors, in kube's words.
            for ref, code, message in (
                    ({"kind": "Secret", "apiVersion": "v1", "name": "s1", "uid": secret_uid}, 409,
                     (f'Operation cannot be fulfilled on Secret "s1": the UID in the bound object reference '
                     f'({secret_uid}) does not match the UID in record. The object might have been deleted and then '
                     f'recreated')),
                    ({"kind": "Secret", "apiVersion": "v1", "name": "none"}, 404, 'secrets "none" not found'),
                    ({"kind": "Pod", "apiVersion": "v1", "name": "p"}, 404, 'pods "p" not found'),
                    ({"kind": "Deployment", "apiVersion": "apps/v1", "name": "d"}, 400,
                     "cannot bind token to object of type apps/v1, Kind=Deployment")):
                r = await api.post(f"{ns}/serviceaccounts/bot/token", json={"spec": {"boundObjectRef": ref}})
                assert r.status_code == code, r.text
                assert r.json()["message"] == message
            for seconds, detail in ((60, "may not specify a duration less than 10 minutes"),
                                    (2**32 + 1, "may not specify a duration larger than 2^32 seconds")):
                r = await api.post(f"{ns}/serviceaccounts/bot/token", json={"spec": {"expirationSeconds": seconds}})
                assert r.status_code == 422, r.text
                assert r.json()["message"] == (f'TokenRequest.authentication.k8s.io "" is invalid: '
                                               f"spec.expirationSeconds: Invalid value: {seconds}: {detail}")
            r = await api.post(f"{ns}/serviceaccounts/bot/token", json={"spec": {"expirationSeconds": 7 * 86400}})
            assert r.status_code == 201
            assert r.json()["spec"]["expirationSeconds"] == 48 * 3600
            assert r.headers["Warning"] == ('299 - "requested expiration of 604800 seconds shortened to 172800 '
                                            'seconds"')
    # kubectl create token with a bound object.
    out = await trio.to_thread.run_sync(lambda: _kubectl(s.kubeconfig, tmp_path, "create", "token", "bot",
                                                         "--bound-object-kind=Secret", "--bound-object-name=s1"))
    assert out.returncode == 0, out.stderr
    claims = pyjwt.decode(out.stdout.strip(), options={"verify_signature": False})
    assert claims["kubernetes.io"]["secret"]["name"] == "s1"


async def test_legacy_secret_based_tokens(start_server: StartServer) -> None:
    import base64

    import jwt as pyjwt

    from tests.conftest import poll_until

    a = await start_server()
    ns = "/api/v1/namespaces/default"
    async with httpx.AsyncClient(base_url=a.http_url or "", timeout=30,
                                 headers={"Authorization": f"Bearer {a.admin_token}"}) as api:
        with trio.fail_after(60):
            uid = (await api.post(f"{ns}/serviceaccounts", json={"metadata": {"name": "legacy"}})).json()[
                "metadata"]["uid"]
            for i in range(3):
                r = await api.post(f"{ns}/secrets", json={
                    "metadata": {"name": f"legacy-token-{i}",
                                 "annotations": {"kubernetes.io/service-account.name": "legacy"}},
                    "type": "kubernetes.io/service-account-token"})
                assert r.status_code == 201, r.text

            async def filled(i: int) -> dict[str, Any] | None:
                s = (await api.get(f"{ns}/secrets/legacy-token-{i}")).json()
                return s if (s.get("data") or {}).get("token") else None

            secrets = []
            for i in range(3):
                await poll_until(lambda i=i: filled(i))  # type: ignore[misc]
                secrets.append(await filled(i))
            s0 = secrets[0]
            assert s0["metadata"]["annotations"]["kubernetes.io/service-account.uid"] == uid
            assert base64.b64decode(s0["data"]["namespace"]) == b"default"
            assert base64.b64decode(s0["data"]["ca.crt"]).startswith(b"-----BEGIN CERTIFICATE-----")
            token = base64.b64decode(s0["data"]["token"]).decode()
            claims = pyjwt.decode(token, options={"verify_signature": False})
            assert claims == {"iss": "kubernetes/serviceaccount", "sub": "system:serviceaccount:default:legacy",
                              "kubernetes.io/serviceaccount/namespace": "default",
                              "kubernetes.io/serviceaccount/secret.name": "legacy-token-0",
                              "kubernetes.io/serviceaccount/service-account.name": "legacy",
                              "kubernetes.io/serviceaccount/service-account.uid": uid}
            who = (await api.post(WHOAMI, json={}, headers={"Authorization": f"Bearer {token}"})).json()
            assert who["status"]["userInfo"] == {
                "username": "system:serviceaccount:default:legacy", "uid": uid,
                "groups": ["system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"]}
            r = await api.post(TOKENREVIEWS, json=_review(token))
            assert r.json()["status"]["authenticated"] is True
            # The Secret must still hold exactly this token, and exist.
            s1 = secrets[1]
            tok1 = base64.b64decode(s1["data"]["token"]).decode()
            s1["data"]["token"] = base64.b64encode(b"something-else").decode()
            assert (await api.put(f"{ns}/secrets/legacy-token-1", json=s1)).status_code == 200
            r = await api.post(TOKENREVIEWS, json=_review(tok1))
            assert r.json()["status"] == {"user": {}, "error": "Token does not match server's copy"}
            assert (await api.delete(f"{ns}/secrets/legacy-token-0")).status_code == 200
            assert (await api.get("/version", headers={"Authorization": f"Bearer {token}"})).status_code == 401
            r = await api.post(TOKENREVIEWS, json=_review(token))
            assert r.json()["status"] == {"user": {}, "error": "Token has been invalidated"}
            # Deleting the service account deletes its token Secrets.
            assert (await api.delete(f"{ns}/serviceaccounts/legacy")).status_code == 200

            async def gone() -> bool:
                return (await api.get(f"{ns}/secrets/legacy-token-2")).status_code == 404

            await poll_until(gone)


def _idp_key(kid: str) -> tuple[Any, dict[str, Any]]:
    """An OIDC provider's RSA key and its JWK Set."""
    import jwt as pyjwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(65537, 2048)
    jwk = pyjwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return key, {"keys": [{**jwk, "kid": kid, "use": "sig", "alg": "RS256"}]}


async def _serve_discovery(nursery: trio.Nursery, pki_dir: Path, jwks: dict[str, Any]) -> str:
    """A minimal HTTPS OIDC provider (discovery document and JWKS) on a free port: its issuer URL."""
    pki = ensure_pki(pki_dir)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(pki.cert), str(pki.key))
    issuer = ""

    async def handle(stream: trio.SSLStream[Any]) -> None:
        try:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = await stream.receive_some()
                if not chunk:
                    return
                request += chunk
            path = request.split(b" ", 2)[1].decode()
            doc = ({"issuer": issuer, "jwks_uri": f"{issuer}/keys", "response_types_supported": ["id_token"],
                    "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"]}
                   if path == "/.well-known/openid-configuration" else jwks)
            body = json.dumps(doc).encode()
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            await stream.aclose()
        except trio.BrokenResourceError:
            pass

    listeners = await nursery.start(trio.serve_ssl_over_tcp, handle, 0, ctx)
    issuer = f"https://127.0.0.1:{listeners[0].transport_listener.socket.getsockname()[1]}"
    return issuer


async def test_oidc_tokens_through_an_authentication_configuration(start_server: StartServer, tmp_path: Path,
                                                                   nursery: trio.Nursery) -> None:
    import time

    import jwt as pyjwt
    import yaml

    key, jwks = _idp_key("k1")
    key2, jwks2 = _idp_key("k2")
    (tmp_path / "jwks.json").write_text(json.dumps(jwks))
    issuer2 = await _serve_discovery(nursery, tmp_path / "idp2", jwks2)
    config = {
        "apiVersion": "apiserver.config.k8s.io/v1", "kind": "AuthenticationConfiguration",
        "jwt": [{"issuer": {"url": "https://idp.example", "audiences": ["jetkube", "other"],
                            "audienceMatchPolicy": "MatchAny", "jwksFile": str(tmp_path / "jwks.json")},
                 "claimMappings": {"username": {"claim": "email", "prefix": ""},
                                   "groups": {"claim": "groups", "prefix": "oidc:"}, "uid": {"claim": "sub"}},
                 "claimValidationRules": [{"claim": "hd", "requiredValue": "example.com"}]},
                {"issuer": {"url": issuer2, "audiences": ["jetkube"],
                            "certificateAuthority": (tmp_path / "idp2" / "pki" / "ca.crt").read_text()},
                 "claimMappings": {"username": {"claim": "sub", "prefix": "idp2:"}}}],
        "anonymous": {"enabled": True, "conditions": [{"path": "/livez"}, {"path": "/version"}]}}
    (tmp_path / "auth.yaml").write_text(yaml.safe_dump(config))
    shared = tmp_path / "shared"
    a = await start_server(data_dir=str(shared), authentication_config=str(tmp_path / "auth.yaml"))
    b = await start_server(data_dir=str(shared), authentication_config=str(tmp_path / "auth.yaml"))
    now = int(time.time())
    good = {"iss": "https://idp.example", "aud": "jetkube", "sub": "u-42", "email": "dana@example.com",
            "email_verified": True, "groups": ["eng", "ops"], "hd": "example.com", "iat": now, "exp": now + 600}

    def sign(claims: dict[str, Any], k: Any = key, kid: str = "k1") -> str:
        return pyjwt.encode(claims, k, algorithm="RS256", headers={"kid": kid})

    token = sign(good)
    bad = {"wrong audience": sign({**good, "aud": "nope"}),
           "expired": sign({**good, "iat": now - 7200, "exp": now - 3600}),
           "claim rule": sign({**good, "hd": "evil.com"}),
           "email not verified": sign({**good, "email_verified": False}),
           "other key": sign(good, key2, "k1"),
           "unknown issuer": sign({**good, "iss": "https://unknown.example"}),
           "no username": sign({k: v for k, v in good.items() if k != "email"})}
    with trio.fail_after(60):
        for g in (a, b):
            async with httpx.AsyncClient(base_url=g.http_url or "", timeout=30) as c:
                r = await c.post(WHOAMI, json={}, headers={"Authorization": f"Bearer {token}"})
                assert r.status_code == 201, r.text
                assert r.json()["status"]["userInfo"] == {
                    "username": "dana@example.com", "uid": "u-42",
                    "groups": ["oidc:eng", "oidc:ops", "system:authenticated"]}
                for why, t in bad.items():
                    r = await c.get("/api", headers={"Authorization": f"Bearer {t}"})
                    assert r.status_code == 401, why
                t2 = sign({"iss": issuer2, "aud": ["jetkube"], "sub": "erin", "exp": now + 600}, key2, "k2")
                r = await c.post(WHOAMI, json={}, headers={"Authorization": f"Bearer {t2}"})
                assert r.json()["status"]["userInfo"]["username"] == "idp2:erin"
                # Anonymous only on the configured paths.
                assert (await c.get("/version")).status_code == 200
                assert (await c.get("/api")).status_code == 401
                # TokenReview answers for OIDC tokens too.
                r = await c.post(TOKENREVIEWS, json=_review(token, ["other"]),
                                 headers={"Authorization": f"Bearer {g.admin_token}"})
                assert r.json()["status"]["authenticated"] is True
                assert r.json()["status"]["audiences"] == ["other"]
                r = await c.post(TOKENREVIEWS, json=_review(bad["expired"], ["jetkube"]),
                                 headers={"Authorization": f"Bearer {g.admin_token}"})
                assert r.json()["status"] == {"user": {}, "error": "oidc: verify token: oidc: token is expired"}
    out = await trio.to_thread.run_sync(lambda: _kubectl(a.kubeconfig, tmp_path, f"--token={token}", "auth",
                                                         "whoami"))
    assert out.returncode == 0, out.stderr
    assert _whoami_rows(out.stdout)["Username"] == "dana@example.com"


def test_authentication_configuration_errors(tmp_path: Path) -> None:
    import yaml

    from actors import AuthenticationConfigError
    from gateway._settings import load_authentication_config

    base = {"apiVersion": "apiserver.config.k8s.io/v1", "kind": "AuthenticationConfiguration"}
    issuer = {"url": "https://idp.example", "audiences": ["a"], "jwksFile": str(tmp_path / "none.json")}
    cases = [
        ({"jwt": [{"issuer": {**issuer, "url": "http://idp.example"},
                   "claimMappings": {"username": {"claim": "sub", "prefix": ""}}}]}, "URL scheme must be https"),
        ({"jwt": [{"issuer": {**issuer, "audiences": []}, "claimMappings": {"username": {"claim": "sub",
                                                                                         "prefix": ""}}}]},
         "at least one issuer.audiences is required"),
        ({"jwt": [{"issuer": issuer, "claimMappings": {"username": {"claim": "sub"}}}]}, "prefix is required"),
        ({"jwt": [{"issuer": issuer, "claimMappings": {"username": {"expression": "claims.sub"}}}]},
         "CEL expressions are not supported"),
        ({"jwt": [{"issuer": {**issuer, "audiences": ["a", "b"]},
                   "claimMappings": {"username": {"claim": "sub", "prefix": ""}}}]}, "must be MatchAny"),
        ({"jwt": [{"issuer": issuer, "claimMappings": {"username": {"claim": "sub", "prefix": ""}},
                   "bogus": 1}]}, "unknown field"),
        ({"jwt": [{"issuer": issuer, "claimMappings": {"username": {"claim": "sub", "prefix": ""}}}]},
         "none.json"),
    ]
    for i, (doc, message) in enumerate(cases):
        path = tmp_path / f"c{i}.yaml"
        path.write_text(yaml.safe_dump({**base, **doc}))
        with pytest.raises(AuthenticationConfigError, match=message):
            load_authentication_config(str(path))
    path = tmp_path / "anon.yaml"
    path.write_text(yaml.safe_dump({**base, "anonymous": {"enabled": True}}))
    with pytest.raises(AuthenticationConfigError, match="anonymous-auth"):
        load_authentication_config(str(path), anonymous_flag=True)


async def test_oidc_keys_are_refreshed(start_server: StartServer, tmp_path: Path) -> None:
    import time

    import jwt as pyjwt
    import yaml

    from tests.conftest import poll_until

    old_key, old_jwks = _idp_key("old")
    new_key, new_jwks = _idp_key("new")
    (tmp_path / "jwks.json").write_text(json.dumps(old_jwks))
    (tmp_path / "auth.yaml").write_text(yaml.safe_dump({
        "apiVersion": "apiserver.config.k8s.io/v1", "kind": "AuthenticationConfiguration",
        "jwt": [{"issuer": {"url": "https://idp.example", "audiences": ["jetkube"],
                            "jwksFile": str(tmp_path / "jwks.json")},
                 "claimMappings": {"username": {"claim": "sub", "prefix": "oidc:"}}}]}))
    s = await start_server(authentication_config=str(tmp_path / "auth.yaml"), oidc_keys_refresh_s=0.1)
    now = int(time.time())
    claims = {"iss": "https://idp.example", "aud": "jetkube", "sub": "frank", "exp": now + 600}
    old = pyjwt.encode(claims, old_key, algorithm="RS256", headers={"kid": "old"})
    new = pyjwt.encode(claims, new_key, algorithm="RS256", headers={"kid": "new"})
    async with httpx.AsyncClient(base_url=s.http_url or "", timeout=30) as c:
        with trio.fail_after(30):
            assert (await c.get("/version", headers={"Authorization": f"Bearer {old}"})).status_code == 200
            assert (await c.get("/version", headers={"Authorization": f"Bearer {new}"})).status_code == 401
            (tmp_path / "jwks.json").write_text(json.dumps(new_jwks))  # the provider rotates its key

            async def rotated() -> bool:
                return (await c.get("/version", headers={"Authorization": f"Bearer {new}"})).status_code == 200

            await poll_until(rotated)
            assert (await c.post(WHOAMI, json={}, headers={"Authorization": f"Bearer {new}"})).json()[
                "status"]["userInfo"]["username"] == "oidc:frank"


async def test_impersonation_is_rbac_checked_on_two_gateways(start_server: StartServer, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text('ivy-token,ivy,u-ivy\n')
    a = await start_server(token_file=str(tokens))
    b = await start_server(token_file=str(tokens))
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "as-bots"},
            "rules": [{"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"],
                       "resourceNames": ["bot-1", "bot-2"]},
                      {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]}]}
    crb = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
           "metadata": {"name": "ivy-as-bots"},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "as-bots"},
           "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "ivy"}]}
    ivy = {"Authorization": "Bearer ivy-token"}
    async with httpx.AsyncClient(base_url=a.http_url or "", timeout=30,
                                 headers={"Authorization": f"Bearer {a.admin_token}"}) as admin:
        with trio.fail_after(60):
            for g in (a, b):
                async with httpx.AsyncClient(base_url=g.http_url or "", timeout=30, headers=ivy) as c:
                    r = await c.post(WHOAMI, json={}, headers={"Impersonate-User": "bot-1"})
                    assert r.status_code == 403
                    assert r.json()["message"] == ('users "bot-1" is forbidden: User "ivy" cannot impersonate '
                                                   'resource "users" in API group "" at the cluster scope')
            assert (await admin.post(f"{rbac}/clusterroles", json=role)).status_code == 201
            assert (await admin.post(f"{rbac}/clusterrolebindings", json=crb)).status_code == 201
            for g in (a, b):  # a grant applies at once on every gateway
                async with httpx.AsyncClient(base_url=g.http_url or "", timeout=30, headers=ivy) as c:
                    for name in ("bot-1", "bot-2"):
                        r = await c.post(WHOAMI, json={}, headers={"Impersonate-User": name})
                        assert r.status_code == 201, r.text
                        assert r.json()["status"]["userInfo"] == {"username": name, "uid": "",
                                                                  "groups": ["system:authenticated"]}
                    r = await c.post(WHOAMI, json={}, headers={"Impersonate-User": "root"})
                    assert r.status_code == 403  # not a listed resourceName
                    # Groups are a separate permission: the first item denied is the answer.
                    r = await c.post(WHOAMI, json={}, headers=[("Impersonate-User", "bot-1"),
                                                             ("Impersonate-Group", "system:masters")])
                    assert r.status_code == 403
                    assert r.json()["message"] == ('groups "system:masters" is forbidden: User "ivy" cannot '
                                                   'impersonate resource "groups" in API group "" at the cluster '
                                                   'scope')
                    r = await c.post(WHOAMI, json={}, headers={"Impersonate-User": "system:serviceaccount:ns9:x"})
                    assert r.json()["status"]["userInfo"]["groups"] == [
                        "system:serviceaccounts", "system:serviceaccounts:ns9", "system:authenticated"]
                    # The impersonated user's own permissions then apply: bot-1 may not list configmaps.
                    r = await c.get(CONFIGMAPS, headers={"Impersonate-User": "bot-1"})
                    assert r.status_code == 403
                    assert 'User "bot-1" cannot list' in r.json()["message"]
            # Revoked: refused again (at once on the gateway that wrote it).
            assert (await admin.delete(f"{rbac}/clusterrolebindings/ivy-as-bots")).status_code == 200
            r = await admin.post(WHOAMI, json={}, headers={**ivy, "Impersonate-User": "bot-1"})
            assert r.status_code == 403
