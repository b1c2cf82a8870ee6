"""Server-side apply with real clients: kubectl 1.27 and 1.33 (`apply --server-side`, its upgrade
from client-side apply, `--force-conflicts`, `diff --server-side`, `--dry-run=server`) and the
official Python client (a raw apply patch and ``patch_namespaced_config_map``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import trio
import yaml

from gateway import Running
from tests.e2e.test_kubectl import kubectl_binary

pytestmark = pytest.mark.e2e


def manifest(replicas: int, image: str, name: str = "web") -> str:
    return yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": image}]}}}})


async def _run(version: str, running: Running, home: Path, *args: str,
               stdin: str | None = None) -> tuple[int, str, str]:
    home.mkdir(exist_ok=True)
    env = {"KUBECONFIG": str(running.kubeconfig), "HOME": str(home), "KUBECACHEDIR": str(home / "cache"),
           "PATH": "/usr/bin:/bin"}
    with trio.fail_after(60):
        p = await trio.run_process([kubectl_binary(version), *args], capture_stdout=True, capture_stderr=True,
                                   check=False, env=env, stdin=stdin.encode() if stdin else b"")
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def managers(obj: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["manager"], e["operation"]): e["fieldsV1"] for e in obj["metadata"].get("managedFields") or []}


@pytest.mark.parametrize("version", ["1.27", "1.33"])
async def test_kubectl_server_side_apply(version: str, server: Running, tmp_path: Path) -> None:
    home = tmp_path / "home"
    ns = f"ssa{version.replace('.', '')}"

    async def k(*args: str, stdin: str | None = None, rc: int = 0) -> str:
        code, out, err = await _run(version, server, home, "-n", ns, *args, stdin=stdin)
        assert code == rc, f"kubectl {' '.join(args)}: rc={code} {err}{out}"
        return out + err

    async def get() -> dict[str, Any]:
        return json.loads(await k("get", "deploy", "web", "-o", "json", "--show-managed-fields"))

    await k("create", "namespace", ns)
    # Client-side apply first, then the upgrade to server-side apply: no conflicts.
    assert "created" in await k("apply", "-f", "-", stdin=manifest(2, "nginx:1"))
    assert ("kubectl-client-side-apply", "Update") in managers(await get())
    out = await k("apply", "--server-side", "-f", "-", stdin=manifest(2, "nginx:2"))
    assert "deployment.apps/web serverside-applied" in out
    d = await get()
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:2"
    m = managers(d)
    assert "f:replicas" in m[("kubectl", "Apply")]["f:spec"]
    # Another manager's change to replicas: kubectl conflicts, then forces.
    await k("apply", "--server-side", "--field-manager=scaler", "--force-conflicts", "-f", "-",
            stdin=yaml.safe_dump({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                                  "spec": {"replicas": 5}}))
    out = await k("apply", "--server-side", "-f", "-", stdin=manifest(3, "nginx:2"), rc=1)
    assert 'conflict with "scaler": .spec.replicas' in out, out
    # `kubectl diff --server-side` shows what an apply would change (exit 1: differences).
    out = await k("diff", "--server-side", "--force-conflicts", "-f", "-", stdin=manifest(3, "nginx:3"), rc=1)
    assert "-  replicas: 5" in out and "+  replicas: 3" in out and "+      - image: nginx:3" in out
    assert "-  resourceVersion" not in out, out
    # A server dry run: answered, nothing written.
    out = await k("apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", "-",
                  stdin=manifest(3, "nginx:3"))
    assert "serverside-applied (server dry run)" in out
    assert (await get())["spec"]["replicas"] == 5
    out = await k("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=manifest(3, "nginx:3"))
    d = await get()
    assert d["spec"]["replicas"] == 3 and ("scaler", "Apply") not in managers(d)
    # Apply creates, and a second applier's container merges by name.
    await k("apply", "--server-side", "-f", "-", stdin=manifest(1, "nginx", name="other"))
    side = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "other"},
            "spec": {"template": {"spec": {"containers": [{"name": "side", "image": "busybox"}]}}}}
    await k("apply", "--server-side", "--field-manager=mesh", "-f", "-", stdin=yaml.safe_dump(side))
    d = json.loads(await k("get", "deploy", "other", "-o", "json"))
    assert [c["name"] for c in d["spec"]["template"]["spec"]["containers"]] == ["c", "side"]


async def test_python_client_apply(server: Running) -> None:
    def run() -> None:
        cfg = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(server.kubeconfig), client_configuration=cfg)
        with kubernetes.client.ApiClient(cfg) as client:
            core = kubernetes.client.CoreV1Api(client)
            for i in range(3):
                body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"py{i}"},
                        "data": {"k": str(i)}}
                # The generated client picks the content type given (apply) for the patch.
                cm = core.patch_namespaced_config_map(
                    f"py{i}", "default", body, field_manager="py", _content_type="application/apply-patch+yaml")
                assert cm.data == {"k": str(i)}
                assert [(e.manager, e.operation) for e in cm.metadata.managed_fields] == [("py", "Apply")]
                # A raw request: an apply conflict is a 409 with the causes.
                req = client.param_serialize(
                    "PATCH", f"/api/v1/namespaces/default/configmaps/py{i}", query_params=[("fieldManager", "other")],
                    header_params={"Content-Type": "application/apply-patch+yaml"},
                    body={**body, "data": {"k": "x"}}, auth_settings=["BearerToken"])
                resp = client.call_api(*req)
                resp.read()
                assert resp.status == 409, resp.data
                st = json.loads(resp.data)
                assert st["details"]["causes"][0]["field"] == ".data.k"

    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            run()
        except BaseException as e:  # noqa: BLE001 - reported to the test below
            errors.append(e)

    with trio.fail_after(60):
        await trio.to_thread.run_sync(guarded)
    assert not errors, errors[0]
