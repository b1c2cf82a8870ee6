"""Pod Security Standards checks (kinds/_podsecurity.py): kube's wording, order, versions and label
parsing, with cases from pod-security-admission v0.33's own check tests."""

from __future__ import annotations

from typing import Any

import pytest

from actors._admission_podsecurity import significant_pod_update
from kinds._podsecurity import (
    MAX_VERSION,
    LevelVersion,
    Policy,
    evaluate,
    forbidden_detail,
    forbidden_reason,
    policy_to_evaluate,
)

BASELINE, RESTRICTED = LevelVersion("baseline"), LevelVersion("restricted")


def c(name: str, **sc: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "image": "x"}
    if sc:
        out["securityContext"] = sc
    return out


def detail(lv: LevelVersion, spec: dict[str, Any], meta: dict[str, Any] | None = None) -> str:
    return forbidden_detail(evaluate(lv, meta, spec))


def test_latest_is_the_newest_check_version() -> None:
    assert MAX_VERSION == (1, 32)


@pytest.mark.parametrize(("spec", "want"), [
    ({"containers": [c("a"), c("b", capabilities={"add": ["FOO", "BAR", "CHOWN"]}),
                     c("c", capabilities={"add": ["BAZ"]})]},
     ('non-default capabilities (containers "b", "c" must not include "BAR", "BAZ", "FOO" in '
     'securityContext.capabilities.add)')),
    ({"containers": [{"name": "a", "ports": [{"containerPort": 1}]},
                     {"name": "b", "ports": [{"hostPort": 20}, {"hostPort": 10}]},
                     {"name": "c", "ports": [{"hostPort": 30}]}]},
     'hostPort (containers "b", "c" use hostPorts 10, 20, 30)'),
    ({"securityContext": {"windowsOptions": {"hostProcess": True}},
      "containers": [c("d"), c("e", windowsOptions={"hostProcess": True})],
      "initContainers": [c("f", windowsOptions={"hostProcess": True})]},
     'hostProcess (pod and containers "f", "e" must not set securityContext.windowsOptions.hostProcess=true)'),
    ({"securityContext": {"seLinuxOptions": {"type": "foo", "user": "u", "role": "r"}},
      "containers": [c("e", seLinuxOptions={"type": "bar"})]},
     ('seLinuxOptions (pod and container "e" set forbidden securityContext.seLinuxOptions: types "bar", "foo"; '
     'user may not be set; role may not be set)')),
    ({"securityContext": {"sysctls": [{"name": "a"}, {"name": "b"}, {"name": "net.ipv4.tcp_rmem"}]},
      "containers": [c("a")]}, "forbidden sysctls (a, b)"),
    ({"securityContext": {"appArmorProfile": {"type": "Unconfined"}}, "containers": [c("a")]},
     'forbidden AppArmor profile (pod must not set AppArmor profile type to "Unconfined")'),
    ({"containers": [c("a", procMount="Unmasked"), c("b", procMount="Default")]},
     'procMount (container "a" must not set securityContext.procMount to "Unmasked")'),
])
def test_baseline_details(spec: dict[str, Any], want: str) -> None:
    assert detail(BASELINE, spec) == want


def test_apparmor_annotations_and_seccomp_annotations_by_version() -> None:
    meta = {"annotations": {"container.apparmor.security.beta.kubernetes.io/b": "unconfined",
                            "container.apparmor.security.beta.kubernetes.io/a": "localhost/mine",
                            "seccomp.security.alpha.kubernetes.io/pod": "unconfined"}}
    spec = {"containers": [c("a"), c("b")]}
    assert detail(BASELINE, spec, meta) == (
        'forbidden AppArmor profile (annotation must not set AppArmor profile type to '
        '"container.apparmor.security.beta.kubernetes.io/b="unconfined"")')
    # Before v1.19 the seccomp annotations were checked; from v1.19 the field is.
    assert detail(LevelVersion("baseline", (1, 18)), spec, meta).endswith(
        'seccompProfile (forbidden annotation seccomp.security.alpha.kubernetes.io/pod="unconfined")')


def test_restricted_order_overrides_and_versions() -> None:
    spec = {"hostNetwork": True, "volumes": [{"name": "h", "hostPath": {"path": "/"}}, {"name": "e", "emptyDir": {}}],
            "containers": [c("a", privileged=True, capabilities={"add": ["NET_BIND_SERVICE", "SYS_TIME"]})]}
    found = evaluate(RESTRICTED, {}, spec)
    # Baseline checks by ID first, then restricted ones; hostPathVolumes and capabilities_baseline
    # are replaced by restrictedVolumes and capabilities_restricted.
    assert forbidden_reason(found) == ("host namespaces, privileged, allowPrivilegeEscalation != false, "
                                       "unrestricted capabilities, restricted volume types, runAsNonRoot != true, "
                                       "seccompProfile")
    assert dict(found)["unrestricted capabilities"] == (
        'container "a" must set securityContext.capabilities.drop=["ALL"]; container "a" must not include '
        '"SYS_TIME" in securityContext.capabilities.add')
    assert dict(found)["restricted volume types"] == 'volume "h" uses restricted volume type "hostPath"'
    # v1.21 has no capabilities_restricted: the baseline check stays; runAsUser starts at v1.23.
    old = forbidden_reason(evaluate(LevelVersion("restricted", (1, 21)), {}, spec))
    assert "non-default capabilities" in old and "unrestricted capabilities" not in old
    root = {"securityContext": {"runAsUser": 0}, "containers": [c("a")]}
    assert "runAsUser=0" in forbidden_reason(evaluate(RESTRICTED, {}, root))
    assert "runAsUser=0" not in forbidden_reason(evaluate(LevelVersion("restricted", (1, 22)), {}, root))
    # Windows pods skip the v1.25 restricted checks.
    win = {"os": {"name": "windows"}, "securityContext": {"runAsNonRoot": True}, "containers": [c("a")]}
    assert evaluate(RESTRICTED, {}, win) == []
    assert "allowPrivilegeEscalation != false" in forbidden_reason(evaluate(LevelVersion("restricted", (1, 24)),
                                                                            {}, win))
    # A version newer than kube's checks is evaluated as the newest.
    assert evaluate(LevelVersion("restricted", (1, 40)), {}, spec) == found


