"""kube's built-in admission plugins through the real HTTP face: ServiceAccount, Priority,
DefaultTolerationSeconds and ResourceQuota (exact under concurrency on two gateways)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
import trio

from tests.conftest import StartServer, client_for, default_service_account, poll_until

pytestmark = pytest.mark.integration

PODS = "/api/v1/namespaces/default/pods"


def pod(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "nginx"}], **spec}}


async def test_service_account_priority_tolerations(start_server: StartServer) -> None:
    async with client_for(await start_server()) as api:
        with trio.fail_after(30):
            await default_service_account(api, "default")
        r = await api.post(PODS, json=pod("p", initContainers=[{"name": "i", "image": "busybox"}]))
        assert r.status_code == 201, r.text
        spec = r.json()["spec"]
        assert spec["serviceAccountName"] == "default" and spec["serviceAccount"] == "default"
        vol = spec["volumes"][0]
        assert re.fullmatch(r"kube-api-access-[bcdfghjklmnpqrstvwxz2456789]{5}", vol["name"])
        assert vol["projected"] == {"sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1",
                                                                           "fieldPath": "metadata.namespace"}}]}},
        ], "defaultMode": 420}
        mount = {"name": vol["name"], "readOnly": True, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
        assert spec["containers"][0]["volumeMounts"] == [mount]
        assert spec["initContainers"][0]["volumeMounts"] == [mount]
        assert spec["priority"] == 0
        assert spec["tolerations"] == [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": 300}]
        # Opting out of the token; a missing service account is refused.
        r = await api.post(PODS, json=pod("nomount", automountServiceAccountToken=False))
        assert r.status_code == 201 and "volumes" not in r.json()["spec"]
        r = await api.post(PODS, json=pod("nosa", serviceAccountName="ghost"))
        assert r.status_code == 403
        assert r.json()["message"] == ('pods "nosa" is forbidden: error looking up service account default/ghost: '
                                       'serviceaccount "ghost" not found')
        # Priority: the named class, the global default, a missing class.
        for name, value, default in (("high", 1000, False), ("everyday", 10, True)):
            r = await api.post("/apis/scheduling.k8s.io/v1/priorityclasses",
                               json={"metadata": {"name": name}, "value": value, "globalDefault": default})
            assert r.status_code == 201, r.text
        r = await api.post(PODS, json=pod("hi", priorityClassName="high"))
        assert (r.json()["spec"]["priority"], r.json()["spec"]["preemptionPolicy"]) == (1000, "PreemptLowerPriority")
        r = await api.post(PODS, json=pod("plain"))
        assert (r.json()["spec"]["priorityClassName"], r.json()["spec"]["priority"]) == ("everyday", 10)
        r = await api.post(PODS, json=pod("crit", priorityClassName="system-node-critical"))
        assert r.json()["spec"]["priority"] == 2000001000
        r = await api.post(PODS, json=pod("nopc", priorityClassName="nope"))
        assert r.status_code == 403
        assert r.json()["message"] == 'pods "nopc" is forbidden: no PriorityClass with name nope was found'


async def test_a_pod_waits_for_its_namespace_default_service_account(start_server: StartServer) -> None:
    """As kube's ServiceAccount plugin does (10 lookups 100-200 ms apart), a pod created before the
    serviceaccounts controller made its namespace's ``default`` waits for it: admitted once it comes,
    refused after 2 s if it does not; another missing account is refused at once. A policy holds the
    controller back in namespaces labelled hold-sa (only ServiceAccounts labelled by-test pass)."""
    reg = "/apis/admissionregistration.k8s.io/v1"
    a, b = await start_server(), await start_server()
    async with client_for(a) as api_a, client_for(b) as api_b:
        with trio.fail_after(60):
            r = await api_a.post(f"{reg}/validatingadmissionpolicies", json={
                "metadata": {"name": "hold-sa"}, "spec": {
                    "matchConstraints": {
                        "namespaceSelector": {"matchLabels": {"hold-sa": "yes"}},
                        "resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                                           "resources": ["serviceaccounts"]}]},
                    "validations": [{"expression": "has(object.metadata.labels) && "
                                                   "'by-test' in object.metadata.labels"}]}})
            assert r.status_code == 201, r.text
            r = await api_a.post(f"{reg}/validatingadmissionpolicybindings", json={
                "metadata": {"name": "hold-sa"}, "spec": {"policyName": "hold-sa", "validationActions": ["Deny"]}})
            assert r.status_code == 201, r.text
            held = {"metadata": {"name": "probe", "labels": {"hold-sa": "yes"}}}
            assert (await api_a.post("/api/v1/namespaces", json=held)).status_code == 201

            async def holding() -> bool:
                codes = [(await c.post("/api/v1/namespaces/probe/serviceaccounts",
                                       json={"metadata": {"generateName": "x-"}})).status_code for c in (api_a, api_b)]
                return codes == [422, 422]  # a policy's denial: Invalid unless it names a reason
            await poll_until(holding)

            for i in range(3):
                ns = f"fresh{i}"
                r = await api_a.post("/api/v1/namespaces", json={"metadata": {"name": ns, "labels": {"hold-sa": "yes"}}})
                assert r.status_code == 201, r.text
                if i == 0:  # nobody makes it: refused after the wait, which holds up no other pod
                    early: list[tuple[httpx.Response, float]] = []

                    async def create_early(ns: str = ns, early: list[tuple[httpx.Response, float]] = early) -> None:
                        t0 = trio.current_time()
                        r = await api_b.post(f"/api/v1/namespaces/{ns}/pods", json=pod("early"))
                        early.append((r, trio.current_time() - t0))
                    async with trio.open_nursery() as n:
                        n.start_soon(create_early)
                        for c in (api_a, api_b) * 3:  # while "early" waits (from the first or so on)
                            r = await c.post(PODS, json={**pod("x"), "metadata": {"generateName": "other-"}})
                            assert r.status_code == 201 and early == [], r.text
                    r, took = early[0]
                    assert r.status_code == 403, r.text
                    assert r.json()["message"] == (f'pods "early" is forbidden: error looking up service account '
                                                   f'{ns}/default: serviceaccount "default" not found')
                    assert took >= 2.0
                got: list[httpx.Response] = []

                async def create_pod(ns: str = ns, got: list[httpx.Response] = got) -> None:
                    got.append(await api_b.post(f"/api/v1/namespaces/{ns}/pods", json=pod("p")))
                async with trio.open_nursery() as n:
                    n.start_soon(create_pod)
                    r = await api_a.post(f"/api/v1/namespaces/{ns}/serviceaccounts",
                                         json={"metadata": {"name": "default", "labels": {"by-test": "yes"}}})
                    assert r.status_code == 201, r.text
                assert got[0].status_code == 201, got[0].text
                assert got[0].json()["spec"]["serviceAccountName"] == "default"
                assert got[0].json()["spec"]["volumes"][0]["name"].startswith("kube-api-access-")
            # Only "default" is waited for; another account that is missing is refused at once.
            t0 = trio.current_time()
            r = await api_b.post("/api/v1/namespaces/fresh0/pods", json=pod("ghost", serviceAccountName="ghost"))
            assert r.status_code == 403 and r.json()["reason"] == "Forbidden", r.text
            assert trio.current_time() - t0 < 1.5


async def test_quota_exact_under_concurrency_on_two_gateways(start_server: StartServer) -> None:
    a, b = await start_server(), await start_server()
    async with client_for(a) as api_a, client_for(b) as api_b:
        r = await api_a.post("/api/v1/namespaces", json={"metadata": {"name": "q"}})
        assert r.status_code == 201

        with trio.fail_after(30):
            for c in (api_a, api_b):
                await default_service_account(c, "q")
        r = await api_a.post("/api/v1/namespaces/q/resourcequotas",
                             json={"metadata": {"name": "pods"}, "spec": {"hard": {"pods": "10", "requests.cpu": "100"}}})
        assert r.status_code == 201, r.text

        async def quota_seen() -> bool:
            return (await api_b.get("/api/v1/namespaces/q/resourcequotas/pods")).status_code == 200
        await poll_until(quota_seen)
        codes: list[int] = []
        messages: list[str] = []

        async def create(client: httpx.AsyncClient, i: int) -> None:
            body = pod(f"p{i}")
            body["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "500m"}}
            r = await client.post("/api/v1/namespaces/q/pods", json=body)
            codes.append(r.status_code)
            if r.status_code != 201:
                messages.append(r.json()["message"])

        with trio.fail_after(30):
            async with trio.open_nursery() as n:
                for i in range(20):
                    n.start_soon(create, api_a if i % 2 else api_b, i)
        assert sorted(codes) == [201] * 10 + [403] * 10, codes
        assert all(re.fullmatch(r'pods "p\d+" is forbidden: exceeded quota: pods, requested: pods=1, used: pods=10, '
                                r"limited: pods=10", m) for m in messages), messages
        q = (await api_b.get("/api/v1/namespaces/q/resourcequotas/pods")).json()
        assert q["status"] == {"hard": {"pods": "10", "requests.cpu": "100"},
                               "used": {"pods": "10", "requests.cpu": "5"}}, q["status"]
        listed = (await api_b.get("/api/v1/namespaces/q/pods")).json()["items"]
        assert len(listed) == 10
        # A dry run is checked against the quota, and charges nothing.
        r = await api_a.post("/api/v1/namespaces/q/pods", params={"dryRun": "All"}, json=pod("dry"))
        assert r.status_code == 403 and "exceeded quota: pods" in r.json()["message"]
        # A delete releases its charge: one more fits; a dry run first.
        name = listed[0]["metadata"]["name"]
        assert (await api_a.delete(f"/api/v1/namespaces/q/pods/{name}")).status_code == 200
        r = await api_b.post("/api/v1/namespaces/q/pods", params={"dryRun": "All"}, json=pod("again"))
        assert r.status_code == 201, r.text
        r = await api_b.post("/api/v1/namespaces/q/pods", json=pod("again"))
        assert r.status_code == 201, r.text
        r = await api_a.post("/api/v1/namespaces/q/pods", json=pod("more"))
        assert r.status_code == 403, r.text


async def test_immortal_namespaces_on_every_path(start_server: StartServer) -> None:
    async with client_for(await start_server()) as api:
        for i in range(3):
            assert (await api.post("/api/v1/namespaces", json={"metadata": {"name": f"n{i}"}})).status_code == 201
        # The namespace storage has no deletecollection (405 as kube-apiserver); deleting each
        # listed namespace (kubectl delete ns --all) passes the chain one by one.
        assert (await api.delete("/api/v1/namespaces")).status_code == 405
        names = [n["metadata"]["name"] for n in (await api.get("/api/v1/namespaces")).json()["items"]]
        for name in names:
            for params in ({"dryRun": "All"}, {}):
                r = await api.delete(f"/api/v1/namespaces/{name}", params=params)
                if name in ("default", "kube-system", "kube-public"):
                    assert r.status_code == 403, r.text
                    assert r.json()["message"] == f'namespaces "{name}" is forbidden: this namespace may not be deleted'
                else:
                    assert r.status_code == 200, r.text
        for name in ("default", "kube-system", "kube-public"):
            assert (await api.get(f"/api/v1/namespaces/{name}")).json()["status"]["phase"] == "Active"
        # Through a deletecollection of another kind, each item passes the chain too (a pod in a
        # terminating namespace cannot be created; the webhooks test covers the items' denials).
        r = await api.post("/api/v1/namespaces/n0/pods", json=pod("late"))
        assert r.status_code in (403, 404), r.text


async def test_limit_ranger_and_default_storage_class(start_server: StartServer) -> None:
    async with client_for(await start_server()) as api:
        with trio.fail_after(30):
            await default_service_account(api, "default")
        r = await api.post("/api/v1/namespaces/default/limitranges", json={
            "metadata": {"name": "lr"}, "spec": {"limits": [{
                "type": "Container", "default": {"cpu": "500m", "memory": "128Mi"},
                "defaultRequest": {"cpu": "100m"}, "min": {"cpu": "50m"}, "max": {"cpu": "1"}}]}})
        assert r.status_code == 201, r.text
        r = await api.post(PODS, json=pod("limited"))
        assert r.status_code == 201, r.text
        got = r.json()
        assert got["spec"]["containers"][0]["resources"] == {"limits": {"cpu": "500m", "memory": "128Mi"},
                                                             "requests": {"cpu": "100m", "memory": "128Mi"}}
        assert got["metadata"]["annotations"]["kubernetes.io/limit-ranger"] == (
            "LimitRanger plugin set: cpu, memory request for container c; cpu, memory limit for container c")
        big = pod("big")
        big["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "2"}}
        r = await api.post(PODS, json=big)
        assert r.status_code == 403, r.text
        assert r.json()["message"] == ('pods "big" is forbidden: maximum cpu usage per Container is 1, but limit '
                                       'is 2')
        # DefaultStorageClass: the default class named on a claim that names none.
        r = await api.post("/apis/storage.k8s.io/v1/storageclasses", json={
            "metadata": {"name": "fast", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "example.com/fast"})
        assert r.status_code == 201, r.text
        claim = {"metadata": {"name": "c"}, "spec": {"accessModes": ["ReadWriteOnce"],
                                                     "resources": {"requests": {"storage": "1Gi"}}}}
        r = await api.post("/api/v1/namespaces/default/persistentvolumeclaims", json=claim)
        assert r.status_code == 201, r.text
        assert r.json()["spec"]["storageClassName"] == "fast"
        claim["metadata"]["name"] = "explicit"
        claim["spec"]["storageClassName"] = ""
        r = await api.post("/api/v1/namespaces/default/persistentvolumeclaims", json=claim)
        assert r.json()["spec"]["storageClassName"] == ""


async def test_pod_security_enforce_and_warn(start_server: StartServer) -> None:
    async with client_for(await start_server()) as api:
        labels = {"pod-security.kubernetes.io/enforce": "baseline", "pod-security.kubernetes.io/warn": "restricted"}
        r = await api.post("/api/v1/namespaces", json={"metadata": {"name": "psa", "labels": labels}})
        assert r.status_code == 201

        with trio.fail_after(30):
            await default_service_account(api, "psa")
        base = "/api/v1/namespaces/psa/pods"
        bad = pod("priv", hostNetwork=True, volumes=[{"name": "v", "hostPath": {"path": "/"}}])
        bad["spec"]["containers"][0]["securityContext"] = {"privileged": True}
        r = await api.post(base, json=bad)
        assert r.status_code == 403, r.text
        assert r.json()["message"] == ('pods "priv" is forbidden: violates PodSecurity "baseline:latest": host '
                                       'namespaces (hostNetwork=true), hostPath volumes (volume "v"), privileged '
                                       '(container "c" must not set securityContext.privileged=true)')
        # Baseline allows it; restricted warns.
        r = await api.post(base, json=pod("busybox"))
        assert r.status_code == 201, r.text
        assert r.headers.get_list("Warning") == [
            ('299 - "would violate PodSecurity \\"restricted:latest\\": allowPrivilegeEscalation != false (container '
            '\\"c\\" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container '
            '\\"c\\" must set securityContext.capabilities.drop=[\\"ALL\\"]), runAsNonRoot != true (pod or container '
            '\\"c\\" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container \\"c\\" must set '
            'securityContext.seccompProfile.type to \\"RuntimeDefault\\" or \\"Localhost\\")"')]
        good = pod("good")
        good["spec"]["securityContext"] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
        good["spec"]["containers"][0]["securityContext"] = {"allowPrivilegeEscalation": False,
                                                            "capabilities": {"drop": ["ALL"]}}
        r = await api.post(base, json=good)
        assert r.status_code == 201 and not r.headers.get_list("Warning"), r.text
        # A deployment's template is warned about, never refused.
        dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
               "spec": {"selector": {"matchLabels": {"a": "b"}},
                        "template": {"metadata": {"labels": {"a": "b"}}, "spec": bad["spec"]}}}
        r = await api.post("/apis/apps/v1/namespaces/psa/deployments", json=dep)
        assert r.status_code == 201, r.text
        assert r.headers["Warning"].startswith('299 - "would violate PodSecurity \\"restricted:latest\\": ')


def _restricted_ok(name: str, image: str = "nginx") -> dict[str, Any]:
    p = pod(name)
    p["spec"]["automountServiceAccountToken"] = False
    p["spec"]["containers"][0]["image"] = image
    p["spec"]["securityContext"] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    p["spec"]["containers"][0]["securityContext"] = {"allowPrivilegeEscalation": False,
                                                     "capabilities": {"drop": ["ALL"]}}
    return p


async def test_pod_security_updates_labels_and_existing_pods(start_server: StartServer) -> None:
    a, b = await start_server(), await start_server()
    async with client_for(a) as api, client_for(b) as api_b:
        # Invalid labels: 422 on create, with kube's field errors.
        r = await api.post("/api/v1/namespaces", json={"metadata": {"name": "bad", "labels": {
            "pod-security.kubernetes.io/enforce": "strict", "pod-security.kubernetes.io/warn-version": "1.30"}}})
        assert r.status_code == 422, r.text
        assert r.json()["message"] == (
            'Namespace "bad" is invalid: [metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: '
            '"strict": must be one of privileged, baseline, restricted, metadata.labels[pod-security.kubernetes.io/'
            'warn-version]: Invalid value: "1.30": must be "latest" or "v1.x"]')
        r = await api.post("/api/v1/namespaces", json={"metadata": {"name": "ps"}})
        assert r.status_code == 201

        with trio.fail_after(30):
            for c in (api, api_b):
                await default_service_account(c, "ps")
        base = "/api/v1/namespaces/ps/pods"
        # Pods that baseline and restricted refuse, made while the namespace is privileged.
        for i in range(3):
            bad = pod(f"hostnet{i}", hostNetwork=True)
            assert (await api.post(base, json=bad)).status_code == 201
        priv = pod("priv")
        priv["spec"]["containers"][0]["securityContext"] = {"privileged": True}
        assert (await api.post(base, json=priv)).status_code == 201
        assert (await api.post(base, json=pod("plain"))).status_code == 201
        assert (await api.post(base, json=_restricted_ok("fine"))).status_code == 201
        # Raising enforce to baseline (on the other gateway) evaluates the existing pods: kube's warnings.
        r = await api_b.patch("/api/v1/namespaces/ps", headers={"Content-Type": "application/merge-patch+json"},
                              json={"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "baseline"}}})
        assert r.status_code == 200, r.text
        assert r.headers.get_list("Warning") == [
            '299 - "existing pods in namespace \\"ps\\" violate the new PodSecurity enforce level \\"baseline:latest\\""',
            '299 - "hostnet0 (and 2 other pods): host namespaces"',
            '299 - "priv: privileged"']
        # An invalid label on update: 422; one already invalid and unchanged is let through.
        r = await api.patch("/api/v1/namespaces/ps", headers={"Content-Type": "application/merge-patch+json"},
                            json={"metadata": {"labels": {"pod-security.kubernetes.io/audit": "everything"}}})
        assert r.status_code == 422 and "pod-security.kubernetes.io/audit]: Invalid value" in r.json()["message"]
        # Relaxing (or keeping) the level evaluates nothing.
        r = await api.patch("/api/v1/namespaces/ps", headers={"Content-Type": "application/merge-patch+json"},
                            json={"metadata": {"labels": {"other": "x"}}})
        assert r.status_code == 200 and not r.headers.get_list("Warning")

        # Updates of a violating pod: only significant changes (an image, a container) are evaluated.
        r = await api.patch(f"{base}/priv", headers={"Content-Type": "application/merge-patch+json"},
                            json={"metadata": {"labels": {"touched": "yes"}}})
        assert r.status_code == 200, r.text
        r = await api.patch(f"{base}/priv", headers={"Content-Type": "application/strategic-merge-patch+json"},
                            json={"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}})
        assert r.status_code == 403, r.text
        assert r.json()["message"] == ('pods "priv" is forbidden: violates PodSecurity "baseline:latest": privileged '
                                       '(container "c" must not set securityContext.privileged=true)')
        # The ephemeralcontainers subresource is evaluated too (an added container).
        cur = (await api.get(f"{base}/priv/ephemeralcontainers")).json()
        cur["spec"]["ephemeralContainers"] = [{"name": "dbg", "image": "busybox"}]
        r = await api.put(f"{base}/priv/ephemeralcontainers", json=cur)
        assert r.status_code == 403 and "violates PodSecurity" in r.json()["message"], r.text
        # Status writes never are.
        cur = (await api.get(f"{base}/priv")).json()
        cur["status"] = {"phase": "Running"}
        assert (await api.put(f"{base}/priv/status", json=cur)).status_code == 200

        # seLinuxOptions and AppArmor (annotation and field) under baseline.
        sel = pod("sel")
        sel["spec"]["securityContext"] = {"seLinuxOptions": {"type": "spc_t", "role": "sysadm_r"}}
        sel["spec"]["containers"][0]["securityContext"] = {"appArmorProfile": {"type": "Unconfined"}}
        sel["metadata"]["annotations"] = {"container.apparmor.security.beta.kubernetes.io/c": "unconfined"}
        r = await api.post(base, json=sel)
        assert r.status_code == 403, r.text
        assert r.json()["message"] == (
            'pods "sel" is forbidden: violates PodSecurity "baseline:latest": forbidden AppArmor profiles (container '
            '"c" and annotation must not set AppArmor profile type to "Unconfined", '
            '"container.apparmor.security.beta.kubernetes.io/c="unconfined""), seLinuxOptions (pod set forbidden '
            'securityContext.seLinuxOptions: type "spc_t"; role may not be set)')
        ok = pod("sel-ok")
        ok["spec"]["securityContext"] = {"seLinuxOptions": {"type": "container_engine_t", "level": "s0:c1"}}
        ok["spec"]["containers"][0]["securityContext"] = {"appArmorProfile": {"type": "RuntimeDefault"}}
        assert (await api.post(base, json=ok)).status_code == 201
        # A version label picks that version's checks: container_engine_t is allowed from v1.31 only.
        r = await api.patch("/api/v1/namespaces/ps", headers={"Content-Type": "application/merge-patch+json"},
                            json={"metadata": {"labels": {"pod-security.kubernetes.io/enforce-version": "v1.30"}}})
        assert r.status_code == 200, r.text
        ok["metadata"]["name"] = "sel-old"
        r = await api.post(base, json=ok)
        assert r.status_code == 403, r.text
        assert r.json()["message"] == ('pods "sel-old" is forbidden: violates PodSecurity "baseline:v1.30": '
                                       'seLinuxOptions (pod set forbidden securityContext.seLinuxOptions: type '
                                       '"container_engine_t")')

        # Warn defaults to the enforce level: a deployment with a violating template is warned on
        # create and on every update (kube evaluates each), never refused.
        dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
               "spec": {"selector": {"matchLabels": {"a": "b"}},
                        "template": {"metadata": {"labels": {"a": "b"}}, "spec": priv["spec"]}}}
        want = [('299 - "would violate PodSecurity \\"baseline:v1.30\\": privileged (container \\"c\\" must not set '
                'securityContext.privileged=true)"')]
        r = await api.post("/apis/apps/v1/namespaces/ps/deployments", json=dep)
        assert r.status_code == 201 and r.headers.get_list("Warning") == want, r.text
        r = await api.patch("/apis/apps/v1/namespaces/ps/deployments/d",
                            headers={"Content-Type": "application/merge-patch+json"}, json={"spec": {"replicas": 3}})
        assert r.status_code == 200 and r.headers.get_list("Warning") == want, r.text
