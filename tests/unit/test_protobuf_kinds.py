"""Protobuf of the workload kinds: generated tables (kinds/_protobuf_tables.json) and the gateway codec.

Round trips: realistic objects, as ``kubectl get -o json`` shows them on kube 1.33, go JSON ->
protobuf -> JSON unchanged. Decoding: reference bytes built by hand from ``generated.proto`` field
numbers in the order and with the zero fields gogo's marshallers write (what kubectl 1.32+ sends for
``kubectl create deployment web --image=nginx``).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from gateway._protobuf import decode_k8s_protobuf, decode_message
from gateway._protobuf_write import encode_k8s_protobuf, encode_message
from kinds import KIND_MESSAGES, MESSAGES, ResourceDef
from tests.unit.test_protobuf import _assert_superset_with_empty_structs, entry, ld, st, vi

META = {"name": "web", "namespace": "default", "uid": "6f1c2d4e-1a2b-4c3d-8e9f-0a1b2c3d4e5f",
        "resourceVersion": "812", "generation": 1, "creationTimestamp": "2025-06-01T11:55:00Z",
        "labels": {"app": "web"}, "annotations": {"deployment.kubernetes.io/revision": "1"},
        "managedFields": [{"manager": "kubectl-create", "operation": "Update", "apiVersion": "apps/v1",
                           "time": "2025-06-01T11:55:00Z", "fieldsType": "FieldsV1",
                           "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}}]}

PLAIN_META = {k: v for k, v in META.items() if k != "annotations"}

POD_SPEC = {
    "containers": [{
        "name": "nginx", "image": "nginx:1.27", "imagePullPolicy": "IfNotPresent",
        "ports": [{"containerPort": 80, "protocol": "TCP", "name": "http"}],
        "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "100m"}},
        "env": [{"name": "MODE", "value": "prod"},
                {"name": "NODE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "http", "scheme": "HTTP"}, "periodSeconds": 10,
                           "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
        "livenessProbe": {"tcpSocket": {"port": 80}, "initialDelaySeconds": 5, "periodSeconds": 10,
                          "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True,
                            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumeMounts": [{"name": "cache", "mountPath": "/var/cache/nginx"},
                         {"name": "cfg", "mountPath": "/etc/nginx/conf.d", "readOnly": True}],
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
    }],
    "volumes": [{"name": "cache", "emptyDir": {"sizeLimit": "1Gi"}},
                {"name": "cfg", "configMap": {"name": "web-cfg", "defaultMode": 420}}],
    "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
    "schedulerName": "default-scheduler", "securityContext": {}, "automountServiceAccountToken": False,
    "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                     "tolerationSeconds": 300}],
    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
        "weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "web"}},
                                           "topologyKey": "kubernetes.io/hostname"}}]}},
}

POD = {
    "apiVersion": "v1", "kind": "Pod", "metadata": {**PLAIN_META, "generateName": "web-5d4f8c-",
                                                   "ownerReferences": [{
                                                       "apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                       "name": "web-5d4f8c", "uid": "u-1", "controller": True,
                                                       "blockOwnerDeletion": True}]},
    "spec": {**POD_SPEC, "nodeName": "node-1", "serviceAccountName": "default", "enableServiceLinks": True,
             "preemptionPolicy": "PreemptLowerPriority", "priority": 0},
    "status": {"phase": "Running", "qosClass": "Burstable", "podIP": "10.244.1.7", "podIPs": [{"ip": "10.244.1.7"}],
               "hostIP": "172.18.0.3", "startTime": "2025-06-01T11:55:01Z",
               "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2025-06-01T11:55:04Z"}],
               "containerStatuses": [{"name": "nginx", "ready": True, "started": True, "restartCount": 2,
                                      "image": "docker.io/library/nginx:1.27", "imageID": "sha256:abc",
                                      "containerID": "containerd://123",
                                      "state": {"running": {"startedAt": "2025-06-01T11:55:03Z"}},
                                      "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled",
                                                                   "startedAt": "2025-06-01T11:55:02Z",
                                                                   "finishedAt": "2025-06-01T11:55:02Z"}}}]},
}

TEMPLATE = {"metadata": {"labels": {"app": "web"}}, "spec": POD_SPEC}

DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": META,
    "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"},
                                         "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe"]}]},
             "template": TEMPLATE, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
             "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 1}}},
    "status": {"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3,
               "availableReplicas": 3,
               "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                               "message": "Deployment has minimum availability.",
                               "lastUpdateTime": "2025-06-01T11:55:10Z",
                               "lastTransitionTime": "2025-06-01T11:55:10Z"}]},
}

SERVICE = {
    "apiVersion": "v1", "kind": "Service", "metadata": PLAIN_META,
    "spec": {"type": "NodePort", "clusterIP": "10.96.12.7", "clusterIPs": ["10.96.12.7"], "ipFamilies": ["IPv4"],
             "ipFamilyPolicy": "SingleStack", "sessionAffinity": "None", "externalTrafficPolicy": "Cluster",
             "internalTrafficPolicy": "Cluster", "selector": {"app": "web"},
             "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080, "nodePort": 30080},
                       {"name": "metrics", "port": 9090, "protocol": "TCP", "targetPort": "metrics",
                        "nodePort": 30090}]},
    "status": {"loadBalancer": {}},
}

JOB = {
    "apiVersion": "batch/v1", "kind": "Job", "metadata": PLAIN_META,
    "spec": {"parallelism": 1, "completions": 1, "backoffLimit": 6, "completionMode": "NonIndexed",
             "suspend": False, "manualSelector": False, "podReplacementPolicy": "TerminatingOrFailed",
             "activeDeadlineSeconds": 600, "ttlSecondsAfterFinished": 100,
             "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u-2"}},
             "podFailurePolicy": {"rules": [{"action": "FailJob", "onExitCodes": {
                 "containerName": "nginx", "operator": "In", "values": [1, 42]}}]},
             "template": {"metadata": {"labels": {"job-name": "web"}},
                          "spec": {**POD_SPEC, "restartPolicy": "Never"}}},
    "status": {"startTime": "2025-06-01T11:55:00Z", "completionTime": "2025-06-01T11:55:07Z", "succeeded": 1,
               "ready": 0, "terminating": 0, "uncountedTerminatedPods": {},
               "conditions": [{"type": "Complete", "status": "True", "lastProbeTime": "2025-06-01T11:55:07Z",
                               "lastTransitionTime": "2025-06-01T11:55:07Z"}]},
}

CRONJOB = {
    "apiVersion": "batch/v1", "kind": "CronJob", "metadata": PLAIN_META,
    "spec": {"schedule": "*/5 * * * *", "timeZone": "Etc/UTC", "concurrencyPolicy": "Forbid", "suspend": False,
             "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1, "startingDeadlineSeconds": 60,
             "jobTemplate": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"backoffLimit": 2, "template": {"spec": {**POD_SPEC, "restartPolicy": "OnFailure"}}}}},
    "status": {"active": [{"kind": "Job", "namespace": "default", "name": "web-29150000", "uid": "u-3",
                           "apiVersion": "batch/v1", "resourceVersion": "900"}],
               "lastScheduleTime": "2025-06-01T12:00:00Z", "lastSuccessfulTime": "2025-06-01T11:55:07Z"},
}

CONTROLLER_REVISION = {
    "apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": PLAIN_META,
    "revision": 2, "data": {"spec": {"template": {"$patch": "replace", "spec": {"containers": [{"name": "x"}]}}}},
}

HPA = {
    "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": PLAIN_META,
    "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "minReplicas": 1,
             "maxReplicas": 5, "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                 "type": "Utilization", "averageUtilization": 80}}}],
             "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300, "selectPolicy": "Max",
                                        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}}},
    "status": {"currentReplicas": 1, "desiredReplicas": 1},
}

INGRESS = {
    "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": PLAIN_META,
    "spec": {"ingressClassName": "nginx", "tls": [{"hosts": ["a.example"], "secretName": "tls"}],
             "rules": [{"host": "a.example", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
                 "service": {"name": "web", "port": {"number": 80}}}}]}}]},
    "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.9", "ports": [{"port": 443, "protocol": "TCP"}]}]}},
}

ROUND_TRIP = [POD, DEPLOYMENT, SERVICE, JOB, CRONJOB, CONTROLLER_REVISION, HPA, INGRESS]


@pytest.mark.parametrize("obj", ROUND_TRIP, ids=lambda o: o["kind"])
def test_round_trip(obj: dict[str, Any]) -> None:
    original = copy.deepcopy(obj)
    assert decode_k8s_protobuf(encode_k8s_protobuf(obj)) == original


@pytest.mark.parametrize("obj", ROUND_TRIP, ids=lambda o: o["kind"])
def test_gogo_style_bodies_decode_to_the_object(obj: dict[str, Any]) -> None:
    # Go writes every value field; what comes back is the object plus what Go's JSON writes for them:
    # empty structs and the zero of fields without omitempty, never a changed value.
    decoded = decode_k8s_protobuf(encode_k8s_protobuf(obj, emit_defaults=True))
    _assert_superset_with_empty_structs(decoded, obj)


def test_inline_fields_flatten() -> None:
    # core/v1 Volume embeds VolumeSource with json:",inline"; PersistentVolumeSpec embeds its source.
    volume = MESSAGES["core.v1.Volume"]
    assert volume[2].inline and volume[2].type == "core.v1.VolumeSource"
    raw = encode_message({"name": "cfg", "configMap": {"name": "c"}}, "core.v1.Volume")
    # name=1, volumeSource=2 {configMap=19 {localObjectReference=1 (inline too) {name=1}}}
    assert raw == b"\n\x03cfg\x12\x08\x9a\x01\x05\n\x03\n\x01c"
    assert decode_message(raw, "core.v1.Volume") == {"name": "cfg", "configMap": {"name": "c"}}


# --- bytes as kubectl builds them ------------------------------------------------------------------


def object_meta(name: str, labels: dict[str, str]) -> bytes:
    # ObjectMeta: name=1 generateName=2 namespace=3 selfLink=4 uid=5 resourceVersion=6 generation=7
    # creationTimestamp=8 (empty Time) labels=11; every value field written, as gogo does.
    return (st(1, name) + st(2, "") + st(3, "") + st(4, "") + st(5, "") + st(6, "") + vi(7, 0) + ld(8, b"")
            + b"".join(entry(11, k, v) for k, v in labels.items()))


def test_kubectl_create_deployment_bytes() -> None:
    # `kubectl create deployment web --image=nginx` (kubectl 1.33, typed apps/v1 client): Deployment
    # {metadata=1, spec=2 {replicas=1, selector=2, template=3 {metadata=1, spec=2 {containers=2
    # {name=1 image=2 ... resources=8 {} terminationMessagePath=13 imagePullPolicy=14 ...}, restartPolicy=3
    # dnsPolicy=6 ... schedulerName=19}}, strategy=4 {},
    # minReadySeconds=5, paused=7}, status=3 {}}; fields in number order, zero value fields present.
    container = (st(1, "nginx") + st(2, "nginx") + st(5, "") + ld(8, b"") + st(13, "") + st(14, "")
                 + vi(16, 0) + vi(17, 0) + vi(18, 0) + st(20, ""))
    pod_spec = (ld(2, container) + st(3, "") + st(6, "") + st(8, "") + st(9, "") + st(10, "") + vi(11, 0)
                + vi(12, 0) + vi(13, 0) + st(16, "") + st(17, "") + st(19, ""))
    template = ld(1, object_meta("", {"app": "web"})) + ld(2, pod_spec)
    selector = entry(1, "app", "web")
    spec = vi(1, 1) + ld(2, selector) + ld(3, template) + ld(4, st(1, "")) + vi(5, 0) + vi(7, 0)
    status = vi(1, 0) + vi(2, 0) + vi(3, 0) + vi(4, 0) + vi(5, 0)
    raw = ld(1, object_meta("web", {"app": "web"})) + ld(2, spec) + ld(3, status)
    body = b"k8s\x00" + ld(1, st(1, "apps/v1") + st(2, "Deployment")) + ld(2, raw) + st(3, "") + st(4, "")
    assert decode_k8s_protobuf(body) == {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "nginx", "image": "nginx", "resources": {}}]}},
                 "strategy": {}},
        "status": {},
    }


def test_kubectl_create_service_and_job_bytes() -> None:
    # `kubectl create service nodeport web --tcp=80:8080`: ServicePort {name=1 protocol=2 port=3
    # targetPort=4 (IntOrString {type=1 intVal=2 strVal=3}) nodePort=5}.
    target = vi(1, 0) + vi(2, 8080) + st(3, "")
    port = st(1, "80-8080") + st(2, "TCP") + vi(3, 80) + ld(4, target) + vi(5, 0)
    spec = ld(1, port) + entry(2, "app", "web") + st(3, "") + st(4, "NodePort")
    raw = ld(1, object_meta("web", {"app": "web"})) + ld(2, spec) + ld(3, ld(1, b""))
    body = b"k8s\x00" + ld(1, st(1, "v1") + st(2, "Service")) + ld(2, raw)
    assert decode_k8s_protobuf(body) == {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                 "selector": {"app": "web"}, "type": "NodePort"},
        "status": {"loadBalancer": {}},
    }
    # `kubectl create job pi --image=perl`: Job spec {template=6 {spec {restartPolicy=3 "Never"}}}
    pod_spec = ld(2, st(1, "pi") + st(2, "perl") + ld(8, b"")) + st(3, "Never")
    job_spec = ld(6, ld(1, object_meta("", {})) + ld(2, pod_spec))
    raw = ld(1, object_meta("pi", {})) + ld(2, job_spec) + ld(3, b"")
    body = b"k8s\x00" + ld(1, st(1, "batch/v1") + st(2, "Job")) + ld(2, raw)
    assert decode_k8s_protobuf(body)["spec"] == {
        "template": {"metadata": {}, "spec": {"containers": [{"name": "pi", "image": "perl", "resources": {}}],
                                              "restartPolicy": "Never"}}}


def test_issue_11_kinds_have_messages() -> None:
    wanted = {
        "v1": ["Pod", "Service", "Endpoints", "Node", "PersistentVolume", "PersistentVolumeClaim",
               "ReplicationController", "PodTemplate", "LimitRange", "ResourceQuota", "Binding", "Event"],
        "apps/v1": ["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "ControllerRevision"],
        "batch/v1": ["Job", "CronJob"], "autoscaling/v1": ["HorizontalPodAutoscaler", "Scale"],
        "autoscaling/v2": ["HorizontalPodAutoscaler"],
        "networking.k8s.io/v1": ["Ingress", "IngressClass", "NetworkPolicy"],
        "policy/v1": ["PodDisruptionBudget", "Eviction"], "scheduling.k8s.io/v1": ["PriorityClass"],
        "storage.k8s.io/v1": ["StorageClass", "CSIDriver", "CSINode", "VolumeAttachment"],
        "discovery.k8s.io/v1": ["EndpointSlice"], "node.k8s.io/v1": ["RuntimeClass"],
        "certificates.k8s.io/v1": ["CertificateSigningRequest"], "events.k8s.io/v1": ["Event"],
        "apiregistration.k8s.io/v1": ["APIService"],
    }
    for api_version, kinds in wanted.items():
        for kind in kinds:
            assert (api_version, kind) in KIND_MESSAGES, (api_version, kind)
            assert (api_version, kind + "List") in KIND_MESSAGES or kind in ("Binding", "Scale", "Eviction")


def test_definition_carries_its_message() -> None:
    assert ResourceDef("apps", "v1", "Deployment", "deployments", "deployment", True).protobuf_message == \
        "apps.v1.Deployment"
    assert ResourceDef("", "v1", "ConfigMap", "configmaps", "configmap", True).protobuf_message == "core.v1.ConfigMap"
    assert ResourceDef("apps.example.com", "v1", "Deployment", "deployments", "deployment",
                       True).protobuf_message is None


def test_watch_frames() -> None:
    from gateway._protobuf import decode_watch_frames
    from gateway._protobuf_write import encode_watch_lines

    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "resourceVersion": "7"},
           "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "code": 410,
              "reason": "Expired", "message": "too old resource version: 1 (5)"}
    bookmark = {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": "9", "annotations": {
        "k8s.io/initial-events-end": "true"}}}
    lines = b"".join(json.dumps({"type": t, "object": o}).encode() + b"\n"
                     for t, o in (("ADDED", pod), ("BOOKMARK", bookmark), ("ERROR", status)))
    data = encode_watch_lines(lines)
    n = int.from_bytes(data[:4], "big")
    assert data[4:6] == b"\n\x05" and data[6:11] == b"ADDED"  # WatchEvent.type=1, no k8s prefix
    assert data[4 + n:4 + n + 4] != b"k8s\x00"
    events = decode_watch_frames(data)
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK", "ERROR"]
    assert events[0]["object"] == pod and events[1]["object"] == bookmark
    assert events[2]["object"] == status
