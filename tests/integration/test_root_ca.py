"""The root-CA publisher (issue 17): ``kube-root-ca.crt`` in every namespace, as kube's
rootcacertpublisher keeps it: created for every namespace (also new ones), re-created when deleted,
restored when edited. Every wait is a watch event, bounded by ``fail_after``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.conftest import StartServer, client_for

pytestmark = pytest.mark.integration

NAME = "kube-root-ca.crt"
DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints "
               "such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across "
               "distributions of Kubernetes clusters.")


async def _events(api: httpx.AsyncClient) -> AsyncIterator[dict[str, Any]]:
    url = f"/api/v1/configmaps?watch=1&resourceVersion=0&fieldSelector=metadata.name%3D{NAME}"
    async with api.stream("GET", url) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if line:
                yield json.loads(line)


def _published(obj: dict[str, Any], ca: str) -> bool:
    return (obj["data"] == {"ca.crt": ca}
            and obj["metadata"].get("annotations", {}).get("kubernetes.io/description") == DESCRIPTION)


async def test_root_ca_configmap_in_every_namespace(start_server: StartServer, tmp_path: Path) -> None:
    server = await start_server(data_dir=str(tmp_path / "jk"))
    ca = (tmp_path / "jk" / "pki" / "ca.crt").read_text()
    assert ca.startswith("-----BEGIN CERTIFICATE-----")
    async with client_for(server) as api, client_for(server) as writer:
        with trio.fail_after(30):
            for ns in ("n1", "n2"):
                assert (await writer.post("/api/v1/namespaces", json={"metadata": {"name": ns}})).status_code == 201
            events = _events(api)
            seen: dict[str, dict[str, Any]] = {}
            want = {"default", "kube-system", "kube-public", "kube-node-lease", "n1", "n2"}
            async for ev in events:
                assert ev["type"] == "ADDED", ev
                seen[ev["object"]["metadata"]["namespace"]] = ev["object"]
                if set(seen) == want:
                    break
            assert all(_published(obj, ca) for obj in seen.values())

            # Deleted: re-created.
            r = await writer.delete(f"/api/v1/namespaces/n1/configmaps/{NAME}")
            assert r.status_code == 200, r.text
            ev = await events.__anext__()
            assert (ev["type"], ev["object"]["metadata"]["namespace"]) == ("DELETED", "n1")
            ev = await events.__anext__()
            assert (ev["type"], ev["object"]["metadata"]["namespace"]) == ("ADDED", "n1")
            assert _published(ev["object"], ca)

            # Edited (data and the description): restored; other annotations stay.
            r = await writer.patch(f"/api/v1/namespaces/n2/configmaps/{NAME}",
                                   content=json.dumps({"data": {"ca.crt": "forged", "extra": "x"}, "metadata": {
                                       "annotations": {"kubernetes.io/description": None, "keep": "me"}}}),
                                   headers={"Content-Type": "application/merge-patch+json"})
            assert r.status_code == 200, r.text
            ev = await events.__anext__()
            assert (ev["type"], ev["object"]["data"]["ca.crt"]) == ("MODIFIED", "forged")
            ev = await events.__anext__()
            assert (ev["type"], ev["object"]["metadata"]["namespace"]) == ("MODIFIED", "n2")
            assert _published(ev["object"], ca) and ev["object"]["metadata"]["annotations"]["keep"] == "me"

            # A new namespace gets one.
            assert (await writer.post("/api/v1/namespaces", json={"metadata": {"name": "n3"}})).status_code == 201
            ev = await events.__anext__()
            assert (ev["type"], ev["object"]["metadata"]["namespace"]) == ("ADDED", "n3")
            assert _published(ev["object"], ca)
            await events.aclose()



async def test_ready_with_root_ca_and_replicas_with_another_ca_do_not_fight(start_server: StartServer,
                                                                            tmp_path: Path) -> None:
    a = await start_server(data_dir=str(tmp_path / "a"))
    ca = (tmp_path / "a" / "pki" / "ca.crt").read_text()
    async with client_for(a) as api:
        with trio.fail_after(30):
            # Ready means the default namespaces are complete.
            for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
                r = await api.get(f"/api/v1/namespaces/{ns}/configmaps/{NAME}")
                assert r.status_code == 200 and _published(r.json(), ca), r.text
            before = (await api.get(f"/api/v1/namespaces/default/configmaps/{NAME}")).json()
            # A misconfigured replica with a CA of its own (its data dir) reconciles the default
            # namespaces before it is ready: it leaves the first replica's CA alone.
            await start_server(data_dir=str(tmp_path / "b"))
            assert (tmp_path / "b" / "pki" / "ca.crt").read_text() != ca
            after = (await api.get(f"/api/v1/namespaces/default/configmaps/{NAME}")).json()
            assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
            # A user's edit is still restored (by either replica: both may, the first one wins).
            r = await api.patch(f"/api/v1/namespaces/default/configmaps/{NAME}", content=b'{"data":{"ca.crt":"x"}}',
                                headers={"Content-Type": "application/merge-patch+json"})
            assert r.status_code == 200, r.text
            events = _events(api)
            async for ev in events:
                if ev["object"]["metadata"]["namespace"] == "default" and ev["object"]["data"]["ca.crt"] != "x":
                    break
            await events.aclose()
            assert ev["object"]["data"]["ca.crt"].startswith("-----BEGIN CERTIFICATE")
