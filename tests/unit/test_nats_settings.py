"""NATS credentials and TLS: flags decoded once into Settings, and what they give nats.connect."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from bus import NatsAuth, redact_url
from gateway._cli import _parser, settings_from_args
from gateway._pki import ensure_pki
from tests.natsjwt import NKey, creds_file_text, user_jwt


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
    pw, creds, seed = tmp_path / "pw", tmp_path / "u.creds", tmp_path / "s.nk"
    pw.write_text("s3cret\n")
    user = NKey.user()
    creds.write_text(creds_file_text(user_jwt(NKey.account(), user, "u"), user))
    seed.write_text(user.seed + "\n")
    assert NatsAuth().connect_options() == {}
    opts = NatsAuth(user="app", password_file=str(pw), creds_file=str(creds),
                    nkey_seed_file=str(seed)).connect_options()
    assert opts == {"user": "app", "password": "s3cret", "user_credentials": str(creds),
                    "nkeys_seed": str(seed)}
    pki = ensure_pki(tmp_path)
    tls = NatsAuth(tls_ca_file=str(pki.ca_cert), tls_cert_file=str(pki.cert),
                   tls_key_file=str(pki.key)).connect_options()["tls"]
    assert isinstance(tls, ssl.SSLContext) and tls.verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize(("field", "text", "error"), [
    ("creds_file", "-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n",
     "no user JWT block"),  # nats-py would loop forever on this one
    ("creds_file", "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n",
     "no user nkey seed block"),
    ("creds_file", ("-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n"
     "-----BEGIN USER NKEY SEED-----\n{jwt}\n------END USER NKEY SEED------\n"), "not an nkey seed"),
    ("nkey_seed_file", "{jwt}\n", "not an nkey seed"),
    ("nkey_seed_file", "{public}\n", "not an nkey seed"),  # the public key instead of the seed
], ids=["creds-without-jwt", "creds-without-seed", "creds-bad-seed", "seed-is-a-jwt", "seed-is-public"])
def test_malformed_credential_files_are_named(tmp_path: Path, field: str, text: str, error: str) -> None:
    user = NKey.user()
    path = tmp_path / "bad"
    path.write_text(text.format(seed=user.seed, public=user.public_key,
                                jwt=user_jwt(NKey.account(), user, "u")))
    with pytest.raises(ValueError, match=f"{path}: .*{error}"):
        NatsAuth(**{field: str(path)}).connect_options()


def test_redact_url() -> None:
    assert redact_url("nats://jetkube:pw@127.0.0.1:4222") == "nats://jetkube:***@127.0.0.1:4222"
    assert redact_url("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"
