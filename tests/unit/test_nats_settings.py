"""NATS credentials and TLS: flags decoded once into Settings, and what they give nats.connect."""

from __future__ import annotations

import ssl
from pathlib import Path

from bus import NatsAuth, redact_url
from gateway._cli import _parser, settings_from_args
from gateway._pki import ensure_pki


def test_nats_flags_are_decoded_into_settings(tmp_path: Path) -> None:
    args = _parser().parse_args([
        "serve", "--nats-url", "nats://nats.example:4222", "--nats-user", "app", "--nats-password-file", "pw",
        "--nats-creds", "u.creds", "--nats-nkey-seed", "seed.nk", "--nats-tls-ca", "ca.crt",
        "--nats-tls-cert", "c.crt", "--nats-tls-key", "c.key"])
    s = settings_from_args(args)
    assert s.nats_url == "nats://nats.example:4222"
    assert s.nats_auth == NatsAuth(user="app", password_file="pw", creds_file="u.creds",
                                   nkey_seed_file="seed.nk", tls_ca_file="ca.crt", tls_cert_file="c.crt",
                                   tls_key_file="c.key")
    assert settings_from_args(_parser().parse_args(["serve"])).nats_auth == NatsAuth()


def test_connect_options(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    assert NatsAuth().connect_options() == {}
    opts = NatsAuth(user="app", password_file=str(pw), creds_file="u.creds",
                    nkey_seed_file="s.nk").connect_options()
    assert opts == {"user": "app", "password": "s3cret", "user_credentials": "u.creds", "nkeys_seed": "s.nk"}
    pki = ensure_pki(tmp_path)
    tls = NatsAuth(tls_ca_file=str(pki.ca_cert), tls_cert_file=str(pki.cert),
                   tls_key_file=str(pki.key)).connect_options()["tls"]
    assert isinstance(tls, ssl.SSLContext) and tls.verify_mode == ssl.CERT_REQUIRED


def test_redact_url() -> None:
    assert redact_url("nats://jetkube:pw@127.0.0.1:4222") == "nats://jetkube:***@127.0.0.1:4222"
    assert redact_url("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"
