"""PodSpec defaulting and validation, Pods' strategy and resource quantities (kinds._podspec,
kinds._quantity, kinds._core.PodStrategy)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kinds import ApiError, BadRequest, Registry, ResourceDef
from kinds import _subresources as subresources
from kinds._errors import Cause
from kinds._podspec import (
    default_pod,
    default_pod_spec,
    image_pull_policy_for,
    pod_qos_class,
    validate_pod_spec,
    validate_pod_spec_update,
)
from kinds._quantity import canonical_quantity, parse_quantity
from kinds._strategy import strategy_for

PODS: ResourceDef = Registry().get("", "v1", "pods")  # type: ignore[assignment]


def _create(pod: dict[str, Any]) -> None:
    """What the resource actor does on create: the definition's initial status, then the strategy."""
    subresources.prepare_create(PODS, pod)
    strategy_for(PODS).prepare_for_create(pod)


def _pod(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "nginx", "namespace": "default", "uid": "u", "creationTimestamp": "t"},
            "spec": spec}


def _texts(causes: list[Cause]) -> list[str]:
    return [f"{c.field}: {c.message}" for c in causes]


# ---- defaulting -----------------------------------------------------------------------------------


def test_kubectl_run_pod_defaults_as_kube() -> None:
    # The body `kubectl run nginx --image=nginx` sends, and the spec and status of
    # `kubectl get pod nginx -o yaml` on a 1.33 cluster (the fields admission plugins add —
    # serviceAccountName, priority, tolerations, the token volume — are not defaulting).
    pod = _pod(containers=[{"name": "nginx", "image": "nginx", "resources": {}}], restartPolicy="Always",
               dnsPolicy="ClusterFirst")
    _create(pod)
    assert pod["spec"] == {
        "containers": [{"image": "nginx", "imagePullPolicy": "Always", "name": "nginx", "resources": {},
                        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}],
        "dnsPolicy": "ClusterFirst", "enableServiceLinks": True, "restartPolicy": "Always",
        "schedulerName": "default-scheduler", "securityContext": {}, "terminationGracePeriodSeconds": 30,
    }
    assert pod["status"] == {"phase": "Pending", "qosClass": "BestEffort"}


@pytest.mark.parametrize(("image", "policy"), [
    # pkg/apis/core/v1/defaults.go SetDefaults_Container; docs "Images" (image-pull-policy):
    # ":latest" or no tag -> Always, any other tag or a digest -> IfNotPresent.
    ("nginx", "Always"), ("nginx:latest", "Always"), ("nginx:1.27", "IfNotPresent"),
    ("registry.k8s.io/pause:3.10", "IfNotPresent"), ("localhost:5000/app", "Always"),
    ("localhost:5000/app:v1", "IfNotPresent"), ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
    ("", "IfNotPresent"),
])
def test_image_pull_policy(image: str, policy: str) -> None:
    assert image_pull_policy_for(image) == policy


def test_probe_port_env_and_volume_defaults() -> None:
    # pkg/apis/core/v1/defaults_test.go: TestSetDefaultProbe (1/10/1/3), HTTPGetAction path "/"
    # scheme HTTP, ports' protocol TCP, fieldRef apiVersion v1, a volume without a source is an
    # emptyDir, secret/configMap modes 0644 (420), a token projection one hour.
    spec = {"containers": [{
        "name": "a", "image": "x:1",
        "ports": [{"containerPort": 80}],
        "livenessProbe": {"httpGet": {"port": 80}},
        "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
    }], "volumes": [{"name": "scratch"}, {"name": "s", "secret": {"secretName": "s"}},
                    {"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}]}
    default_pod_spec(spec)
    c = spec["containers"][0]
    assert c["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert c["livenessProbe"] == {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                                  "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}
    assert c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"] == "v1"
    assert spec["volumes"][0] == {"name": "scratch", "emptyDir": {}}
    assert spec["volumes"][1]["secret"]["defaultMode"] == 420
    assert spec["volumes"][2]["projected"] == {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}}]}


