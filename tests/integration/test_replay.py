"""``jetkube replay`` and ``jetkube serve --read-only --at``: the state at a past version, of several
kinds and tenants, as files and as a read-only server."""

from __future__ import annotations

import base64
import contextlib
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import trio
import yaml

from gateway._cli import main
from tests.conftest import client_for
from tests.integration.test_tenancy import create_tenant, t

pytestmark = pytest.mark.integration

CM = "/api/v1/namespaces/default/configmaps"
SECRETS = "/api/v1/namespaces/default/secrets"
H = "/apis/history.jetkube.io/v1"
MERGE = {"Content-Type": "application/merge-patch+json"}
SECRET_VALUE = "hunter2-do-not-log"


def cm(name: str, **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


async def _head(c: httpx.AsyncClient) -> int:
    return int((await c.get(f"{H}/compaction")).json()["lastSequence"])


def _replay(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(["replay", *argv])
    return code, out.getvalue()


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


async def test_replay_and_read_only_server_at_a_past_version(start_server, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    g1 = await start_server()
    async with client_for(g1) as a:
        with trio.fail_after(120):
            await create_tenant(a, "t1")
            for i in range(12):
                assert (await a.post(CM, json=cm(f"a{i}", v="old"))).status_code == 201
            r = await a.post(SECRETS, json={"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1"},
                                            "stringData": {"password": SECRET_VALUE}})
            assert r.status_code == 201, r.text
            assert (await a.post("/api/v1/namespaces", json={"metadata": {"name": "team"}})).status_code == 201
            assert (await a.post("/api/v1/namespaces/team/configmaps", json=cm("tc", v="1"))).status_code == 201
            for i in range(5):
                assert (await a.post(t("t1", CM), json=cm(f"b{i}", v="old"))).status_code == 201
            at = await _head(a)
            at_time = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            await trio.sleep(0.01)  # the stored timestamps after ``at_time`` must be later: the clock moves
            # After: an update, a delete, a create, in both tenants; the secret goes too.
            assert (await a.patch(f"{CM}/a0", content=b'{"data":{"v":"new"}}', headers=MERGE)).status_code == 200
            assert (await a.delete(f"{CM}/a1")).status_code == 200
            assert (await a.post(CM, json=cm("a99", v="new"))).status_code == 201
            assert (await a.delete(f"{SECRETS}/s1")).status_code == 200
            assert (await a.patch(t("t1", f"{CM}/b0"), content=b'{"data":{"v":"new"}}',
                                  headers=MERGE)).status_code == 200
            assert (await a.delete(t("t1", f"{CM}/b1"))).status_code == 200

            # ---- jetkube replay --to RV: every tenant
            out = tmp_path / "all"
            code, text = await trio.to_thread.run_sync(_replay, "--to", str(at), "--nats-url", g1.nats_url,
                                                       "-o", str(out))
            assert code == 0, text
            root_cm = out / "root" / "default" / "configmaps"
            assert sorted(p.stem for p in root_cm.glob("a*.yaml")) == sorted(f"a{i}" for i in range(12))
            assert _load(root_cm / "a0.yaml")["data"] == {"v": "old"}
            assert int(_load(root_cm / "a0.yaml")["metadata"]["resourceVersion"]) <= at
            secret_file = out / "root" / "default" / "secrets" / "s1.yaml"
            assert secret_file.stat().st_mode & 0o077 == 0 and (out / "root").stat().st_mode & 0o077 == 0
            secret = _load(secret_file)
            assert base64.b64decode(secret["data"]["password"]).decode() == SECRET_VALUE  # as the API serves it
            assert _load(out / "root" / "team" / "configmaps" / "tc.yaml")["data"] == {"v": "1"}
            assert (out / "root" / "_cluster" / "namespaces" / "team.yaml").exists()
            assert (out / "root" / "_cluster" / "logicalclusters.tenancy.jetkube.io" / "t1.yaml").exists()
            t1_cm = out / "t1" / "default" / "configmaps"
            assert sorted(p.stem for p in t1_cm.glob("b*.yaml")) == [f"b{i}" for i in range(5)]
            assert _load(t1_cm / "b0.yaml")["data"] == {"v": "old"}
            # No value of the secret in what the command printed or logged.
            logged = text + "\n".join(r.getMessage() for r in caplog.records)
            assert SECRET_VALUE not in logged and base64.b64encode(SECRET_VALUE.encode()).decode() not in logged

            # ---- --tenant: that tenant's objects only; --to TIME: the same state as at that time
            only = tmp_path / "t1"
            code, text = await trio.to_thread.run_sync(_replay, "--to", at_time, "--tenant", "t1", "--nats-url",
                                                       g1.nats_url, "-o", str(only))
            assert code == 0, text
            assert [p.name for p in only.iterdir()] == ["t1"]
            assert sorted(p.stem for p in (only / "t1" / "default" / "configmaps").glob("b*.yaml")) == \
                [f"b{i}" for i in range(5)]
            assert _load(only / "t1" / "default" / "configmaps" / "b0.yaml")["data"] == {"v": "old"}
            # Beyond the head: refused.
            code, text = await trio.to_thread.run_sync(_replay, "--to", str(at + 10**6), "--nats-url", g1.nats_url,
                                                       "-o", str(tmp_path / "x"))
            assert code == 1 and "Too large resource version" in text, text

    # ---- jetkube serve --read-only --at RV
    ro = await start_server(read_only=True, read_only_at=str(at))
    async with client_for(ro) as c:
        with trio.fail_after(60):
            r = await c.get(CM)
            assert r.status_code == 200 and r.json()["metadata"]["resourceVersion"] == str(at), r.text
            items = {i["metadata"]["name"]: i["data"] for i in r.json()["items"] if i["metadata"]["name"] != "kube-root-ca.crt"}
            assert items == {f"a{i}": {"v": "old"} for i in range(12)}
            assert (await c.get(f"{SECRETS}/s1")).status_code == 200
            assert (await c.get(f"{CM}/a99")).status_code == 404
            r = await c.get(t("t1", CM))
            assert sorted(i["metadata"]["name"] for i in r.json()["items"] if i["metadata"]["name"].startswith("b")) \
                == [f"b{i}" for i in range(5)]
            for req in (c.post(CM, json=cm("nope")), c.patch(f"{CM}/a0", content=b"{}", headers=MERGE),
                        c.put(f"{CM}/a0", json=cm("a0")), c.delete(f"{CM}/a0"), c.post(t("t1", CM), json=cm("x"))):
                r = await req
                assert r.status_code == 405 and r.json()["reason"] == "MethodNotAllowed", r.text
            # Reviews store nothing: still answered.
            r = await c.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", json={
                "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": {"verb": "get", "resource": "configmaps", "namespace": "default"}}})
            assert r.status_code == 201 and r.json()["status"]["allowed"] is True, r.text
            # A watch from the version sees nothing happen: the state is frozen there.
            async with c.stream("GET", CM, params={"watch": "1", "resourceVersion": str(at), "timeoutSeconds": "1",
                                                  "allowWatchBookmarks": "false"}) as w:
                lines = [json.loads(x) for x in [x async for x in w.aiter_lines()] if x]
            assert lines == []
            # kubectl against it: reads work, a write is refused with kube's reason.
            kube = ["kubectl", "--kubeconfig", str(ro.kubeconfig)]
            got = await trio.run_process([*kube, "get", "cm", "-o", "name"], capture_stdout=True)
            assert "configmap/a1" in got.stdout.decode() and "configmap/a99" not in got.stdout.decode()
            bad = await trio.run_process([*kube, "create", "cm", "z"], capture_stderr=True, check=False)
            assert bad.returncode != 0 and b"does not allow this method" in bad.stderr, bad.stderr