def test_restricted_volume_types_as_kube_lists_them() -> None:
    kinds = ["hostPath", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "nfs", "iscsi", "glusterfs", "rbd",
             "flexVolume", "cinder", "cephfs", "flocker", "fc", "azureFile", "vsphereVolume", "quobyte", "azureDisk",
             "photonPersistentDisk", "portworxVolume", "scaleIO", "storageos"]
    allowed = ["emptyDir", "secret", "persistentVolumeClaim", "downwardAPI", "configMap", "projected", "csi",
               "ephemeral", "image"]
    vols = [{"name": f"a{i}", k: {}} for i, k in enumerate(allowed, 1)]
    vols += [{"name": f"b{i}", k: {}} for i, k in enumerate(kinds, 1)] + [{"name": "c1"}]
    got = dict(evaluate(RESTRICTED, {}, {"volumes": vols, "containers": []}))["restricted volume types"]
    assert got == (
        'volumes "b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "b9", "b10", "b11", "b12", "b13", "b14", "b15", '
        '"b16", "b17", "b18", "b19", "b20", "b21", "c1" use restricted volume types "awsElasticBlockStore", '
        '"azureDisk", "azureFile", "cephfs", "cinder", "fc", "flexVolume", "flocker", "gcePersistentDisk", "gitRepo", '
        '"glusterfs", "hostPath", "iscsi", "nfs", "photonPersistentDisk", "portworxVolume", "quobyte", "rbd", '
        '"scaleIO", "storageos", "unknown", "vsphereVolume"')


@pytest.mark.parametrize(("spec", "want"), [
    ({"containers": [c("a")]}, 'pod or container "a" must set securityContext.runAsNonRoot=true'),
    ({"securityContext": {"runAsNonRoot": False}, "containers": [c("a")]},
     "pod must not set securityContext.runAsNonRoot=false"),
    ({"securityContext": {"runAsNonRoot": True},
      "containers": [c("a"), c("c", runAsNonRoot=False), c("d", runAsNonRoot=False)]},
     'containers "c", "d" must not set securityContext.runAsNonRoot=false'),
])
def test_run_as_non_root(spec: dict[str, Any], want: str) -> None:
    assert dict(evaluate(RESTRICTED, {}, spec))["runAsNonRoot != true"] == want


def test_sysctls_by_version() -> None:
    spec = {"securityContext": {"sysctls": [{"name": "net.ipv4.ip_local_reserved_ports"},
                                            {"name": "net.ipv4.tcp_keepalive_time"}]}, "containers": []}
    assert detail(LevelVersion("baseline", (1, 26)), spec) == (
        "forbidden sysctls (net.ipv4.ip_local_reserved_ports, net.ipv4.tcp_keepalive_time)")
    assert detail(LevelVersion("baseline", (1, 27)), spec) == "forbidden sysctls (net.ipv4.tcp_keepalive_time)"
    assert detail(BASELINE, spec) == ""


def test_policy_from_labels() -> None:
    p = "pod-security.kubernetes.io/"
    assert policy_to_evaluate({}) == (Policy(), [])
    policy, errors = policy_to_evaluate({p + "enforce": "baseline", p + "enforce-version": "v1.25"})
    assert errors == [] and str(policy.enforce) == "baseline:v1.25"
    assert str(policy.warn) == "baseline:v1.25"  # warn follows enforce when unset
    policy, _ = policy_to_evaluate({p + "enforce": "baseline", p + "warn": "privileged"})
    assert str(policy.warn) == "privileged:latest"
    policy, errors = policy_to_evaluate({p + "enforce": "nope", p + "audit": "nope", p + "warn-version": "1.2"})
    assert str(policy.enforce) == "restricted:latest"  # fails closed
    assert str(policy.audit) == "privileged:latest" and str(policy.warn) == "privileged:latest"  # fail open
    assert errors == [(p + "enforce", "nope", "must be one of privileged, baseline, restricted"),
                      (p + "audit", "nope", "must be one of privileged, baseline, restricted"),
                      (p + "warn-version", "1.2", 'must be "latest" or "v1.x"')]
    assert policy_to_evaluate({p + "enforce-version": "v1.05"})[1][0][2] == 'must be "latest" or "v1.x"'


def test_significant_pod_updates() -> None:
    pod = {"metadata": {"labels": {}}, "spec": {"containers": [c("a")], "initContainers": [c("i")]}}
    same = {"metadata": {"labels": {"x": "y"}}, "spec": {"containers": [c("a")], "initContainers": [c("i")],
                                                         "activeDeadlineSeconds": 5}, "status": {"phase": "Running"}}
    assert not significant_pod_update(same, pod)
    image = {"spec": {"containers": [{**c("a"), "image": "y"}], "initContainers": [c("i")]}}
    assert significant_pod_update(image, pod)
    eph = {"spec": {**pod["spec"], "ephemeralContainers": [c("dbg")]}}
    assert significant_pod_update(eph, pod) and not significant_pod_update(eph, eph)
