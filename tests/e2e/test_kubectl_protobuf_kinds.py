"""kubectl 1.33's protobuf request bodies of the issue-11 kinds decode (kinds/_protobuf_tables.json).

The kinds are not served yet (their definitions and strategies are another change); this test serves
them with plain definitions (stored as sent, no defaulting), so that what kubectl 1.33's typed
clients really send (``Content-Type: application/vnd.kubernetes.protobuf``) for ``create deployment``,
``create job|cronjob|service|quota|priorityclass|pdb|ingress`` reaches the store, and the stored
object is compared with what the command asked for (``run`` and ``expose`` 1.33 send JSON; checked
as well).
"""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path
from typing import Any

import pytest
import trio

import gateway._server
from kinds import BUILTIN, Registry, ResourceDef
from tests.e2e.test_kubectl import kubectl_binary

pytestmark = pytest.mark.e2e

EXTRA = (
    ResourceDef("apps", "v1", "Deployment", "deployments", "deployment", True, ("deploy",)),
    ResourceDef("batch", "v1", "Job", "jobs", "job", True),
    ResourceDef("batch", "v1", "CronJob", "cronjobs", "cronjob", True, ("cj",)),
    ResourceDef("", "v1", "Service", "services", "service", True, ("svc",)),
    ResourceDef("", "v1", "ResourceQuota", "resourcequotas", "resourcequota", True, ("quota",)),
    ResourceDef("", "v1", "Pod", "pods", "pod", True, ("po",)),
    ResourceDef("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", "priorityclass", False, ("pc",)),
    ResourceDef("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", True,
                ("pdb",)),
    ResourceDef("networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", True, ("ing",)),
)


async def kubectl(binary: str, kubeconfig: Path, home: Path, *args: str) -> tuple[str, str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(home), "KUBECACHEDIR": str(home / "cache")}
    p = await trio.run_process([binary, *args], capture_stdout=True, capture_stderr=True, env=env, check=False)
    out, err = p.stdout.decode(), p.stderr.decode()
    assert p.returncode == 0, f"kubectl {' '.join(args)} -> {p.returncode}\n{out}\n{err[-4000:]}"
    return out, err


async def test_kubectl_133_protobuf_bodies_of_new_kinds(start_server: Any, monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    binary = kubectl_binary("1.33")
    monkeypatch.setattr(gateway._server, "Registry", lambda: Registry(BUILTIN + EXTRA))
    server = await start_server()
    kc = server.kubeconfig

    async def run(*args: str, protobuf: bool = True) -> str:
        _, err = await kubectl(binary, kc, tmp_path, "-v=8", *args)
        # The typed client's POST: a protobuf body (the request headers are logged at -v=8).
        sent = "Content-Type: application/vnd.kubernetes.protobuf" in err
        assert sent is protobuf, err[-3000:]
        return err

    async def get(*args: str) -> dict[str, Any]:
        out, _ = await kubectl(binary, kc, tmp_path, "get", "-o", "json", *args)
        return json.loads(out)

    with trio.fail_after(120):
        await run("create", "deployment", "web", "--image=nginx:1.27", "--replicas=3", "--port=80")
        d = await get("deployment", "web")
        assert d["spec"]["replicas"] == 3 and d["spec"]["selector"] == {"matchLabels": {"app": "web"}}
        assert d["spec"]["template"]["metadata"]["labels"] == {"app": "web"}
        c = d["spec"]["template"]["spec"]["containers"]
        assert [(x["name"], x["image"], x["ports"]) for x in c] == [("nginx", "nginx:1.27", [{"containerPort": 80, "protocol": "TCP"}])]

        await run("create", "job", "pi", "--image=perl:5.34", "--", "perl", "-e", "print 1")
        j = await get("job", "pi")
        pod = j["spec"]["template"]["spec"]
        assert pod["restartPolicy"] == "Never" and pod["containers"][0]["command"] == ["perl", "-e", "print 1"]

        await run("create", "cronjob", "tick", "--image=busybox", "--schedule=*/5 * * * *", "--", "date")
        cj = await get("cronjob", "tick")
        assert cj["spec"]["schedule"] == "*/5 * * * *"
        assert cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"

        await run("create", "service", "nodeport", "np", "--tcp=80:8080", "--node-port=30080")
        svc = await get("service", "np")
        assert svc["spec"]["type"] == "NodePort"
        assert svc["spec"]["ports"] == [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080,
                                         "nodePort": 30080}]

        await run("create", "quota", "q", "--hard=pods=10,requests.cpu=2")
        q = await get("quota", "q")
        assert q["spec"]["hard"] == {"pods": "10", "requests.cpu": "2"}

        await run("create", "priorityclass", "high", "--value=1000", "--description=important")
        pc = await get("priorityclass", "high")
        assert (pc["value"], pc["description"], pc.get("globalDefault", False)) == (1000, "important", False)

        await run("create", "pdb", "web", "--selector=app=web", "--min-available=50%")
        pdb = await get("pdb", "web")
        assert pdb["spec"] == {"minAvailable": "50%", "selector": {"matchLabels": {"app": "web"}}}

        await run("create", "ingress", "web", "--class=nginx", "--rule=a.example/=web:80,tls=tls")
        ing = await get("ingress", "web")
        assert ing["spec"]["ingressClassName"] == "nginx"
        assert ing["spec"]["rules"][0]["host"] == "a.example"
        assert ing["spec"]["rules"][0]["http"]["paths"][0]["backend"] == {
            "service": {"name": "web", "port": {"number": 80}}}
        assert ing["spec"]["tls"] == [{"hosts": ["a.example"], "secretName": "tls"}]

        # `kubectl run` 1.33 posts its Pod as JSON (it builds an unstructured object): stored all the same.
        await run("run", "box", "--image=busybox", "--restart=Never", "--labels=app=box", "--", "sleep", "3600",
                  protobuf=False)
        await run("expose", "deployment", "web", "--port=8080", "--target-port=80", "--name=web-svc",
                  protobuf=False)
        exposed = await get("service", "web-svc")
        assert exposed["spec"]["selector"] == {"app": "web"}
        assert exposed["spec"]["ports"] == [{"protocol": "TCP", "port": 8080, "targetPort": 80}]

        po = await get("pod", "box")
        assert po["metadata"]["labels"] == {"app": "box"}
        assert po["spec"]["containers"][0]["args"] == ["sleep", "3600"] and po["spec"]["restartPolicy"] == "Never"

        # kube's printers, through the kinds' definitions: kubectl's default columns.
        out, _ = await kubectl(binary, kc, tmp_path, "get", "deployment,job,cronjob,service,pdb,quota,ingress,pod")
        rows = [line.split() for line in out.splitlines() if line.strip()]
        assert ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"] in rows
        assert ["deployment.apps/web", "0/3", "0", "0"] in [r[:4] for r in rows]
        assert ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"] in rows
        assert ["job.batch/pi", "Running", "0/1"] in [r[:3] for r in rows]
        assert ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"] in rows
        assert ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"] in rows
        np_row = next(r for r in rows if r[0] == "service/np")
        assert np_row[1] == "NodePort" and np_row[3:5] == ["<none>", "80:30080/TCP"]
        assert ipaddress.ip_address(np_row[2]) in ipaddress.ip_network("10.96.0.0/12")  # an allocated cluster IP
        assert ["poddisruptionbudget.policy/web", "50%", "N/A", "0"] in [r[:4] for r in rows]
        assert ["ingress.networking.k8s.io/web", "nginx", "a.example", "80,", "443"] in [r[:5] for r in rows]
        assert next(r for r in rows if r[0] == "pod/box")[1] == "0/1"

