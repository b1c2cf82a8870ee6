"""First-start material: a CA, a serving certificate, the admin token, an admin client
certificate, the service-account signing key and a kubeconfig.

Generated once into the data directory and reused on every later start, so a kubeconfig written
once keeps working across restarts. The data directory and ``pki/`` are created 0700; private keys,
the token file and the kubeconfig are written 0600.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    cert: Path
    key: Path
    admin_token: str
    tokens_file: Path
    admin_cert: Path | None = None  # a client certificate in system:masters (the kubeconfig's second user)
    admin_key: Path | None = None


ADMIN_CERT_USER = "jetkube-admin"
MASTERS = "system:masters"


def ensure_data_dir(path: Path) -> None:
    """The data directory, created 0700 (with missing parents) if it does not exist yet; an existing
    directory keeps its mode (it may be one the operator chose, such as a volume)."""
    try:
        path.mkdir(parents=True, mode=0o700)
    except FileExistsError:
        return
    path.chmod(0o700)  # whatever the umask


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)  # also when the file existed with a wider mode
        f.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def ensure_pki(data_dir: Path, sans: Sequence[str] = ()) -> Pki:
    """Create (if missing) ``pki/ca.crt``, ``pki/apiserver.crt|key`` and ``pki/tokens.csv``. ``sans``:
    extra names (DNS or IP) for the serving certificate, such as a load balancer's; an existing
    certificate that lacks one is re-issued by the same CA (the CA and tokens stay)."""
    ensure_data_dir(data_dir)
    pki = data_dir / "pki"
    ensure_data_dir(pki)
    ca_crt, crt, key_path, tokens = pki / "ca.crt", pki / "apiserver.crt", pki / "apiserver.key", pki / "tokens.csv"
    if not (ca_crt.exists() and crt.exists() and key_path.exists()):
        now = datetime.datetime.now(datetime.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jetkube-ca")])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=5))
              .not_valid_after(now + datetime.timedelta(days=3650))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                           content_commitment=False, key_encipherment=False,
                                           data_encipherment=False, key_agreement=False, encipher_only=False,
                                           decipher_only=False), critical=True)
              .sign(ca_key, hashes.SHA256()))
        _write_private(pki / "ca.key", _key_pem(ca_key))
        ca_crt.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        issue_cert(pki, "jetkube-apiserver", crt, key_path, client=False, sans=sans)
    elif sans and not {_canonical(n) for n in sans} <= serving_names(crt):
        issue_cert(pki, "jetkube-apiserver", crt, key_path, client=False, sans=sans)
    if not tokens.exists():
        _write_private(tokens, f'{secrets.token_urlsafe(32)},admin,admin,"system:masters"\n'.encode())
    admin = tokens.read_text().splitlines()[0].split(",", 1)[0]
    admin_crt, admin_key = pki / "admin.crt", pki / "admin.key"
    if (pki / "ca.key").exists() and not (admin_crt.exists() and admin_key.exists()):
        try:  # material made before the admin certificate existed, possibly on a read-only volume
            issue_cert(pki, ADMIN_CERT_USER, admin_crt, admin_key, client=True, organizations=(MASTERS,))
        except OSError:
            pass  # no certificate user in the kubeconfig then; `jetkube pki init` adds it
    if not (admin_crt.exists() and admin_key.exists()):
        return Pki(ca_crt, crt, key_path, admin, tokens)
    return Pki(ca_crt, crt, key_path, admin, tokens, admin_crt, admin_key)


def issue_cert(pki: Path, common_name: str, cert_path: Path, key_path: Path, *, client: bool,
               sans: Sequence[str] = (), organizations: Sequence[str] = (), days: int = 3650) -> None:
    """Sign a certificate with the CA in ``pki``: a serving one (localhost and loopback names, plus
    ``sans``) or, with ``client``, a client one (``organizations``: kube's groups). The key is
    written with mode 0600."""
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([*(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations),
                                        x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
               .issuer_name(ca.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=days)))
    if client:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                                        critical=False)
    else:
        san = x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.DNSName("jetkube"), x509.DNSName("kubernetes"),
            x509.DNSName("kubernetes.default"), x509.DNSName("kubernetes.default.svc"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1")),
            *(_general_name(n) for n in dict.fromkeys(map(_canonical, sans)) if n not in _DEFAULT_NAMES),
        ])
        builder = (builder.add_extension(san, critical=False)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))


_DEFAULT_NAMES = frozenset({"localhost", "jetkube", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                            "127.0.0.1", "::1"})


def _canonical(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name.lower()


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def serving_names(cert_path: Path) -> set[str]:
    """The DNS names and IP addresses (as text) in a certificate's subjectAltName."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return ({n.lower() for n in san.get_values_for_type(x509.DNSName)}
            | {str(a) for a in san.get_values_for_type(x509.IPAddress)})


def ensure_service_account_key(data_dir: Path) -> Path:
    """``pki/sa.key``: the EC P-256 key signing service-account tokens (ES256), created once, 0600.
    Replicas sharing a log must share this file (``--service-account-key-file``)."""
    path = data_dir / "pki" / "sa.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_private(path, _key_pem(ec.generate_private_key(ec.SECP256R1())))
    return path


def write_kubeconfig(path: Path, *, server: str, ca_cert: Path, token: str, name: str = "jetkube",
                     client_cert: Path | None = None, client_key: Path | None = None) -> None:
    """A kubeconfig that kubectl and the Python client use unchanged: the admin token (the current
    context, ``name``) and, when given, a client certificate (context ``<name>-cert``)."""
    ca_data = base64.b64encode(ca_cert.read_bytes()).decode()
    users: list[dict[str, object]] = [{"name": f"{name}-admin", "user": {"token": token}}]
    contexts: list[dict[str, object]] = [
        {"name": name, "context": {"cluster": name, "user": f"{name}-admin", "namespace": "default"}}]
    if client_cert is not None and client_key is not None:
        users.append({"name": f"{name}-admin-cert", "user": {
            "client-certificate-data": base64.b64encode(client_cert.read_bytes()).decode(),
            "client-key-data": base64.b64encode(client_key.read_bytes()).decode()}})
        contexts.append({"name": f"{name}-cert", "context": {"cluster": name, "user": f"{name}-admin-cert",
                                                             "namespace": "default"}})
    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": name, "preferences": {},
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": ca_data}}],
        "users": users, "contexts": contexts,
    }
    _write_private(path, yaml.safe_dump(doc, sort_keys=False).encode())
