"""``jetkube pki init``: the files several replicas share, created once, with the balancer's names."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from actors import parse_token_csv
from gateway._cli import PROBE_USER, main
from gateway._pki import ensure_pki, serving_names

NAMES = {"localhost", "jetkube", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "127.0.0.1", "::1"}


def _issued_by(cert_path: Path, ca_path: Path) -> bool:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, x509.InvalidSignature):
        return False
    return True


def _snapshot(pki: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(pki.iterdir())}


def test_init_writes_shared_material_with_the_balancer_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    probe = tmp_path / "probe" / "token"
    assert main(["pki", "init", "--data-dir", str(data), "--san", "jetkube.example.com", "--san", "10.1.2.3",
                 "--server", "https://jetkube.example.com:6443", "--probe-token-file", str(probe)]) == 0
    pki = data / "pki"
    printed = capsys.readouterr().out.split()
    assert {Path(p).name for p in printed} == {"ca.crt", "apiserver.crt", "apiserver.key", "tokens.csv", "sa.key",
                                               "token", "kubeconfig", "admin.crt", "admin.key"}
    assert serving_names(pki / "apiserver.crt") == NAMES | {"jetkube.example.com", "10.1.2.3"}
    assert _issued_by(pki / "apiserver.crt", pki / "ca.crt")
    for secret in ("ca.key", "apiserver.key", "sa.key", "tokens.csv", "kubeconfig"):
        assert stat.S_IMODE((pki / secret).stat().st_mode) == 0o600, secret
    # The service-account key is the EC P-256 key serve loads; the admin token stays on the first line.
    assert isinstance(serialization.load_pem_private_key((pki / "sa.key").read_bytes(), None),
                      ec.EllipticCurvePrivateKey)
    tokens = parse_token_csv((pki / "tokens.csv").read_text())
    admin_token = (pki / "tokens.csv").read_text().splitlines()[0].split(",")[0]
    assert "system:masters" in tokens[admin_token].groups
    # The health-check token: its own user, no group, readable by the balancer's user.
    probe_token = probe.read_text()
    assert tokens[probe_token].name == PROBE_USER and tokens[probe_token].groups == ()
    assert stat.S_IMODE(probe.stat().st_mode) == 0o644
    # The kubeconfig points at the balancer with the shared CA and the admin token.
    kc = yaml.safe_load((pki / "kubeconfig").read_text())
    cluster = kc["clusters"][0]["cluster"]
    assert cluster["server"] == "https://jetkube.example.com:6443"
    assert base64.b64decode(cluster["certificate-authority-data"]) == (pki / "ca.crt").read_bytes()
    assert kc["users"][0]["user"]["token"] == admin_token


def test_rerun_keeps_everything_and_serve_keeps_the_certificate(tmp_path: Path) -> None:
    data = tmp_path / "data"
    args = ["pki", "init", "--data-dir", str(data), "--san", "lb.example", "--probe-token-file",
            str(tmp_path / "probe")]
    assert main(args) == 0
    before = _snapshot(data / "pki")
    probe = (tmp_path / "probe").read_text()
    assert main(args) == 0  # a second `docker compose up` runs the init step again
    assert _snapshot(data / "pki") == before and (tmp_path / "probe").read_text() == probe
    assert len(parse_token_csv((data / "pki" / "tokens.csv").read_text())) == 2
    ensure_pki(data)  # what every replica runs at start: no re-issue without requested names
    assert _snapshot(data / "pki") == before


def test_a_missing_name_reissues_the_serving_certificate_from_the_same_ca(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert main(["pki", "init", "--data-dir", str(data), "--san", "old.example"]) == 0
    before = _snapshot(data / "pki")
    assert main(["pki", "init", "--data-dir", str(data), "--san", "new.example", "--san", "::ffff:10.0.0.1"]) == 0
    after = _snapshot(data / "pki")
    assert after["apiserver.crt"] != before["apiserver.crt"] and after["apiserver.key"] != before["apiserver.key"]
    assert {k: v for k, v in after.items() if not k.startswith("apiserver.")} == \
        {k: v for k, v in before.items() if not k.startswith("apiserver.")}
    assert serving_names(data / "pki" / "apiserver.crt") == NAMES | {"new.example", "::ffff:a00:1"}
    assert _issued_by(data / "pki" / "apiserver.crt", data / "pki" / "ca.crt")
    # Names already present (in any spelling) change nothing.
    assert main(["pki", "init", "--data-dir", str(data), "--san", "NEW.example", "--san", "localhost"]) == 0
    assert _snapshot(data / "pki") == after


def test_material_without_the_admin_certificate_on_a_read_only_volume(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from gateway import _pki

    data = tmp_path / "old"
    ensure_pki(data)
    for name in ("admin.crt", "admin.key"):
        (data / "pki" / name).unlink()

    def read_only(*_: object, **__: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    with monkeypatch.context() as m:
        m.setattr(_pki, "issue_cert", read_only)
        pki = ensure_pki(data)  # starts anyway, without the certificate user
    assert pki.admin_cert is None and pki.admin_key is None
    pki = ensure_pki(data)  # writable again: the certificate is added, the CA kept
    assert pki.admin_cert is not None and _issued_by(pki.admin_cert, data / "pki" / "ca.crt")
