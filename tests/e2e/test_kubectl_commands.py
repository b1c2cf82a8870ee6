"""The kubectl commands of issue 11's "done when", with kubectl 1.27 (JSON bodies) and 1.33 (protobuf
bodies for most creates), against one jetkube: each command's output, and the stored object as
kube-apiserver would store it (defaults, allocated addresses, generation, garbage collection)."""

from __future__ import annotations

import datetime
import ipaddress
import json
from pathlib import Path

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway import Running
from tests.conftest import client_for, default_service_account, poll_until
from tests.e2e.test_kubectl import table
from tests.e2e.test_workloads import _kubectl

pytestmark = pytest.mark.e2e

SERVICE_RANGE = ipaddress.ip_network("10.96.0.0/12")


def _tls_files(d: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "web.example")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    crt, pem = d / "tls.crt", d / "tls.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return crt, pem


@pytest.mark.parametrize("version", ["1.27", "1.33"])
async def test_kubectl_workload_commands(version: str, server: Running, tmp_path: Path) -> None:
    home = tmp_path / "home"
    ns = f"cmd{version.replace('.', '')}"

    async def k(*args: str, stdin: str | None = None) -> str:
        return (await _kubectl(version, server, home, *args, stdin=stdin)).strip()

    async def get(kind: str, name: str) -> dict:
        return json.loads(await k("-n", ns, "get", kind, name, "-o", "json"))

    await k("create", "namespace", ns)
    async with client_for(server) as api:
        with trio.fail_after(30):
            await default_service_account(api, ns)  # before its pods (the ServiceAccount plugin)

    # run: a Pod with kube's defaults, Pending.
    assert await k("-n", ns, "run", "web-pod", "--image=nginx:1.25", "--labels=app=web") == "pod/web-pod created"
    pod = await get("pod", "web-pod")
    c = pod["spec"]["containers"][0]
    assert (c["image"], c["imagePullPolicy"], c["terminationMessagePath"]) == (
        "nginx:1.25", "IfNotPresent", "/dev/termination-log")
    assert (pod["spec"]["restartPolicy"], pod["spec"]["dnsPolicy"], pod["spec"]["schedulerName"]) == (
        "Always", "ClusterFirst", "default-scheduler")
    assert pod["status"] == {"phase": "Pending", "qosClass": "BestEffort"}

    # create deployment: kube's Deployment defaults, generation 1.
    out = await k("-n", ns, "create", "deployment", "web", "--image=nginx", "--replicas=2")
    assert out == "deployment.apps/web created"
    dep = await get("deployment", "web")
    assert dep["spec"]["strategy"] == {"type": "RollingUpdate",
                                       "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert (dep["spec"]["revisionHistoryLimit"], dep["spec"]["progressDeadlineSeconds"]) == (10, 600)
    assert dep["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "Always"  # no tag
    assert dep["metadata"]["generation"] == 1

    # create job / cronjob.
    assert await k("-n", ns, "create", "job", "pi", "--image=perl", "--", "perl", "-e", "1") == "job.batch/pi created"
    job = await get("job", "pi")
    assert (job["spec"]["backoffLimit"], job["spec"]["completions"], job["spec"]["parallelism"]) == (6, 1, 1)
    uid = job["metadata"]["uid"]
    assert job["spec"]["selector"]["matchLabels"] == {"batch.kubernetes.io/controller-uid": uid}
    out = await k("-n", ns, "create", "cronjob", "nightly", "--image=busybox", "--schedule=0 1 * * *")
    assert out == "cronjob.batch/nightly created"
    cj = await get("cronjob", "nightly")
    assert (cj["spec"]["concurrencyPolicy"], cj["spec"]["successfulJobsHistoryLimit"],
            cj["spec"]["failedJobsHistoryLimit"], cj["spec"]["suspend"]) == ("Allow", 3, 1, False)

    # create service clusterip / nodeport: allocated addresses.
    assert await k("-n", ns, "create", "service", "clusterip", "cip", "--tcp=80:8080") == "service/cip created"
    svc = await get("service", "cip")
    assert ipaddress.ip_address(svc["spec"]["clusterIP"]) in SERVICE_RANGE
    assert svc["spec"]["clusterIPs"] == [svc["spec"]["clusterIP"]] and svc["spec"]["ipFamilies"] == ["IPv4"]
    assert svc["spec"]["ports"][0]["targetPort"] == 8080 and svc["spec"]["sessionAffinity"] == "None"
    assert await k("-n", ns, "create", "service", "nodeport", "np", "--tcp=80:8080") == "service/np created"
    np = await get("service", "np")
    assert 30000 <= np["spec"]["ports"][0]["nodePort"] <= 32767
    assert np["spec"]["clusterIP"] != svc["spec"]["clusterIP"]

    # ingress, quota, priorityclass, pdb, secret tls.
    out = await k("-n", ns, "create", "ingress", "ing", "--rule=foo.com/bar=cip:80")
    assert out == "ingress.networking.k8s.io/ing created"
    assert (await get("ingress", "ing"))["spec"]["rules"][0]["http"]["paths"][0]["pathType"] == "Exact"
    assert await k("-n", ns, "create", "quota", "q", "--hard=pods=10") == "resourcequota/q created"
    pc = f"high-{ns}"
    assert await k("create", "priorityclass", pc, "--value=1000") == f"priorityclass.scheduling.k8s.io/{pc} created"
    assert json.loads(await k("get", "priorityclass", pc, "-o", "json"))["preemptionPolicy"] == "PreemptLowerPriority"
    out = await k("-n", ns, "create", "pdb", "pdb", "--selector=app=web", "--min-available=1")
    assert out == "poddisruptionbudget.policy/pdb created"
    crt, key = _tls_files(tmp_path)
    out = await k("-n", ns, "create", "secret", "tls", "tls", f"--cert={crt}", f"--key={key}")
    assert out == "secret/tls created"
    assert (await get("secret", "tls"))["type"] == "kubernetes.io/tls"

    # expose, scale, set image, label.
    out = await k("-n", ns, "expose", "deployment", "web", "--port=80", "--target-port=8080")
    assert out == "service/web exposed"
    exposed = await get("service", "web")
    assert exposed["spec"]["selector"] == {"app": "web"}
    assert ipaddress.ip_address(exposed["spec"]["clusterIP"]) in SERVICE_RANGE
    assert await k("-n", ns, "scale", "deployment", "web", "--replicas=3") == "deployment.apps/web scaled"
    out = await k("-n", ns, "set", "image", "deployment/web", "nginx=nginx:1.26")
    assert out == "deployment.apps/web image updated"
    dep = await get("deployment", "web")
    assert dep["spec"]["replicas"] == 3 and dep["metadata"]["generation"] == 3
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.26"
    assert await k("-n", ns, "label", "pod", "web-pod", "tier=front") == "pod/web-pod labeled"
    assert (await get("pod", "web-pod"))["metadata"]["labels"] == {"app": "web", "tier": "front"}

    # get all: every kind of the `all` category that exists here.
    names = {row[0] for row in table(await k("-n", ns, "get", "all", "-o", "name"))}
    assert {"pod/web-pod", "service/cip", "service/np", "service/web", "deployment.apps/web", "job.batch/pi",
            "cronjob.batch/nightly"} <= names

    # rollout history: answered from the ReplicaSets a controller would have written (none runs here).
    for rev, image in ((1, "nginx"), (2, "nginx:1.26")):
        rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
              "metadata": {"name": f"web-{rev}", "labels": {"app": "web", "pod-template-hash": str(rev)},
                           "annotations": {"deployment.kubernetes.io/revision": str(rev)},
                           "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                                "uid": dep["metadata"]["uid"], "controller": True,
                                                "blockOwnerDeletion": True}]},
              "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web", "pod-template-hash": str(rev)}},
                       "template": {"metadata": {"labels": {"app": "web", "pod-template-hash": str(rev)}},
                                    "spec": {"containers": [{"name": "nginx", "image": image}]}}}}
        await k("-n", ns, "apply", "-f", "-", stdin=json.dumps(rs))
    history = table(await k("-n", ns, "rollout", "history", "deployment/web"))
    assert history[0] == ["deployment.apps/web"] and history[1] == ["REVISION", "CHANGE-CAUSE"]
    assert history[2:] == [["1", "<none>"], ["2", "<none>"]]

    # delete --cascade=foreground: the ReplicaSets go first, then the Deployment (kubectl waits for it).
    out = await k("-n", ns, "delete", "deployment", "web", "--cascade=foreground")
    assert out == 'deployment.apps "web" deleted'
    with trio.fail_after(30):
        async def gone() -> bool:
            rows = table(await k("-n", ns, "get", "replicasets,deployments", "-o", "name"))
            return rows == []
        await poll_until(gone)
