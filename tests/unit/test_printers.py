"""kube's server-side printers (kinds._printers) against what kube-apiserver 1.33 prints.

Expected rows follow ``pkg/printers/internalversion/printers.go`` and its ``printers_test.go`` (wide
form, as the apiserver always generates it) and what ``kubectl get -o wide`` shows for the same
objects on a 1.33 cluster.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kinds import ResourceDef, printer_for
from kinds._printers import PRINTERS

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
CREATED = "2025-06-01T11:55:00Z"  # 5m before NOW


def cells(group: str, kind: str, obj: dict[str, Any]) -> list[Any]:
    printer = printer_for(group, kind)
    assert printer is not None
    row = printer.cells(obj, NOW)
    assert len(row) == len(printer.columns)
    return row


def names(group: str, kind: str) -> list[str]:
    printer = printer_for(group, kind)
    assert printer is not None
    return [c.name for c in printer.columns]


def meta(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": "default", "creationTimestamp": CREATED, **extra}


def test_every_printer_resolves_its_descriptions() -> None:
    for key, printer in PRINTERS.items():
        cols = printer.column_definitions()
        assert all(c["description"] for c in cols), key
        assert [c["name"] for c in cols] == [c.name for c in printer.columns]


def test_definition_carries_its_printer() -> None:
    pod = ResourceDef("", "v1", "Pod", "pods", "pod", True)
    assert pod.printer is PRINTERS[("", "Pod")]
    assert ResourceDef("example.com", "v1", "Widget", "widgets", "widget", True).printer is None


# --- pods -------------------------------------------------------------------------------------


POD_SPEC = {"containers": [{"name": "nginx", "image": "nginx"}]}


def test_pod_columns() -> None:
    assert names("", "Pod") == ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node",
                                "Readiness Gates"]


def test_pending_pod() -> None:
    pod = {"metadata": meta("web"), "spec": POD_SPEC, "status": {"phase": "Pending", "qosClass": "BestEffort"}}
    assert cells("", "Pod", pod) == ["web", "0/1", "Pending", "0", "5m", "<none>", "<none>", "<none>", "<none>"]


def test_running_pod_wide() -> None:
    pod = {"metadata": meta("web"), "spec": {**POD_SPEC, "nodeName": "node-1"},
           "status": {"phase": "Running", "podIP": "10.244.0.5", "podIPs": [{"ip": "10.244.0.5"}],
                      "conditions": [{"type": "Ready", "status": "True"}],
                      "containerStatuses": [{"name": "nginx", "ready": True, "restartCount": 0,
                                             "state": {"running": {"startedAt": CREATED}}}]}}
    assert cells("", "Pod", pod) == ["web", "1/1", "Running", "0", "5m", "10.244.0.5", "node-1", "<none>", "<none>"]


def test_crash_looping_pod_shows_restarts_and_when() -> None:
    pod = {"metadata": meta("web"), "spec": POD_SPEC,
           "status": {"phase": "Running", "containerStatuses": [{
               "name": "nginx", "ready": False, "restartCount": 3,
               "state": {"waiting": {"reason": "CrashLoopBackOff"}},
               "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2025-06-01T11:58:00Z"}}}]}}
    assert cells("", "Pod", pod)[1:4] == ["0/1", "CrashLoopBackOff", "3 (2m ago)"]


def test_init_containers_and_terminating() -> None:
    spec = {**POD_SPEC, "initContainers": [{"name": "a", "image": "busybox"}, {"name": "b", "image": "busybox"}]}
    status = {"phase": "Pending", "initContainerStatuses": [
        {"name": "a", "state": {"terminated": {"exitCode": 0}}},
        {"name": "b", "state": {"running": {}}}]}
    pod = {"metadata": meta("web"), "spec": spec, "status": status}
    assert cells("", "Pod", pod)[2] == "Init:1/2"
    failed = {**status, "initContainerStatuses": [{"name": "a", "state": {"terminated": {"exitCode": 2}}}]}
    assert cells("", "Pod", {**pod, "status": failed})[2] == "Init:ExitCode:2"
    deleting = {**pod, "metadata": meta("web", deletionTimestamp=CREATED),
                "status": {"phase": "Running"}}
    assert cells("", "Pod", deleting)[2] == "Terminating"
    done = {**deleting, "status": {"phase": "Succeeded"}}
    assert cells("", "Pod", done)[2] == "Succeeded"


def test_sidecar_counts_as_a_container_and_readiness_gates() -> None:
    spec = {**POD_SPEC, "initContainers": [{"name": "proxy", "image": "envoy", "restartPolicy": "Always"}],
            "readinessGates": [{"conditionType": "example.com/ready"}]}
    status = {"phase": "Running", "conditions": [{"type": "example.com/ready", "status": "True"},
                                                 {"type": "Initialized", "status": "True"}],
              "initContainerStatuses": [{"name": "proxy", "ready": True, "started": True, "state": {"running": {}}}],
              "containerStatuses": [{"name": "nginx", "ready": True, "state": {"running": {}}}]}
    row = cells("", "Pod", {"metadata": meta("web"), "spec": spec, "status": status})
    assert row[1:3] == ["2/2", "Running"]
    assert row[-1] == "1/1"


# --- workloads ----------------------------------------------------------------------------------

TEMPLATE = {"metadata": {"labels": {"app": "web"}}, "spec": POD_SPEC}


def test_deployment() -> None:
    assert names("apps", "Deployment") == ["Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images",
                                           "Selector"]
    dep = {"metadata": meta("web"), "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                                             "template": TEMPLATE},
           "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}
    assert cells("apps", "Deployment", dep) == ["web", "2/3", 3, 2, "5m", "nginx", "nginx", "app=web"]
    fresh = {**dep, "status": {}}
    assert cells("apps", "Deployment", fresh)[1:4] == ["0/3", 0, 0]
    expr = {**dep, "spec": {**dep["spec"], "selector": {"matchLabels": {"tier": "fe"}, "matchExpressions": [
        {"key": "app", "operator": "In", "values": ["web", "api"]}, {"key": "canary", "operator": "DoesNotExist"}]}}}
    assert cells("apps", "Deployment", expr)[-1] == "app in (api,web),!canary,tier=fe"


def test_replica_set_stateful_set_daemon_set() -> None:
    rs = {"metadata": meta("web-5d4f"), "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                                                "template": TEMPLATE}, "status": {"replicas": 2}}
    assert cells("apps", "ReplicaSet", rs) == ["web-5d4f", 2, 2, 0, "5m", "nginx", "nginx", "app=web"]
    sts = {"metadata": meta("db"), "spec": {"replicas": 3, "template": TEMPLATE}, "status": {"readyReplicas": 1}}
    assert cells("apps", "StatefulSet", sts) == ["db", "1/3", "5m", "nginx", "nginx"]
    ds = {"metadata": meta("agent"), "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {
        "spec": {**POD_SPEC, "nodeSelector": {"kubernetes.io/os": "linux"}}}},
        "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1}}
    assert cells("apps", "DaemonSet", ds) == ["agent", 2, 2, 1, 0, 0, "kubernetes.io/os=linux", "5m", "nginx",
                                              "nginx", "app=agent"]


def test_controller_revision() -> None:
    cr = {"metadata": meta("web-7c9", ownerReferences=[{"apiVersion": "apps/v1", "kind": "StatefulSet",
                                                        "name": "web", "uid": "u", "controller": True}]),
          "revision": 2}
    assert cells("apps", "ControllerRevision", cr) == ["web-7c9", "statefulset.apps/web", 2, "5m"]


def test_jobs() -> None:
    assert names("batch", "Job") == ["Name", "Status", "Completions", "Duration", "Age", "Containers", "Images",
                                     "Selector"]
    job = {"metadata": meta("pi"), "spec": {"completions": 1, "parallelism": 1, "template": TEMPLATE,
                                            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}}},
           "status": {"startTime": "2025-06-01T11:59:00Z", "active": 1}}
    assert cells("batch", "Job", job) == ["pi", "Running", "0/1", "60s", "5m", "nginx", "nginx",
                                          "batch.kubernetes.io/controller-uid=u"]
    done = {**job, "status": {"startTime": "2025-06-01T11:56:00Z", "completionTime": "2025-06-01T11:56:07Z",
                              "succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}}
    assert cells("batch", "Job", done)[1:4] == ["Complete", "1/1", "7s"]
    unstarted = {**job, "spec": {**job["spec"], "completions": None, "parallelism": 3}, "status": {}}
    assert cells("batch", "Job", unstarted)[1:4] == ["Running", "0/1 of 3", ""]


def test_cron_job() -> None:
    assert names("batch", "CronJob") == ["Name", "Schedule", "Timezone", "Suspend", "Active", "Last Schedule", "Age",
                                         "Containers", "Images", "Selector"]
    cj = {"metadata": meta("hello"), "spec": {"schedule": "*/1 * * * *", "suspend": False,
                                              "jobTemplate": {"spec": {"template": TEMPLATE}}}, "status": {}}
    assert cells("batch", "CronJob", cj) == ["hello", "*/1 * * * *", "<none>", "False", 0, "<none>", "5m", "nginx",
                                             "nginx", "<none>"]
    ran = {**cj, "status": {"active": [{"name": "hello-1"}], "lastScheduleTime": "2025-06-01T11:59:00Z"}}
    assert cells("batch", "CronJob", ran)[4:6] == [1, "60s"]


# --- services and nodes -----------------------------------------------------------------------------


def svc(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"metadata": meta("web"), "spec": spec, "status": status or {"loadBalancer": {}}}


def test_services() -> None:
    assert names("", "Service") == ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"]
    cluster_ip = svc({"type": "ClusterIP", "clusterIP": "10.96.12.7", "clusterIPs": ["10.96.12.7"],
                      "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}], "selector": {"app": "web"}})
    assert cells("", "Service", cluster_ip) == ["web", "ClusterIP", "10.96.12.7", "<none>", "80/TCP", "5m",
                                                "app=web"]
    node_port = svc({"type": "NodePort", "clusterIPs": ["10.96.0.20"], "ports": [
        {"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]})
    assert cells("", "Service", node_port)[1:5] == ["NodePort", "10.96.0.20", "<none>", "80:30080/TCP,53/UDP"]
    lb = svc({"type": "LoadBalancer", "clusterIPs": ["10.96.0.30"], "ports": [
        {"port": 443, "nodePort": 31443, "protocol": "TCP"}]})
    assert cells("", "Service", lb)[3] == "<pending>"
    lb_ready = svc(lb["spec"], {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}, {"hostname": "lb.example"}]}})
    assert cells("", "Service", lb_ready)[3] == "203.0.113.9,lb.example"
    headless = svc({"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"]})
    assert cells("", "Service", headless)[2:5] == ["None", "<none>", "<none>"]
    external = svc({"type": "ExternalName", "externalName": "db.example.com"})
    assert cells("", "Service", external)[1:5] == ["ExternalName", "<none>", "db.example.com", "<none>"]


def test_endpoints_and_slices() -> None:
    ep = {"metadata": meta("web"), "subsets": [{"addresses": [{"ip": f"10.0.0.{i}"} for i in range(1, 6)],
                                                "ports": [{"port": 80}]}]}
    assert cells("", "Endpoints", ep)[1] == "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 2 more..."
    assert cells("", "Endpoints", {"metadata": meta("none")})[1] == "<none>"
    sl = {"metadata": meta("web-abc"), "addressType": "IPv4", "ports": [{"port": 80, "name": "http"}],
          "endpoints": [{"addresses": ["10.0.0.1"]}]}
    assert cells("discovery.k8s.io", "EndpointSlice", sl) == ["web-abc", "IPv4", "80", "10.0.0.1", "5m"]
    assert cells("discovery.k8s.io", "EndpointSlice", {"metadata": meta("e")})[2:4] == ["<unset>", "<unset>"]


def test_nodes() -> None:
    assert names("", "Node") == ["Name", "Status", "Roles", "Age", "Version", "Internal-IP", "External-IP",
                                 "OS-Image", "Kernel-Version", "Container-Runtime"]
    node = {"metadata": meta("cp-1", labels={"node-role.kubernetes.io/control-plane": ""}),
            "spec": {"unschedulable": True},
            "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "172.18.0.2"}, {"type": "Hostname",
                                                                                       "address": "cp-1"}],
                       "nodeInfo": {"kubeletVersion": "v1.33.1", "osImage": "Debian GNU/Linux 12 (bookworm)",
                                    "kernelVersion": "6.8.0", "containerRuntimeVersion": "containerd://2.1.1"}}}
    assert cells("", "Node", node) == ["cp-1", "Ready,SchedulingDisabled", "control-plane", "5m", "v1.33.1",
                                       "172.18.0.2", "<none>", "Debian GNU/Linux 12 (bookworm)", "6.8.0",
                                       "containerd://2.1.1"]
    bare = {"metadata": meta("n")}
    assert cells("", "Node", bare)[1:3] == ["Unknown", "<none>"]
    assert cells("", "Node", bare)[7:] == ["<unknown>", "<unknown>", "<unknown>"]


# --- the rest, briefly -----------------------------------------------------------------------------


@pytest.mark.parametrize(("group", "kind", "obj", "expected"), [
    ("", "PersistentVolumeClaim", {"metadata": meta("data"), "spec": {"storageClassName": "standard",
                                                                      "resources": {"requests": {"storage": "1Gi"}}},
                                   "status": {"phase": "Pending"}},
     ["data", "Pending", "", "", "", "standard", "<unset>", "5m", "<unset>"]),
    ("", "PersistentVolume", {"metadata": meta("pv1"), "spec": {"capacity": {"storage": "5Gi"}, "accessModes": [
        "ReadWriteMany", "ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Retain",
        "claimRef": {"namespace": "default", "name": "data"}}, "status": {"phase": "Bound"}},
     ["pv1", "5Gi", "RWO,RWX", "Retain", "Bound", "default/data", "", "<unset>", "", "5m", "<unset>"]),
    ("", "ResourceQuota", {"metadata": meta("q"), "status": {
        "hard": {"pods": "10", "limits.cpu": "2", "requests.memory": "1Gi"}, "used": {"pods": "1"}}},
     ["q", "pods: 1/10, requests.memory: 0/1Gi", "limits.cpu: 0/2", "5m"]),
    ("", "PodTemplate", {"metadata": meta("t"), "template": TEMPLATE}, ["t", "nginx", "nginx", "app=web"]),
    ("policy", "PodDisruptionBudget", {"metadata": meta("pdb"), "spec": {"minAvailable": 1},
                                       "status": {"disruptionsAllowed": 0}}, ["pdb", "1", "N/A", 0, "5m"]),
    ("scheduling.k8s.io", "PriorityClass", {"metadata": meta("high"), "value": 1000, "preemptionPolicy":
                                            "PreemptLowerPriority"}, ["high", 1000, False, "5m", "PreemptLowerPriority"]),
    ("networking.k8s.io", "Ingress", {"metadata": meta("web"), "spec": {"ingressClassName": "nginx", "rules": [
        {"host": "a.example"}, {"host": "b.example"}], "tls": [{}]}, "status": {"loadBalancer": {}}},
     ["web", "nginx", "a.example,b.example", "", "80, 443", "5m"]),
    ("networking.k8s.io", "NetworkPolicy", {"metadata": meta("deny"), "spec": {"podSelector": {}}},
     ["deny", "<none>", "5m"]),
    ("storage.k8s.io", "StorageClass", {"metadata": meta("standard", annotations={
        "storageclass.kubernetes.io/is-default-class": "true"}), "provisioner": "rancher.io/local-path",
        "volumeBindingMode": "WaitForFirstConsumer"},
     ["standard (default)", "rancher.io/local-path", "Delete", "WaitForFirstConsumer", False, "5m"]),
    ("storage.k8s.io", "CSIDriver", {"metadata": meta("csi.example"), "spec": {}},
     ["csi.example", True, False, False, "<unset>", False, "<none>", "5m"]),
    ("autoscaling", "HorizontalPodAutoscaler", {"metadata": meta("web"), "spec": {
        "scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5,
        "targetCPUUtilizationPercentage": 80}, "status": {"currentReplicas": 1}},
     ["web", "Deployment/web", "cpu: <unknown>/80%", "1", 5, 1, "5m"]),
    ("certificates.k8s.io", "CertificateSigningRequest", {"metadata": meta("csr"), "spec": {
        "signerName": "kubernetes.io/kube-apiserver-client", "username": "alice", "expirationSeconds": 86400},
        "status": {"conditions": [{"type": "Approved"}]}},
     ["csr", "5m", "kubernetes.io/kube-apiserver-client", "alice", "24h", "Approved"]),
    ("apiregistration.k8s.io", "APIService", {"metadata": meta("v1beta1.metrics.k8s.io"), "spec": {
        "service": {"namespace": "kube-system", "name": "metrics-server"}}, "status": {"conditions": [
            {"type": "Available", "status": "False", "reason": "MissingEndpoints"}]}},
     ["v1beta1.metrics.k8s.io", "kube-system/metrics-server", "False (MissingEndpoints)", "5m"]),
    ("events.k8s.io", "Event", {"metadata": meta("web.1"), "regarding": {"kind": "Pod", "name": "web"},
                                "reason": "Scheduled", "note": "ok", "type": "Normal", "eventTime":
                                    "2025-06-01T11:59:00.000000Z", "reportingController": "default-scheduler"},
     ["60s", "Normal", "Scheduled", "pod/web", "", "default-scheduler", "ok", "60s", 1, "web.1"]),
    ("", "LimitRange", {"metadata": meta("lr")}, ["lr", "2025-06-01T11:55:00Z"]),
])
def test_other_kinds(group: str, kind: str, obj: dict[str, Any], expected: list[Any]) -> None:
    assert cells(group, kind, obj) == expected
