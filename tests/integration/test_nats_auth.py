"""NATS is not open to anyone on the machine: the embedded server accepts only its generated
credentials, and an external NATS is reached with user/password, an nkey seed, a .creds file (NATS
decentralized auth) or TLS from Settings."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import trio

from bus import (
    BusRefused,
    Key,
    NatsAuth,
    StreamConfig,
    free_port,
    nats_server_binary,
    open_bridge,
    open_log,
    run_nats_server,
)
from gateway import Running, Settings, serve
from gateway._pki import ensure_pki, issue_cert
from tests.conftest import client_for
from tests.natsjwt import NKey, account_jwt, creds_file_text, operator_jwt, user_jwt

pytestmark = pytest.mark.integration


async def _refused(url: str, auth: NatsAuth | None = None) -> None:
    with trio.fail_after(5), pytest.raises(BusRefused):  # at once: retrying cannot fix credentials
        async with open_bridge(url, connect_timeout_s=2, auth=auth):
            pass


async def test_embedded_nats_accepts_only_its_generated_credentials(tmp_path: Path) -> None:
    store = tmp_path / "nats"
    with trio.fail_after(30):
        async with run_nats_server(store) as url:
            parts = urlsplit(url)
            assert parts.username == "jetkube" and parts.password
            for secret in (store / "nats-password", store / "nats.conf"):
                assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600, secret
            await _refused(f"nats://{parts.hostname}:{parts.port}")
            await _refused(f"nats://jetkube:wrong@{parts.hostname}:{parts.port}")
            async with open_bridge(url) as bridge:
                assert bridge.connected
        async with run_nats_server(store) as again:
            assert urlsplit(again).password == parts.password  # created on first start, reused after


@asynccontextmanager
async def _nats_server(tmp_path: Path, extra_conf: str) -> AsyncIterator[int]:
    """A nats-server with JetStream and the given extra configuration, owned by this test."""
    port = free_port()
    conf = tmp_path / "ext.conf"
    store = tmp_path / "ext-js"
    conf.write_text(f'listen: "127.0.0.1:{port}"\njetstream {{ store_dir: "{store}" }}\n{extra_conf}')
    async with trio.open_nursery() as nursery:
        proc = await nursery.start(partial(trio.run_process, [nats_server_binary(), "-c", str(conf)],
                                           check=False))
        with trio.fail_after(20):
            while True:
                assert proc.returncode is None, "nats-server exited"
                try:
                    stream = await trio.open_tcp_stream("127.0.0.1", port)
                except OSError:
                    await trio.sleep(0.02)  # polling another process's socket
                    continue
                await stream.aclose()
                break
        yield port
        nursery.cancel_scope.cancel()


async def test_external_nats_with_user_password_and_tls(nursery: trio.Nursery, tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path / "pki-src")  # a CA and a certificate for 127.0.0.1
    password_file = tmp_path / "nats-password"
    password_file.write_text("s3cret-pass\n")
    extra = (f'authorization {{ user: "app", password: "s3cret-pass" }}\n'
             f'tls {{ cert_file: "{pki.cert}", key_file: "{pki.key}" }}\n')
    async with _nats_server(tmp_path, extra) as port:
        url = f"nats://127.0.0.1:{port}"
        good = NatsAuth(user="app", password_file=str(password_file), tls_ca_file=str(pki.ca_cert))
        await _refused(url, NatsAuth(tls_ca_file=str(pki.ca_cert)))  # no credentials
        await _refused(url, NatsAuth(user="app", password_file=str(password_file)))  # the CA is not trusted
        stop = trio.Event()
        with trio.fail_after(30):
            running: Running = await nursery.start(partial(serve, Settings(
                data_dir=str(tmp_path / "jk"), port=0, insecure_port=0, nats_url=url, nats_auth=good,
                graceful_timeout_s=0.5), shutdown=stop))
        try:
            async with client_for(running) as api:
                with trio.fail_after(10):
                    r = await api.post("/api/v1/namespaces/default/configmaps",
                                       json={"metadata": {"name": "a"}})
                    assert r.status_code == 201, r.text
                    assert (await api.get("/readyz")).status_code == 200
        finally:
            stop.set()
        # user:password in the URL works too.
        with trio.fail_after(15):
            async with open_bridge(f"nats://app:s3cret-pass@127.0.0.1:{port}",
                                   auth=NatsAuth(tls_ca_file=str(pki.ca_cert))) as bridge:
                assert bridge.connected


async def test_external_nats_with_mutual_tls(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path / "pki-src")
    client_crt, client_key = tmp_path / "client.crt", tmp_path / "client.key"
    issue_cert(pki.ca_cert.parent, "jetkube-client", client_crt, client_key, client=True)
    extra = (f'tls {{ cert_file: "{pki.cert}", key_file: "{pki.key}", ca_file: "{pki.ca_cert}", '
             'verify: true }\n')
    async with _nats_server(tmp_path, extra) as port:
        url = f"nats://127.0.0.1:{port}"
        await _refused(url, NatsAuth(tls_ca_file=str(pki.ca_cert)))  # no client certificate
        with trio.fail_after(15):
            mtls = NatsAuth(tls_ca_file=str(pki.ca_cert), tls_cert_file=str(client_crt),
                            tls_key_file=str(client_key))
            async with open_bridge(url, auth=mtls) as bridge:
                log = await open_log(bridge, StreamConfig(name="MTLS", prefix="mtls"))
                assert await log.append(log.subject(Key("default", "", "configmaps", "ns", "a")), b"x",
                                        msg_id="m1", expected_seq=0) == 1


def _secret_file(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


async def test_external_nats_with_an_nkey_seed(tmp_path: Path) -> None:
    user, stranger = NKey.user(), NKey.user()
    seed_file = _secret_file(tmp_path / "user.nk", user.seed + "\n")
    extra = f'authorization {{ users = [ {{ nkey: "{user.public_key}" }} ] }}\n'
    async with _nats_server(tmp_path, extra) as port:
        url = f"nats://127.0.0.1:{port}"
        await _refused(url)  # no credentials
        await _refused(url, NatsAuth(nkey_seed_file=_secret_file(tmp_path / "stranger.nk", stranger.seed)))
        with trio.fail_after(15):
            async with open_bridge(url, auth=NatsAuth(nkey_seed_file=seed_file)) as bridge:
                log = await open_log(bridge, StreamConfig(name="NKEY", prefix="nkey"))
                subject = log.subject(Key("default", "", "configmaps", "ns", "a"))
                assert await log.append(subject, b"x", msg_id="m1", expected_seq=0) == 1
                assert await log.last_message(subject) == (1, "m1", b"x")


async def test_external_nats_with_a_creds_file(nursery: trio.Nursery, tmp_path: Path) -> None:
    """Operator mode: the server trusts an operator, which signed the account (JetStream enabled),
    which signed the user in jetkube's .creds file."""
    operator, system, account, user = NKey.operator(), NKey.account(), NKey.account(), NKey.user()
    extra = (f"operator: {operator_jwt(operator, system_account=system.public_key)}\n"
             f"system_account: {system.public_key}\n"
             "resolver: MEMORY\n"
             "resolver_preload: {\n"
             f"  {system.public_key}: {account_jwt(operator, system, 'SYS', jetstream=False)}\n"
             f"  {account.public_key}: {account_jwt(operator, account, 'APP', jetstream=True)}\n"
             "}\n")
    creds = _secret_file(tmp_path / "jetkube.creds",
                         creds_file_text(user_jwt(account, user, "jetkube"), user))
    # A user the server cannot trust: its account was not signed by the operator.
    rogue_account, rogue = NKey.account(), NKey.user()
    rogue_creds = _secret_file(tmp_path / "rogue.creds",
                               creds_file_text(user_jwt(rogue_account, rogue, "rogue"), rogue))
    async with _nats_server(tmp_path, extra) as port:
        url = f"nats://127.0.0.1:{port}"
        await _refused(url)
        await _refused(url, NatsAuth(creds_file=rogue_creds))
        # The .creds file without its JWT block: nats-py alone spins forever on it; here it fails at once.
        without_jwt = creds_file_text("", user).split("END NATS USER JWT------\n")[1]
        seed_only = _secret_file(tmp_path / "seed-only.creds", without_jwt)
        with trio.fail_after(5), pytest.raises(ValueError, match="no user JWT block"):
            async with open_bridge(url, connect_timeout_s=2, auth=NatsAuth(creds_file=seed_only)):
                pass
        stop = trio.Event()
        with trio.fail_after(30):
            running: Running = await nursery.start(partial(serve, Settings(
                data_dir=str(tmp_path / "jk"), port=0, insecure_port=0, nats_url=url,
                nats_auth=NatsAuth(creds_file=creds), graceful_timeout_s=0.5), shutdown=stop))
        try:
            async with client_for(running) as api:
                with trio.fail_after(10):
                    r = await api.post("/api/v1/namespaces/default/configmaps",
                                       json={"metadata": {"name": "a"}, "data": {"k": "v"}})
                    assert r.status_code == 201, r.text
                    r = await api.get("/api/v1/namespaces/default/configmaps/a")
                    assert r.status_code == 200, r.text
                    assert r.json()["data"] == {"k": "v"}
        finally:
            stop.set()
