"""Strategies of the workload kinds, Services and the small kinds: defaulting and validation
against kube 1.33's outputs (kinds._apps, kinds._batch, kinds._core, kinds._services,
kinds._policy)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kinds import ApiError, Registry, ResourceDef, definitions, schema_for
from kinds import _subresources as subresources
from kinds._batch import parse_cron_schedule
from kinds._errors import Cause
from kinds._fieldvalidation import type_errors
from kinds._services import default_service_ip_families
from kinds._strategy import strategy_for

_REGISTRY = Registry()


def _served(group: str, version: str, plural: str) -> ResourceDef:
    rdef = _REGISTRY.get(group, version, plural)
    assert rdef is not None, plural
    return rdef


DEPLOY = _served("apps", "v1", "deployments")
RS = _served("apps", "v1", "replicasets")
STS = _served("apps", "v1", "statefulsets")
DS = _served("apps", "v1", "daemonsets")
RC = _served("", "v1", "replicationcontrollers")
JOB = _served("batch", "v1", "jobs")
CJ = _served("batch", "v1", "cronjobs")
SVC = _served("", "v1", "services")
PVC = _served("", "v1", "persistentvolumeclaims")
PV = _served("", "v1", "persistentvolumes")
PC = _served("scheduling.k8s.io", "v1", "priorityclasses")
PDB = _served("policy", "v1", "poddisruptionbudgets")
ING = _served("networking.k8s.io", "v1", "ingresses")
EPS = _served("discovery.k8s.io", "v1", "endpointslices")
SC = _served("storage.k8s.io", "v1", "storageclasses")
CSI = _served("storage.k8s.io", "v1", "csidrivers")
NP = _served("networking.k8s.io", "v1", "networkpolicies")
HPA2 = _served("autoscaling", "v2", "horizontalpodautoscalers")

# The PodSpec defaults every template gets (SetDefaults_PodSpec + SetDefaults_Container), as
# `kubectl get deployment web -o yaml` shows them for `kubectl create deployment web --image=nginx`.
NGINX_TEMPLATE_SPEC = {
    "containers": [{"image": "nginx", "imagePullPolicy": "Always", "name": "nginx", "resources": {},
                    "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}],
    "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "schedulerName": "default-scheduler",
    "securityContext": {}, "terminationGracePeriodSeconds": 30,
}


def _obj(rdef: ResourceDef, spec: dict[str, Any], name: str = "web", **meta: Any) -> dict[str, Any]:
    return {"apiVersion": rdef.api_version, "kind": rdef.kind,
            "metadata": {"name": name, "namespace": "default", "uid": "7e1c2b2e-0000-4000-8000-000000000001",
                         "creationTimestamp": "2026-11-29T20:00:00Z", **meta}, "spec": spec}


def _template(labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"labels": labels if labels is not None else {"app": "web"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx", "resources": {}}], **spec}}


def _created(rdef: ResourceDef, obj: dict[str, Any]) -> dict[str, Any]:
    """What the resource actor does on create: the definition's initial status and generation,
    then the kind's strategy."""
    subresources.prepare_create(rdef, obj)
    strategy_for(rdef).prepare_for_create(obj)
    return obj