def test_requests_default_to_limits_and_qos() -> None:
    # docs "Assign Memory Resources to Containers and Pods": a container with a limit and no
    # request gets the limit as its request; docs "Configure Quality of Service for Pods": equal
    # cpu and memory requests and limits in every container make the Pod Guaranteed.
    pod = _pod(containers=[{"name": "qos-demo-ctr", "image": "nginx",
                            "resources": {"limits": {"memory": "200Mi", "cpu": "700m"}}}])
    _create(pod)
    assert pod["spec"]["containers"][0]["resources"]["requests"] == {"memory": "200Mi", "cpu": "700m"}
    assert pod["status"]["qosClass"] == "Guaranteed"


@pytest.mark.parametrize(("resources", "qos"), [
    # The three examples of docs "Configure Quality of Service for Pods" (qos-demo, qos-demo-2,
    # qos-demo-3) and pkg/apis/core/helper/qos's rules.
    ([{"limits": {"memory": "200Mi", "cpu": "700m"}, "requests": {"memory": "200Mi", "cpu": "700m"}}],
     "Guaranteed"),
    ([{"limits": {"memory": "200Mi"}, "requests": {"memory": "100Mi"}}], "Burstable"),
    ([{}], "BestEffort"),
    ([{"limits": {"memory": "200Mi", "cpu": "1"}, "requests": {"memory": "200Mi", "cpu": "1"}}, {}],
     "Burstable"),
    ([{"requests": {"cpu": "0"}}], "BestEffort"),
    ([{"limits": {"memory": "1Gi", "cpu": "1"}, "requests": {"memory": "1024Mi", "cpu": "1000m"}}], "Guaranteed"),
])
def test_qos_class(resources: list[dict[str, Any]], qos: str) -> None:
    pod = _pod(containers=[{"name": f"c{i}", "image": "x", "resources": r} for i, r in enumerate(resources)])
    assert pod_qos_class(pod) == qos


@pytest.mark.parametrize(("given", "stored"), [
    # docs "Resource Management for Pods and Containers": 0.1 CPU is 100m; kube stores the
    # canonical form (apimachinery resource.Quantity, quantity_test.go) after rounding up to milli
    # (SetDefaults_ResourceList).
    ("0.1", "100m"), ("0.5", "500m"), ("1", "1"), ("1000m", "1"), ("1500m", "1500m"), ("1024Mi", "1Gi"),
    ("1.5Gi", "1536Mi"), ("128974848", "128974848"), ("129e6", "129e6"), ("2000", "2k"), ("0.0001", "1m"),
    ("100Ki", "100Ki"), ("512Ki", "512Ki"), (1, "1"), (0.25, "250m"), ("0", "0"), ("1e3", "1e3"),
])
def test_canonical_quantity(given: object, stored: str) -> None:
    assert canonical_quantity(given) == stored


