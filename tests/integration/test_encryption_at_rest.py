"""Encryption at rest (--encryption-provider-config): the JetStream files hold no plaintext of the
configured resources; every read path (store, list, watch from the log, history, restart) decrypts."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest
import trio

from bus import EncryptionConfig, StreamConfig, object_subject, open_bridge, open_log
from bus._subjects import Key
from tests.conftest import client_for, poll_until

pytestmark = pytest.mark.integration

SECRETS = "/api/v1/namespaces/default/secrets"
CMS = "/api/v1/namespaces/default/configmaps"
VALUES = [f"s3cr3t-value-{i}-Zq9" for i in range(3)]
CONTROL = "plain-configmap-value-Xk7"


def encryption(*keys: tuple[str, str, bytes]) -> EncryptionConfig:
    return EncryptionConfig.from_dict({
        "apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
        "resources": [{"resources": ["secrets"], "providers": [
            {kind: {"keys": [{"name": name, "secret": base64.b64encode(secret).decode()}]}}
            for kind, name, secret in keys] + [{"identity": {}}]}]})


def stored_bytes(store: Path) -> bytes:
    return b"".join(f.read_bytes() for f in store.rglob("*") if f.is_file())


async def test_secrets_are_encrypted_in_the_log_and_readable_everywhere(start_server, nats_url: str,
                                                                       tmp_path: Path) -> None:
    enc = encryption(("aesgcm", "key1", b"k" * 32))
    g1 = await start_server(encryption=enc)
    g2 = await start_server(encryption=enc)
    c1, c2 = client_for(g1), client_for(g2)
    async with c1, c2:
        with trio.fail_after(60):
            for i, v in enumerate(VALUES):  # over both gateways
                c = c1 if i % 2 else c2
                r = await c.post(SECRETS, json={"metadata": {"name": f"s{i}", "labels": {"app": "enc"}},
                                                "stringData": {"password": v}})
                assert r.status_code == 201, r.text
            r = await c1.post(CMS, json={"metadata": {"name": "c0"}, "data": {"k": CONTROL}})
            assert r.status_code == 201, r.text
            for c in (c1, c2):
                items = (await c.get(SECRETS, params={"labelSelector": "app=enc"})).json()["items"]
                assert sorted(base64.b64decode(s["data"]["password"]).decode() for s in items) == VALUES
            # A watch from version 1 is served from the log (older than the ring can vouch for).
            async with c2.stream("GET", SECRETS, params={"watch": "1", "resourceVersion": "1",
                                                         "labelSelector": "app=enc"}) as w:
                seen = []
                async for line in w.aiter_lines():
                    if line:
                        seen.append(httpx.Response(200, content=line).json()["object"])
                    if len(seen) == 3:
                        break
            assert sorted(base64.b64decode(s["data"]["password"]).decode() for s in seen) == VALUES
            r = await c1.get("/apis/history.jetkube.io/v1/namespaces/default/secrets/s1")
            assert r.status_code == 200, r.text

            # The stream's files: the control value is there in plaintext (the scan sees the data),
            # no secret value is, in any encoding.
            store = tmp_path / "nats"
            await poll_until(lambda: CONTROL.encode() in stored_bytes(store))
            raw = stored_bytes(store)
            for v in VALUES:
                assert v.encode() not in raw and base64.b64encode(v.encode()) not in raw

            # Read back raw, without the configuration: kube's stored form, not JSON.
            async with open_bridge(nats_url) as bridge:
                plain = await open_log(bridge, StreamConfig(name="JETKUBE", prefix="jk"))
                subject = object_subject("jk", Key("default", "", "secrets", "default", "s0"))
                m = await plain.last_message(subject)
                assert m is not None and m[2].startswith(b"k8s:enc:aesgcm:v1:key1:")

    # A restart with a rotated configuration (a new key first, the old one kept): every secret is
    # read; a new write uses the new key.
    rotated = encryption(("aescbc", "key2", b"n" * 32), ("aesgcm", "key1", b"k" * 32))
    g3 = await start_server(encryption=rotated)
    async with client_for(g3) as c3, open_bridge(nats_url) as bridge:
        with trio.fail_after(60):
            items = (await c3.get(SECRETS, params={"labelSelector": "app=enc"})).json()["items"]
            assert sorted(base64.b64decode(s["data"]["password"]).decode() for s in items) == VALUES
            r = await c3.post(SECRETS, json={"metadata": {"name": "s9"}, "stringData": {"password": "later"}})
            assert r.status_code == 201, r.text
            plain = await open_log(bridge, StreamConfig(name="JETKUBE", prefix="jk"))
            m = await plain.last_message(object_subject("jk", Key("default", "", "secrets", "default", "s9")))
            assert m is not None and m[2].startswith(b"k8s:enc:aescbc:v1:key2:")