def _causes(rdef: ResourceDef, obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    return [f"{c.field}: {c.message}" for c in strategy_for(rdef).validate(obj, old, rdef)]


# ---- apps/v1 --------------------------------------------------------------------------------------


def test_kubectl_create_deployment_defaults_as_kube() -> None:
    # Body of `kubectl create deployment web --image=nginx`; expected spec and status as
    # `kubectl get deployment web -o yaml` shows them (pkg/apis/apps/v1/defaults_test.go
    # TestSetDefaultDeployment: 1 replica, RollingUpdate 25%/25%, 10 revisions, 600 s).
    d = _created(DEPLOY, _obj(DEPLOY, {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "strategy": {},
                                       "template": _template()}, labels={"app": "web"}))
    assert d["spec"] == {
        "progressDeadlineSeconds": 600, "replicas": 1, "revisionHistoryLimit": 10,
        "selector": {"matchLabels": {"app": "web"}},
        "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}, "type": "RollingUpdate"},
        "template": {"metadata": {"creationTimestamp": None, "labels": {"app": "web"}}, "spec": NGINX_TEMPLATE_SPEC},
    }
    assert d["status"] == {}
    assert _causes(DEPLOY, d) == []
    # No enableServiceLinks in a template: that default is SetDefaults_Pod's, for Pods only.
    assert "enableServiceLinks" not in d["spec"]["template"]["spec"]


def test_deployment_selector_rules() -> None:
    # The messages of `kubectl apply` against kube 1.33 (apps/validation ValidateDeploymentSpec
    # and ValidateDeploymentUpdate; 1.34 started printing values as JSON).
    d = _created(DEPLOY, _obj(DEPLOY, {"selector": {"matchLabels": {"app": "other"}}, "template": _template()}))
    assert _causes(DEPLOY, d) == [
        ('spec.template.metadata.labels: Invalid value: map[string]string{"app":"web"}: `selector` does not match '
        "template `labels`")]
    ok = _created(DEPLOY, _obj(DEPLOY, {"selector": {"matchLabels": {"app": "web"}}, "template": _template()}))
    moved = copy.deepcopy(ok)
    moved["spec"]["selector"] = {"matchLabels": {"app": "web", "tier": "a"}}
    moved["spec"]["template"]["metadata"]["labels"]["tier"] = "a"
    assert _causes(DEPLOY, moved, ok) == [
        ('spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"web", "tier":"a"}, '
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable")]
    missing = _created(DEPLOY, _obj(DEPLOY, {"template": _template(), "replicas": -1}))
    assert _causes(DEPLOY, missing) == ["spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                                        "spec.selector: Required value"]


def test_deployment_template_must_restart_always_and_strategy_rules() -> None:
    d = _created(DEPLOY, _obj(DEPLOY, {"selector": {"matchLabels": {"app": "web"}},
                                       "strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}},
                                       "template": _template(restartPolicy="Never")}))
    assert _causes(DEPLOY, d) == [
        'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"',
        'spec.strategy.rollingUpdate.maxUnavailable: Invalid value: "0%": may not be 0 when `maxSurge` is 0',
    ]


def test_statefulset_daemonset_replicaset_defaults() -> None:
    # pkg/apis/apps/v1/defaults_test.go: TestSetDefaultStatefulSet, TestSetDefaultDaemonSetSpec,
    # TestSetDefaultReplicaSet; the status counters Go writes even when zero.
    sts = _created(STS, _obj(STS, {"serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
                                   "template": _template()}))
    assert {k: v for k, v in sts["spec"].items() if k != "template"} == {
        "serviceName": "web", "selector": {"matchLabels": {"app": "web"}}, "podManagementPolicy": "OrderedReady",
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
        "replicas": 1, "revisionHistoryLimit": 10}
    assert sts["status"] == {"availableReplicas": 0, "replicas": 0}
    assert _causes(STS, sts) == []
    changed = copy.deepcopy(sts)
    changed["spec"]["podManagementPolicy"] = "Parallel"
    assert _causes(STS, changed, sts) == [
        ("spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
        "'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden")]
    ds = _created(DS, _obj(DS, {"selector": {"matchLabels": {"app": "web"}}, "template": _template()}))
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                            "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert ds["spec"]["revisionHistoryLimit"] == 10
    assert _causes(DS, ds) == []
    rs = _created(RS, _obj(RS, {"selector": {"matchLabels": {"app": "web"}}, "template": _template()}))
    assert rs["spec"]["replicas"] == 1 and rs["status"] == {"replicas": 0}
    assert _causes(RS, rs) == []


def test_replication_controller_selector_and_labels_default_to_the_templates() -> None:
    # pkg/apis/core/v1/defaults_test.go TestSetDefaultReplicationControllerSelector/Labels.
    rc = _created(RC, _obj(RC, {"template": _template({"app": "web", "tier": "fe"})}))
    assert rc["spec"]["selector"] == {"app": "web", "tier": "fe"}
    assert rc["metadata"]["labels"] == {"app": "web", "tier": "fe"}
    assert rc["spec"]["replicas"] == 1
    assert _causes(RC, rc) == []


# ---- batch/v1 -------------------------------------------------------------------------------------


def test_job_defaults_and_generated_selector_as_kube() -> None:
    # The Job of docs "Jobs" (kubernetes.io/docs/concepts/workloads/controllers/job/, tab
    # "kubectl get job pi -o yaml"): completions/parallelism 1, NonIndexed, not suspended,
    # TerminatingOrFailed, manualSelector false, and the generated selector and template labels.
    uid = "7e1c2b2e-0000-4000-8000-000000000001"
    job = _created(JOB, _obj(JOB, {"template": {"spec": {
        "containers": [{"name": "pi", "image": "perl:5.34.0", "command": ["perl", "-Mbignum=bpi", "-wle",
                                                                          "print bpi(2000)"]}],
        "restartPolicy": "Never"}}, "backoffLimit": 4}, name="pi"))
    spec = job["spec"]
    assert {k: v for k, v in spec.items() if k != "template"} == {
        "backoffLimit": 4, "completionMode": "NonIndexed", "completions": 1, "manualSelector": False,
        "parallelism": 1, "podReplacementPolicy": "TerminatingOrFailed",
        "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}, "suspend": False}
    labels = {"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": "pi",
              "controller-uid": uid, "job-name": "pi"}
    assert spec["template"]["metadata"] == {"creationTimestamp": None, "labels": labels}
    assert spec["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert job["metadata"]["labels"] == labels
    assert job["status"] == {}
    assert _causes(JOB, job) == []


def test_job_template_restart_policy_and_immutability() -> None:
    # `kubectl create -f` of a Job whose template leaves restartPolicy out (PodSpec defaulting
    # makes it Always, which a Job refuses: batch/validation ValidateJobSpec).
    job = _created(JOB, _obj(JOB, {"template": _template({})}, name="pi"))
    assert _causes(JOB, job) == [
        'spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never"']
    ok = _created(JOB, _obj(JOB, {"template": _template({}, restartPolicy="Never")}, name="pi"))
    changed = copy.deepcopy(ok)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    assert [c.split(":")[0] for c in _causes(JOB, changed, ok)] == ["spec.template"]


def test_cronjob_defaults_and_schedule() -> None:
    # `kubectl create cronjob hello --image=busybox --schedule="*/1 * * * *"` and kube's output:
    # Allow, not suspended, 3/1 history, the job template's pod template defaulted, `status: {}`.
    cj = _created(CJ, _obj(CJ, {"jobTemplate": {"metadata": {"name": "hello"}, "spec": {"template": {
        "spec": {"containers": [{"name": "hello", "image": "busybox", "resources": {}}],
                 "restartPolicy": "OnFailure"}}}}, "schedule": "*/1 * * * *"}, name="hello"))
    assert {k: v for k, v in cj["spec"].items() if k != "jobTemplate"} == {
        "concurrencyPolicy": "Allow", "failedJobsHistoryLimit": 1, "schedule": "*/1 * * * *",
        "successfulJobsHistoryLimit": 3, "suspend": False}
    jt = cj["spec"]["jobTemplate"]
    assert jt["metadata"] == {"name": "hello", "creationTimestamp": None}
    assert set(jt["spec"]) == {"template"}  # the JobSpec inside gets no defaults
    assert jt["spec"]["template"]["metadata"] == {"creationTimestamp": None}
    assert cj["status"] == {}
    assert _causes(CJ, cj) == []
    bad = copy.deepcopy(cj)
    bad["spec"]["schedule"] = "61 * * * *"
    bad["spec"]["timeZone"] = "Mars/Olympus"
    assert _causes(CJ, bad) == [
        'spec.schedule: Invalid value: "61 * * * *": end of range (61) above maximum (59): 61',
        'spec.timeZone: Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus']


@pytest.mark.parametrize(("schedule", "error"), [
    # robfig/cron v3 ParseStandard, which kube's ValidateCronJobSpec calls, and its error texts.
    ("*/5 * * * *", None), ("0 0 1 jan mon", None), ("@hourly", None), ("@every 1h30m", None),
    ("0-59/15 9-17 * * 1-5", None), ("5 4 * * sun", None),
    ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
    ("x * * * *", 'failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax'),
    ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
    ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
    ("*/0 * * * *", "step of range should be a positive number: */0"),
    ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
    ("@weekdays", "unrecognized descriptor: @weekdays"),
])
def test_cron_grammar(schedule: str, error: str | None) -> None:
    if error is None:
        parse_cron_schedule(schedule)
    else:
        with pytest.raises(ValueError) as e:
            parse_cron_schedule(schedule)
        assert str(e.value) == error


# ---- Services -------------------------------------------------------------------------------------


def test_kubectl_create_service_clusterip_defaults_as_kube() -> None:
    # `kubectl create service clusterip my-svc --tcp=5678:8080`, and what `kubectl get svc -o yaml`
    # shows once the allocator has written the address (pkg/apis/core/v1/defaults_test.go
    # TestSetDefaultService; the registry's IP family fields).
    svc = _created(SVC, _obj(SVC, {"ports": [{"name": "5678-8080", "port": 5678, "protocol": "TCP",
                                              "targetPort": 8080}],
                                   "selector": {"app": "my-svc"}, "type": "ClusterIP"}, name="my-svc"))
    assert svc["spec"] == {"internalTrafficPolicy": "Cluster",
                           "ports": [{"name": "5678-8080", "port": 5678, "protocol": "TCP", "targetPort": 8080}],
                           "selector": {"app": "my-svc"}, "sessionAffinity": "None", "type": "ClusterIP"}
    assert svc["status"] == {"loadBalancer": {}}
    svc["spec"]["clusterIP"] = "10.96.12.34"
    default_service_ip_families(svc)
    assert svc["spec"]["clusterIPs"] == ["10.96.12.34"]
    assert (svc["spec"]["ipFamilies"], svc["spec"]["ipFamilyPolicy"]) == (["IPv4"], "SingleStack")
    assert _causes(SVC, svc) == []


def test_service_port_defaults_and_nodeport() -> None:
    svc = _created(SVC, _obj(SVC, {"type": "NodePort", "ports": [{"port": 80}], "selector": {"a": "b"}}))
    assert svc["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    assert svc["spec"]["externalTrafficPolicy"] == "Cluster"
    lb = _created(SVC, _obj(SVC, {"type": "LoadBalancer", "ports": [{"port": 80}]}))
    assert lb["spec"]["allocateLoadBalancerNodePorts"] is True


def test_service_validation_messages() -> None:
    svc = _created(SVC, _obj(SVC, {"ports": [{"port": 80}, {"port": 70000, "name": "b", "nodePort": 30001}],
                                   "type": "ClusterIP"}, name="1web"))
    assert _causes(SVC, svc) == [
        ('metadata.name: Invalid value: "1web": a DNS-1035 label must consist of lower case alphanumeric characters '
        "or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
        "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"),
        "spec.ports[0].name: Required value",
        "spec.ports[1].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
        "spec.ports[1].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
        "spec.ports[1].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
    ]
    empty = _created(SVC, _obj(SVC, {}))
    assert _causes(SVC, empty) == ["spec.ports: Required value"]
    headless = _created(SVC, _obj(SVC, {"clusterIP": "None", "selector": {"app": "db"}}))
    assert _causes(SVC, headless) == []
    assert headless["spec"]["ipFamilyPolicy"] == "SingleStack"


def test_service_cluster_ip_is_kept_and_immutable() -> None:
    # The 1.33 message of re-applying a ClusterIP service as headless (validateUpgradeDowngradeClusterIPs).
    old = _created(SVC, _obj(SVC, {"ports": [{"port": 80}], "clusterIP": "10.96.99.37"}))
    replaced = _obj(SVC, {"ports": [{"port": 80}]})
    strategy_for(SVC).prepare_for_update(replaced, old)
    assert replaced["spec"]["clusterIP"] == "10.96.99.37"  # left out on update: the allocated one stays
    assert _causes(SVC, replaced, old) == []
    headless = _obj(SVC, {"ports": [{"port": 80}], "clusterIP": "None"})
    strategy_for(SVC).prepare_for_update(headless, old)
    assert _causes(SVC, headless, old) == [
        'spec.clusterIPs[0]: Invalid value: []string{"None"}: may not change once set']


# ---- small kinds ----------------------------------------------------------------------------------


def test_pvc_pv_defaults_and_rules() -> None:
    # pkg/apis/core/v1/defaults.go SetDefaults_PersistentVolume(Claim)(Spec).
    pvc = _created(PVC, _obj(PVC, {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}))
    assert pvc["spec"]["volumeMode"] == "Filesystem" and pvc["status"] == {"phase": "Pending"}
    assert _causes(PVC, pvc) == []
    bad = _created(PVC, _obj(PVC, {}))
    assert _causes(PVC, bad) == ["spec.accessModes: Required value: at least 1 access mode is required",
                                 "spec.resources[storage]: Required value"]
    pv = _created(PV, {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv1"},
                       "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
                                "hostPath": {"path": "/data"}}})
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain" and pv["spec"]["volumeMode"] == "Filesystem"
    assert pv["status"]["phase"] == "Pending"
    assert _causes(PV, pv) == []


def test_priority_class_pdb_ingress_endpointslice() -> None:
    pc = _created(PC, {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "high"},
                       "value": 1000})
    assert pc["preemptionPolicy"] == "PreemptLowerPriority"
    assert _causes(PC, pc) == []
    pc2 = copy.deepcopy(pc)
    pc2["value"] = 5
    assert _causes(PC, pc2, pc) == ["value: Forbidden: may not be changed in an update."]
    pdb = _created(PDB, _obj(PDB, {"minAvailable": 1, "maxUnavailable": "50%",
                                   "selector": {"matchLabels": {"app": "web"}}}))
    assert _causes(PDB, pdb) == ['spec: Invalid value: "": minAvailable and maxUnavailable cannot be both set']
    ing = _created(ING, _obj(ING, {"rules": [{"http": {"paths": [{"path": "/", "backend": {
        "service": {"name": "web", "port": {"number": 80}}}}]}}]}))
    assert _causes(ING, ing) == ["spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified"]
    assert ing["status"] == {"loadBalancer": {}}
    eps = _created(EPS, {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                         "metadata": {"name": "web-abc", "namespace": "default"}, "ports": [{"port": 80}]})
    assert eps["ports"] == [{"port": 80, "name": "", "protocol": "TCP"}]
    assert _causes(EPS, eps) == ["addressType: Required value"]


# ---- properties over every strategy ----------------------------------------------------------------

_ALL = [DEPLOY, RS, STS, DS, RC, JOB, CJ, SVC, PVC, PV, PC, PDB, ING, EPS, SC, CSI, NP, HPA2]
_json = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2, 70000), st.sampled_from(
    ["", "a", "web", "Always", "None", "10.0.0.1", "1Gi", "*/5 * * * *", "25%", "TCP", "x y"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(
                                ["spec", "template", "selector", "matchLabels", "containers", "name", "image",
                                 "ports", "port", "replicas", "type", "clusterIP", "schedule", "jobTemplate",
                                 "metadata", "labels", "strategy", "rollingUpdate", "maxSurge", "accessModes",
                                 "resources", "requests", "rules", "http", "paths", "updateStrategy"]),
                                inner, max_size=4)), max_leaves=20)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_ALL), st.dictionaries(st.sampled_from(["spec", "value", "addressType", "ports"]), _json,
                                              max_size=3), _json)
def test_strategies_default_idempotently_and_validate_without_raising(
        rdef: ResourceDef, body: dict[str, Any], other: Any) -> None:
    s = strategy_for(rdef)
    obj = {"apiVersion": rdef.api_version, "kind": rdef.kind, "metadata": {"name": "x", "uid": "u"}, **body}
    if rdef.namespaced:
        obj["metadata"]["namespace"] = "default"
    schema = schema_for(rdef.group, rdef.version, rdef.kind)
    if schema is not None and type_errors(obj, schema, definitions()):
        return  # a value of the wrong JSON type is the typed decoder's 400 before any strategy runs
    try:
        s.prepare_for_create(obj)
    except ApiError:
        return
    once = copy.deepcopy(obj)
    s.prepare_for_update(obj, once)
    assert obj == once
    old = copy.deepcopy(obj)
    if isinstance(other, dict) and not (schema is not None and type_errors({**old, "spec": other}, schema,
                                                                          definitions())):
        old["spec"] = other
    for causes in (s.validate(obj, None, rdef), s.validate(obj, old, rdef)):
        assert all(isinstance(c, Cause) and c.message for c in causes)



def test_storage_and_network_defaults() -> None:
    # pkg/apis/storage/v1/defaults.go (SetDefaults_StorageClass, SetDefaults_CSIDriver with its
    # 1.33 GA gates) and pkg/apis/networking/v1/defaults.go (SetDefaults_NetworkPolicy(Port)).
    sc = _created(SC, {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "fast"},
                       "provisioner": "kubernetes.io/no-provisioner"})
    assert (sc["reclaimPolicy"], sc["volumeBindingMode"]) == ("Delete", "Immediate")
    assert _causes(SC, sc) == []
    sc2 = copy.deepcopy(sc)
    sc2["reclaimPolicy"] = "Retain"
    assert _causes(SC, sc2, sc) == ["reclaimPolicy: Forbidden: updates to reclaimPolicy are forbidden."]
    csi = _created(CSI, {"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": {"name": "d"},
                         "spec": {}})
    assert csi["spec"] == {"attachRequired": True, "podInfoOnMount": False, "storageCapacity": False,
                           "fsGroupPolicy": "ReadWriteOnceWithFSType", "requiresRepublish": False,
                           "volumeLifecycleModes": ["Persistent"]}
    np = _created(NP, _obj(NP, {"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}], "egress": [{}]}))
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert np["spec"]["ingress"][0]["ports"] == [{"port": 80, "protocol": "TCP"}]


def test_hpa_v2_defaults() -> None:
    # pkg/apis/autoscaling/v2/defaults.go: minReplicas 1, 80% CPU when no metric is given, and a
    # behavior's unset rules filled in (scale-down leaves its stabilization window to the controller).
    hpa = _created(HPA2, _obj(HPA2, {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                                        "name": "web"}, "maxReplicas": 5,
                                     "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}))
    spec = hpa["spec"]
    assert spec["minReplicas"] == 1
    assert spec["metrics"] == [{"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": 80}}}]
    assert spec["behavior"]["scaleUp"] == {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
        {"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]}
    assert spec["behavior"]["scaleDown"] == {"stabilizationWindowSeconds": 60, "selectPolicy": "Max", "policies": [
        {"type": "Percent", "value": 100, "periodSeconds": 15}]}
    assert _causes(HPA2, hpa) == []
    bad = copy.deepcopy(hpa)
    bad["spec"]["minReplicas"] = 9
    assert _causes(HPA2, bad) == ["spec.minReplicas: Invalid value: 9: must be less than or equal to `maxReplicas`"]


@pytest.mark.parametrize(("rdef", "word"), [(DEPLOY, "deployment"), (RS, "deployment"), (STS, "statefulset"),
                                            (DS, "daemonset")])
def test_empty_selector_words(rdef: ResourceDef, word: str) -> None:
    # apps/validation: ValidateReplicaSetSpec reuses "for deployment"; the others name their kind.
    obj = _created(rdef, _obj(rdef, {"selector": {}, "template": _template()}))
    assert _causes(rdef, obj) == [
        ("spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
        f"MatchExpressions:[]v1.LabelSelectorRequirement(nil)}}: empty selector is invalid for {word}")]


NODE = ResourceDef("", "v1", "Node", "nodes", "node", False, ("no",))
EP = ResourceDef("", "v1", "Endpoints", "endpoints", "endpoints", True, ("ep",))


def test_node_taints_and_allocatable_and_endpoints() -> None:
    # SetDefaults_NodeStatus (allocatable from capacity), validateNodeTaints, and Endpoints'
    # SetDefaults_Endpoints (port protocol TCP) and address IPs (pkg/apis/core/validation).
    node = _created(NODE, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
                           "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}, {"key": "k", "effect": "Bad"}]},
                           "status": {"capacity": {"cpu": "4", "memory": "8Gi"}}})
    assert node["status"]["allocatable"] == {"cpu": "4", "memory": "8Gi"}
    assert _causes(NODE, node) == [
        ('spec.taints[1].effect: Unsupported value: "Bad": supported values: "NoSchedule", "PreferNoSchedule", '
        '"NoExecute"')]
    ep = _created(EP, {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web", "namespace": "default"},
                       "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "nope"}], "ports": [{"port": 80}]}]})
    assert ep["subsets"][0]["ports"] == [{"port": 80, "protocol": "TCP"}]
    assert _causes(EP, ep) == [
        ('subsets[0].addresses[1].ip: Invalid value: "nope": must be a valid IP address, (e.g. 10.9.8.7 or '
        "2001:db8::ffff)")]
