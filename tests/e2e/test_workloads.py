"""The workload kinds with real clients: kubectl 1.27 and 1.33 (`api-resources`, `apply -f` of a
manifest, `get all`, `scale`) and the official Python client (pods, services, deployments and jobs:
create, list, patch, watch; the deployment's /scale; ``utils.create_from_yaml``)."""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path
from typing import Any

import kubernetes
import kubernetes.utils
import pytest
import trio
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway import Running
from tests.conftest import client_for, default_service_account
from tests.e2e.test_kubectl import kubectl_binary, table

pytestmark = pytest.mark.e2e

MANIFEST = """\
apiVersion: v1
kind: Pod
metadata: {name: p1, labels: {app: web}}
spec:
  containers: [{name: c, image: nginx}]
---
apiVersion: v1
kind: Service
metadata: {name: s1}
spec:
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: nginx}]
"""

# The new kinds `kubectl api-resources` must list: (name, short names, apiVersion, namespaced, kind).
API_RESOURCES = [
    ("pods", "po", "v1", "true", "Pod"),
    ("services", "svc", "v1", "true", "Service"),
    ("replicationcontrollers", "rc", "v1", "true", "ReplicationController"),
    ("nodes", "no", "v1", "false", "Node"),
    ("deployments", "deploy", "apps/v1", "true", "Deployment"),
    ("statefulsets", "sts", "apps/v1", "true", "StatefulSet"),
    ("horizontalpodautoscalers", "hpa", "autoscaling/v2", "true", "HorizontalPodAutoscaler"),
    ("cronjobs", "cj", "batch/v1", "true", "CronJob"),
    ("ingresses", "ing", "networking.k8s.io/v1", "true", "Ingress"),
    ("poddisruptionbudgets", "pdb", "policy/v1", "true", "PodDisruptionBudget"),
    ("certificatesigningrequests", "csr", "certificates.k8s.io/v1", "false", "CertificateSigningRequest"),
]


async def _kubectl(version: str, running: Running, home: Path, *args: str, stdin: str | None = None) -> str:
    home.mkdir(exist_ok=True)
    env = {"KUBECONFIG": str(running.kubeconfig), "HOME": str(home), "KUBECACHEDIR": str(home / "cache"),
           "PATH": "/usr/bin:/bin"}
    with trio.fail_after(60):
        p = await trio.run_process([kubectl_binary(version), *args], capture_stdout=True, capture_stderr=True,
                                   check=False, env=env, stdin=stdin.encode() if stdin else b"")
    assert p.returncode == 0, f"kubectl {' '.join(args)}: {p.stderr.decode()}"
    return p.stdout.decode()


@pytest.mark.parametrize("version", ["1.27", "1.33"])
async def test_kubectl_workloads(version: str, server: Running, tmp_path: Path) -> None:
    home = tmp_path / "home"
    ns = f"w{version.replace('.', '')}"

    async def k(*args: str, stdin: str | None = None) -> str:
        return await _kubectl(version, server, home, *args, stdin=stdin)

    listed = {row[0]: row for row in table(await k("api-resources"))[1:]}
    for name, short, api_version, namespaced, kind in API_RESOURCES:
        assert listed[name] == [name, short, api_version, namespaced, kind], listed.get(name)
    assert "events.k8s.io/v1" in (await k("api-resources", "--api-group=events.k8s.io"))
    await k("create", "namespace", ns)
    async with client_for(server) as api:
        with trio.fail_after(30):
            await default_service_account(api, ns)  # before its pods (the ServiceAccount plugin)
    out = await k("-n", ns, "apply", "-f", "-", stdin=MANIFEST)
    assert out.split("\n")[:3] == ["pod/p1 created", "service/s1 created", "deployment.apps/web created"]
    names = [row[0] for row in table(await k("-n", ns, "get", "all", "-o", "name"))]
    assert names == ["pod/p1", "service/s1", "deployment.apps/web"]
    out = await k("-n", ns, "get", "all")
    assert "pod/p1" in out and "service/s1" in out and "deployment.apps/web" in out
    assert (await k("-n", ns, "scale", "deployment", "web", "--replicas=3")).strip() == "deployment.apps/web scaled"
    dep = json.loads(await k("-n", ns, "get", "deploy", "web", "-o", "json"))
    assert dep["spec"]["replicas"] == 3 and dep["metadata"]["generation"] == 2
    # --current-replicas is a precondition checked against the Scale.
    out = await k("-n", ns, "scale", "deploy/web", "--current-replicas=3", "--replicas=1")
    assert "scaled" in out
    scale = json.loads(await k("get", "--raw", f"/apis/apps/v1/namespaces/{ns}/deployments/web/scale"))
    assert scale["spec"] == {"replicas": 1} and scale["status"]["selector"] == "app=web"
    pod = json.loads(await k("-n", ns, "get", "po", "p1", "-o", "json"))
    assert pod["status"]["phase"] == "Pending" and pod["metadata"]["generation"] == 1
    # `kubectl drain`: cordon (a node patch), the node's pods by field selector, their evictions.
    node = f"node-{ns}"
    await k("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}))
    await k("-n", ns, "apply", "-f", "-", stdin=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bound"},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}]}}))
    await k("-n", ns, "patch", "pod", "bound", "--subresource=status", "--type=merge",
            "-p", '{"status":{"phase":"Running"}}')
    out = await k("drain", node, "--force", "--timeout=30s")
    assert "pod/bound evicted" in out and f"node/{node} drained" in out, out
    assert json.loads(await k("get", "node", node, "-o", "json"))["spec"]["unschedulable"] is True
    assert [row[0] for row in table(await k("-n", ns, "get", "pods", "-o", "name"))] == ["pod/p1"]
    # `kubectl debug`: an ephemeral container through pods/ephemeralcontainers. (The pod states its
    # securityContext: kubectl reads it, and pod defaulting is not part of this test.)
    await k("-n", ns, "apply", "-f", "-", stdin=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "dbg"},
        "spec": {"securityContext": {}, "containers": [{"name": "c", "image": "nginx"}]}}))
    await k("-n", ns, "debug", "dbg", "--image=busybox", "--container=debugger")
    pod = json.loads(await k("-n", ns, "get", "pod", "dbg", "-o", "json"))
    assert [c["name"] for c in pod["spec"]["ephemeralContainers"]] == ["debugger"]
    if version == "1.27":  # 1.32+ send the CSR as protobuf: that is the protobuf codec's test
        csr = f"csr-{ns}"
        await k("apply", "-f", "-", stdin=json.dumps({
            "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": csr},
            "spec": {"request": _csr_pem_b64(), "signerName": "kubernetes.io/kube-apiserver-client",
                     "usages": ["client auth"]}}))
        out = await k("certificate", "approve", csr)
        assert out.strip() == f"certificatesigningrequest.certificates.k8s.io/{csr} approved"
        got = json.loads(await k("get", "csr", csr, "-o", "json"))
        assert [(c["type"], c["reason"]) for c in got["status"]["conditions"]] == [("Approved", "KubectlApprove")]