def test_bad_quantity_is_the_decoders_400() -> None:
    pod = _pod(containers=[{"name": "a", "image": "x", "resources": {"limits": {"cpu": "lots"}}}])
    with pytest.raises(BadRequest) as e:
        _create(pod)
    assert e.value.message == ('Pod in version "v1" cannot be handled as a Pod: quantities must match the regular '
                               "expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
    assert parse_quantity("1.5Gi") == 1610612736


# ---- validation -----------------------------------------------------------------------------------


def _valid(spec: dict[str, Any]) -> list[str]:
    default_pod_spec(spec)
    return _texts(validate_pod_spec(spec))


def test_valid_pod_spec_has_no_causes() -> None:
    assert _valid({"containers": [{"name": "a", "image": "x", "ports": [{"name": "http", "containerPort": 80}],
                                   "env": [{"name": "A.B-c", "value": "1"}],
                                   "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                   "volumes": [{"name": "data", "emptyDir": {}}]}) == []


def test_container_rules() -> None:
    # Messages of pkg/apis/core/validation (validateContainers, validateContainerPorts,
    # validateEnv, ValidateVolumeMounts) as a 1.33 apiserver returns them.
    out = _valid({"containers": [
        {"name": "", "image": "x"},
        {"name": "Web", "image": ""},
        {"name": "a", "image": "x", "ports": [{"containerPort": 70000, "name": "HTTP"},
                                             {"containerPort": 81, "name": "p", "protocol": "ICMP"},
                                             {"containerPort": 82, "name": "p"}],
         "env": [{"name": ""}, {"name": "A=B"}], "volumeMounts": [{"name": "nope", "mountPath": "/x"}]},
        {"name": "a", "image": "y"},
    ], "restartPolicy": "Sometimes"})
    assert out == [
        "spec.containers[0].name: Required value",
        ("spec.containers[1].name: Invalid value: \"Web\": a lowercase RFC 1123 label must consist of lower case "
        "alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name', "
        " or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"),
        "spec.containers[1].image: Required value",
        ('spec.containers[2].ports[0].name: Invalid value: "HTTP": must contain only alpha-numeric characters '
        "(a-z, 0-9), and hyphens (-)"),
        'spec.containers[2].ports[0].name: Invalid value: "HTTP": must contain at least one letter (a-z)',
        "spec.containers[2].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
        'spec.containers[2].ports[1].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"',
        'spec.containers[2].ports[2].name: Duplicate value: "p"',
        "spec.containers[2].env[0].name: Required value",
        ('spec.containers[2].env[1].name: Invalid value: "A=B": a valid environment variable name must consist '
        "only of printable ASCII characters other than '='"),
        'spec.containers[2].volumeMounts[0].name: Not found: "nope"',
        'spec.containers[3].name: Duplicate value: "a"',
        'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"',
    ]


def test_containers_required_and_names_unique_across_init_containers() -> None:
    assert _valid({"containers": []}) == ["spec.containers: Required value"]
    out = _valid({"initContainers": [{"name": "a", "image": "x"}], "containers": [{"name": "a", "image": "x"}]})
    assert out == ['spec.containers[0].name: Duplicate value: "a"']


def test_volume_rules_and_requests_above_limits() -> None:
    out = _valid({"volumes": [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}, "hostPath": {"path": "/"}}],
                  "containers": [{"name": "a", "image": "x",
                                  "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}]})
    assert out == [
        'spec.volumes[1].name: Duplicate value: "v"',
        "spec.volumes[1].emptyDir: Forbidden: may not specify more than 1 volume type",
        'spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to cpu limit of 1',
    ]


def test_pod_update_may_change_only_images_deadline_and_added_tolerations() -> None:
    old = _pod(containers=[{"name": "a", "image": "nginx:1"}])
    s = strategy_for(PODS)
    s.prepare_for_create(old)
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "nginx:2"
    new["spec"]["activeDeadlineSeconds"] = 30
    new["spec"]["tolerations"] = [{"key": "k", "operator": "Exists"}]
    s.prepare_for_update(new, old)
    assert s.validate(new, old, PODS) == []
    bad = copy.deepcopy(new)
    bad["spec"]["containers"][0]["ports"] = [{"containerPort": 80}]
    s.prepare_for_update(bad, new)
    causes = s.validate(bad, new, PODS)
    assert [c.field for c in causes] == ["spec"]
    # The first line of kube 1.33's message (the Go diff that follows it is kube's own).
    assert causes[0].message.startswith(
        "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
        "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to "
        "existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously "
        "negative)\n")
    removed = copy.deepcopy(new)
    removed["spec"]["tolerations"] = []
    assert "spec.tolerations" in [c.field for c in validate_pod_spec_update(removed["spec"], new["spec"])]


# ---- properties -----------------------------------------------------------------------------------

_names = st.text(alphabet="abcXYZ-_.0 =", min_size=0, max_size=8)
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 70000), _names)
_ports = st.lists(st.fixed_dictionaries({}, optional={
    "name": _scalars, "containerPort": _scalars, "protocol": st.sampled_from(["TCP", "UDP", "X", ""]),
    "hostPort": _scalars}), max_size=3)
_containers = st.lists(st.fixed_dictionaries({}, optional={
    "name": _scalars, "image": st.sampled_from(["nginx", "nginx:1", "", " x", "a@sha256:1", "Up/per"]),
    "ports": _ports,
    "env": st.lists(st.fixed_dictionaries({}, optional={"name": _scalars, "value": _scalars}), max_size=2),
    "resources": st.fixed_dictionaries({}, optional={
        "limits": st.dictionaries(st.sampled_from(["cpu", "memory", "x/y"]),
                                  st.sampled_from(["1", "100m", "1Gi", "0.5", "-1", 2])),
        "requests": st.dictionaries(st.sampled_from(["cpu", "memory"]), st.sampled_from(["2", "1Mi", "0"]))}),
    "volumeMounts": st.lists(st.fixed_dictionaries({}, optional={"name": _scalars, "mountPath": _scalars}),
                             max_size=2),
    "livenessProbe": st.fixed_dictionaries({}, optional={"httpGet": st.just({"port": 80}),
                                                         "successThreshold": st.integers(0, 3)}),
    "restartPolicy": st.sampled_from(["Always", "Never"]),
}), max_size=3)
_specs = st.fixed_dictionaries({}, optional={
    "containers": _containers, "initContainers": _containers,
    "volumes": st.lists(st.fixed_dictionaries({"name": _scalars}, optional={"emptyDir": st.just({})}), max_size=2),
    "restartPolicy": st.sampled_from(["Always", "OnFailure", "Never", "", "Sometimes"]),
    "activeDeadlineSeconds": st.integers(-1, 5),
    "tolerations": st.lists(st.fixed_dictionaries({}, optional={"key": _scalars, "operator": _scalars}), max_size=2),
    "hostNetwork": st.booleans(),
})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_specs)
def test_pod_defaulting_is_idempotent(spec: dict[str, Any]) -> None:
    pod = _pod(**spec)
    try:
        default_pod(pod)
    except ValueError:
        return  # a value the decoder refuses (a bad quantity)
    once = copy.deepcopy(pod)
    default_pod(pod)
    assert pod == once


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_specs, _specs)
def test_pod_validation_only_returns_causes(spec: dict[str, Any], other: dict[str, Any]) -> None:
    s = strategy_for(PODS)
    new, old = _pod(**spec), _pod(**other)
    for obj in (new, old):
        try:
            s.prepare_for_create(obj)
        except ApiError:
            pass
    for causes in (s.validate(new, None, PODS), s.validate(new, old, PODS), validate_pod_spec(spec)):
        assert all(isinstance(c, Cause) and c.message for c in causes)


def test_gated_pod_gets_the_scheduling_gated_condition() -> None:
    # docs "Pod Scheduling Readiness": a pod with schedulingGates shows PodScheduled=False,
    # reason SchedulingGated (pkg/registry/core/pod/strategy.go applySchedulingGatedCondition).
    pod = _pod(containers=[{"name": "a", "image": "x"}], schedulingGates=[{"name": "example.com/foo"}])
    _create(pod)
    assert pod["status"]["conditions"] == [{
        "type": "PodScheduled", "status": "False", "reason": "SchedulingGated",
        "message": "Scheduling is blocked due to non-empty scheduling gates", "lastProbeTime": None,
        "lastTransitionTime": "t"}]


def test_volume_sources_name_what_they_read() -> None:
    assert _valid({"containers": [{"name": "a", "image": "x"}],
                   "volumes": [{"name": "s", "secret": {"items": [{"key": "k"}]}}, {"name": "c", "configMap": {}}]}) \
        == ["spec.volumes[0].secret.secretName: Required value", "spec.volumes[0].secret.items[0].path: Required value",
            "spec.volumes[1].configMap.name: Required value"]


def test_host_network_node_selector_dns_and_probe_ports() -> None:
    # pkg/apis/core/validation: validateHostNetwork (a Pod's hostPort must equal containerPort, a
    # template may leave it 0), ValidateLabels on nodeSelector, dnsPolicy None needs dnsConfig,
    # ValidatePortNumOrName on probe handlers, standard or qualified resource names.
    spec = {"hostNetwork": True, "dnsPolicy": "None", "nodeSelector": {"disk": "ssd!"},
            "containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 80, "hostPort": 81}],
                            "readinessProbe": {"tcpSocket": {"port": "HTTP"}},
                            "resources": {"limits": {"gpu": "1"}}}]}
    default_pod_spec(spec)
    assert _texts(validate_pod_spec(spec, resource_is_pod=True)) == [
        ('spec.containers[0].readinessProbe.tcpSocket.port: Invalid value: "HTTP": must contain only alpha-numeric '
        "characters (a-z, 0-9), and hyphens (-)"),
        ('spec.containers[0].readinessProbe.tcpSocket.port: Invalid value: "HTTP": must contain at least one letter '
        "(a-z)"),
        ('spec.containers[0].resources.limits[gpu]: Invalid value: "gpu": must be a standard resource type or fully '
        "qualified"),
        "spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None",
        ("spec.containers[0].ports[0].hostPort: Invalid value: 81: must match `containerPort` when `hostNetwork` is "
        "true"),
        ('spec.nodeSelector: Invalid value: "ssd!": a valid label must be an empty string or consist of alphanumeric '
        "characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
        "'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"),
    ]
    template = {"hostNetwork": True, "containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 80}]}]}
    default_pod_spec(template)
    assert validate_pod_spec(template) == []


def test_scheduling_gates_may_only_be_removed() -> None:
    old = {"containers": [{"name": "a", "image": "x"}], "schedulingGates": [{"name": "a.io/x"}, {"name": "a.io/y"}]}
    fewer = {**old, "schedulingGates": [{"name": "a.io/x"}]}
    assert validate_pod_spec_update(fewer, old) == []
    more = {**old, "schedulingGates": [{"name": "a.io/z"}]}
    assert _texts(validate_pod_spec_update(more, old))[0] == (
        "spec.schedulingGates: Forbidden: only deletion is allowed, but found new scheduling gate 'a.io/z'")


def test_quantity_parsing_is_memoized_within_a_bound() -> None:
    """Each quantity string is parsed once and remembered (a pod write reads each several times),
    in caches of a fixed size: 10,000 distinct strings leave at most 4,096 entries each."""
    from kinds import _quantity

    for i in range(10_000):
        assert parse_quantity(f"{i}Mi") == i * 1024 * 1024
        assert canonical_quantity(f"{i}m") is not None
    for cached in (_quantity._split, _quantity._canonical):
        info = cached.cache_info()
        assert info.maxsize == 4096 and info.currsize <= 4096
    assert canonical_quantity("0.5") == "500m" and canonical_quantity("1024Mi") == "1Gi"


_spec_values = st.none() | st.integers(-2, 3) | st.text("ab", max_size=2)
_ctr = st.fixed_dictionaries({"name": st.sampled_from(["a", "b"])}, optional={
    "image": st.sampled_from(["x", "y"]), "args": st.lists(st.text("ab", max_size=1), max_size=2)})
_spec = st.fixed_dictionaries({}, optional={
    "containers": st.lists(_ctr, max_size=2), "initContainers": st.lists(_ctr | st.just("x"), max_size=2),
    "activeDeadlineSeconds": _spec_values, "terminationGracePeriodSeconds": _spec_values,
    "tolerations": st.lists(st.fixed_dictionaries({"key": st.sampled_from(["k", "l"])}), max_size=2),
    "schedulingGates": st.lists(st.fixed_dictionaries({"name": st.sampled_from(["g", "h"])}), max_size=2),
    "nodeName": _spec_values})


@settings(max_examples=300, deadline=None)
@given(old=_spec, new=_spec)
def test_the_spec_update_rule_never_changes_the_new_spec(old: dict[str, Any], new: dict[str, Any]) -> None:
    """The update rule sets the mutable fields back on copies of the parts it changes (not a deep
    copy of the spec): ``new`` and ``old`` are left as they were, and the causes are those of a
    private deep copy."""
    new_before, old_before = copy.deepcopy(new), copy.deepcopy(old)
    causes = validate_pod_spec_update(new, old)
    assert (new, old) == (new_before, old_before)
    assert causes == validate_pod_spec_update(copy.deepcopy(new), copy.deepcopy(old))