def _csr_pem_b64() -> str:
    """A PEM certificate request (CN=alice), base64 as a CSR's spec.request holds it."""
    key = ec.generate_private_key(ec.SECP256R1())
    req = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alice")])).sign(key, hashes.SHA256())
    return base64.b64encode(req.public_bytes(serialization.Encoding.PEM)).decode()


def _clients(running: Running) -> Any:
    api_client = kubernetes.config.new_client_from_config(config_file=str(running.kubeconfig))
    return (api_client, kubernetes.client.CoreV1Api(api_client), kubernetes.client.AppsV1Api(api_client),
            kubernetes.client.BatchV1Api(api_client))


def _pod(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"app": "py"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}


def _deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {"metadata": {"name": name}, "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
        "metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}


def _job(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}


async def test_python_client_workloads(server: Running) -> None:
    api_client, core, apps, batch = await trio.to_thread.run_sync(_clients, server)
    ns = "default"

    def watch_all(fn: Any, rv: str, want: int, out: list[tuple[str, str]], ready: threading.Event) -> None:
        w = kubernetes.watch.Watch()
        ready.set()
        for ev in w.stream(fn, ns, resource_version=rv, timeout_seconds=30):
            out.append((ev["type"], ev["object"].metadata.name))
            if len(out) >= want:
                w.stop()

    def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        kinds = {
            "pods": (core.create_namespaced_pod, core.list_namespaced_pod, core.patch_namespaced_pod, _pod),
            "services": (core.create_namespaced_service, core.list_namespaced_service,
                         core.patch_namespaced_service,
                         lambda n: {"metadata": {"name": n}, "spec": {"ports": [{"port": 80}]}}),
            "deployments": (apps.create_namespaced_deployment, apps.list_namespaced_deployment,
                            apps.patch_namespaced_deployment, _deployment),
            "jobs": (batch.create_namespaced_job, batch.list_namespaced_job, batch.patch_namespaced_job, _job),
        }
        for plural, (create, list_, patch, make) in kinds.items():
            rv = list_(ns).metadata.resource_version
            seen: list[tuple[str, str]] = []
            ready = threading.Event()
            t = threading.Thread(target=watch_all, args=(list_, rv, 4, seen, ready), daemon=True)
            t.start()
            ready.wait(10)
            for i in range(3):
                create(ns, make(f"{plural[:3]}{i}"))
            patch(f"{plural[:3]}0", ns, {"metadata": {"labels": {"patched": "yes"}}})
            t.join(30)
            out[plural] = {"listed": sorted(i.metadata.name for i in list_(ns).items),
                           "labelled": [i.metadata.name for i in list_(ns, label_selector="patched=yes").items],
                           "watched": seen}
        scale = apps.patch_namespaced_deployment_scale("dep1", ns, {"spec": {"replicas": 5}})
        out["scale"] = (scale.kind, scale.spec.replicas, scale.status.selector)
        out["scale_read"] = apps.read_namespaced_deployment_scale("dep1", ns).spec.replicas
        out["deployment_replicas"] = apps.read_namespaced_deployment("dep1", ns).spec.replicas
        status = apps.patch_namespaced_deployment_status("dep1", ns, {"status": {"replicas": 5}})
        out["status"] = (status.status.replicas, status.spec.replicas, status.metadata.generation)
        manifest = list(yaml.safe_load_all(MANIFEST.replace("name: p1", "name: yp").replace(
            "name: s1", "name: ys").replace("name: web}", "name: yweb}")))
        created = kubernetes.utils.create_from_yaml(api_client, yaml_objects=manifest, namespace=ns)
        out["from_yaml"] = [o.kind for group in created for o in group]
        return out

    with trio.fail_after(120):
        out = await trio.to_thread.run_sync(scenario)
    for plural in ("pods", "services", "deployments", "jobs"):
        p = plural[:3]
        got = out[plural]
        assert set(got["listed"]) >= {f"{p}0", f"{p}1", f"{p}2"}, got
        assert got["labelled"] == [f"{p}0"]
        assert got["watched"] == [("ADDED", f"{p}0"), ("ADDED", f"{p}1"), ("ADDED", f"{p}2"),
                                  ("MODIFIED", f"{p}0")], plural
    assert out["scale"] == ("Scale", 5, "app=dep1")
    assert out["scale_read"] == 5 and out["deployment_replicas"] == 5
    assert out["status"] == (5, 5, 2)
    assert out["from_yaml"] == ["Pod", "Service", "Deployment"]
