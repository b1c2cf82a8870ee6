"""PodSpec and PodTemplateSpec: defaulting and validation shared by Pods and every workload
template (kube 1.33's ``SetDefaults_PodSpec``/``SetDefaults_Container``/``SetDefaults_Pod`` and
``ValidatePodSpec``/``ValidatePodUpdate``). Pure functions on plain JSON dicts.

Defaulting mutates in place and is idempotent. It also writes what kube's JSON encoder shows
for non-pointer structs (``resources: {}``, a template's ``metadata.creationTimestamp: null``),
so that ``kubectl get -o yaml`` shows what a real apiserver shows. Validation never raises: it
returns :class:`Cause` entries with kube's field paths and messages; whatever is the wrong JSON
type was refused by the typed decoder (schema validation) before these run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from ._errors import Cause
from ._quantity import QUANTITY_REGEX, canonical_quantity, parse_quantity
from ._validation import (
    field_duplicate,
    field_forbidden,
    field_invalid,
    field_not_found,
    field_required,
    field_unsupported,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_qualified_name,
    is_relaxed_env_var_name,
    is_valid_port_name,
    validate_labels,
    validate_object_meta,
)

__all__ = [
    "default_container",
    "default_pod",
    "default_pod_spec",
    "default_pod_template",
    "image_pull_policy_for",
    "pod_qos_class",
    "validate_pod_spec",
    "validate_pod_spec_update",
    "validate_pod_template",
    "validate_template_metadata",
]

DEFAULT_TERMINATION_GRACE_PERIOD_S = 30
DEFAULT_SCHEDULER_NAME = "default-scheduler"
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
_FILE_MODE_DEFAULT = 0o644  # 420: secret, configMap, downwardAPI and projected volumes
_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")

RESTART_POLICIES = ("Always", "OnFailure", "Never")
DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
PROTOCOLS = ("SCTP", "TCP", "UDP")
TERMINATION_MESSAGE_POLICIES = ("File", "FallbackToLogsOnError")
_VOLUME_SOURCES = (
    "hostPath", "emptyDir", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "secret", "nfs", "iscsi",
    "glusterfs", "persistentVolumeClaim", "rbd", "flexVolume", "cinder", "cephfs", "flocker", "downwardAPI", "fc",
    "azureFile", "configMap", "vsphereVolume", "quobyte", "azureDisk", "photonPersistentDisk", "projected",
    "portworxVolume", "scaleIO", "storageos", "csi", "ephemeral", "image",
)
_QOS_RESOURCES = ("cpu", "memory")
_STANDARD_CONTAINER_RESOURCES = ("cpu", "memory", "ephemeral-storage")
_INT32_MAX = 2**31 - 1

UPDATABLE_POD_FIELDS = (
    "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
    "`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
    "(allow it to be set to 1 if it was previously negative)"
)


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# ---- defaulting ----------------------------------------------------------------------------------


def image_pull_policy_for(image: Any) -> str:
    """``Always`` when the image names the ``latest`` tag or no tag (and no digest), else
    ``IfNotPresent`` (an unparsable reference counts as no tag, as kube ignores the error)."""
    if not isinstance(image, str) or not image or image != image.strip() or "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    repo = image.rsplit(":", 1)[0] if ":" in last else image
    if repo != repo.lower():
        return "IfNotPresent"  # not a valid reference: ParseImageName fails, the tag is ""
    tag = last.rsplit(":", 1)[1] if ":" in last else "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def _default_resource_list(value: Any, path: str) -> None:
    """Canonical quantities, rounded up to milli (``SetDefaults_ResourceList``). A value that is
    not a quantity is the decoder's error: ``ValueError`` with its words."""
    if not isinstance(value, dict):
        return
    for k, v in list(value.items()):
        canon = canonical_quantity(v)
        if canon is None:
            raise ValueError(f"quantities must match the regular expression '{QUANTITY_REGEX}'")
        value[k] = canon


def _default_http_get(action: Any) -> None:
    if isinstance(action, dict):
        action.setdefault("path", "/")
        action.setdefault("scheme", "HTTP")


def _default_probe(probe: Any) -> None:
    if not isinstance(probe, dict):
        return
    for k, v in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1), ("failureThreshold", 3)):
        if not probe.get(k):
            probe[k] = v
    _default_http_get(probe.get("httpGet"))
    if isinstance(probe.get("grpc"), dict):
        probe["grpc"].setdefault("service", "")


def default_container(c: dict[str, Any]) -> None:
    """``SetDefaults_Container`` and the declarative defaults below it (ports, probes, env)."""
    if not c.get("imagePullPolicy"):
        c["imagePullPolicy"] = image_pull_policy_for(c.get("image"))
    if not c.get("terminationMessagePath"):
        c["terminationMessagePath"] = TERMINATION_MESSAGE_PATH
    if not c.get("terminationMessagePolicy"):
        c["terminationMessagePolicy"] = "File"
    if c.get("resources") is None:
        c["resources"] = {}
    res = c["resources"]
    if isinstance(res, dict):
        for k in ("limits", "requests"):
            _default_resource_list(res.get(k), k)
    for p in _dicts(c.get("ports")):
        if not p.get("protocol"):
            p["protocol"] = "TCP"
    for probe in _PROBES:
        _default_probe(c.get(probe))
    lifecycle = c.get("lifecycle")
    if isinstance(lifecycle, dict):
        for hook in ("postStart", "preStop"):
            if isinstance(lifecycle.get(hook), dict):
                _default_http_get(lifecycle[hook].get("httpGet"))
    for e in _dicts(c.get("env")):
        vf = e.get("valueFrom")
        if isinstance(vf, dict) and isinstance(vf.get("fieldRef"), dict):
            vf["fieldRef"].setdefault("apiVersion", "v1")


def _default_volume(v: dict[str, Any]) -> None:
    if not any(v.get(s) is not None for s in _VOLUME_SOURCES):
        v["emptyDir"] = {}
    for src in ("secret", "configMap", "downwardAPI", "projected"):
        if isinstance(v.get(src), dict) and v[src].get("defaultMode") is None:
            v[src]["defaultMode"] = _FILE_MODE_DEFAULT
    if isinstance(v.get("hostPath"), dict) and v["hostPath"].get("type") is None:
        v["hostPath"]["type"] = ""
    projected = v.get("projected")
    if isinstance(projected, dict):
        for s in _dicts(projected.get("sources")):
            if isinstance(s.get("serviceAccountToken"), dict):
                s["serviceAccountToken"].setdefault("expirationSeconds", 3600)
            if isinstance(s.get("downwardAPI"), dict):
                for item in _dicts(s["downwardAPI"].get("items")):
                    if isinstance(item.get("fieldRef"), dict):
                        item["fieldRef"].setdefault("apiVersion", "v1")
    if isinstance(v.get("downwardAPI"), dict):
        for item in _dicts(v["downwardAPI"].get("items")):
            if isinstance(item.get("fieldRef"), dict):
                item["fieldRef"].setdefault("apiVersion", "v1")
    eph = v.get("ephemeral")
    if isinstance(eph, dict) and isinstance(eph.get("volumeClaimTemplate"), dict):
        spec = eph["volumeClaimTemplate"].get("spec")
        if isinstance(spec, dict) and spec.get("volumeMode") is None:
            spec["volumeMode"] = "Filesystem"


def default_pod_spec(spec: dict[str, Any]) -> None:
    """``SetDefaults_PodSpec`` (every PodSpec: Pods and templates alike) and its containers'
    and volumes' defaults."""
    if not spec.get("dnsPolicy"):
        spec["dnsPolicy"] = "ClusterFirst"
    if not spec.get("restartPolicy"):
        spec["restartPolicy"] = "Always"
    if spec.get("securityContext") is None:
        spec["securityContext"] = {}
    if spec.get("terminationGracePeriodSeconds") is None:
        spec["terminationGracePeriodSeconds"] = DEFAULT_TERMINATION_GRACE_PERIOD_S
    if not spec.get("schedulerName"):
        spec["schedulerName"] = DEFAULT_SCHEDULER_NAME
    for lst in _CONTAINER_LISTS:
        for c in _dicts(spec.get(lst)):
            default_container(c)
    for v in _dicts(spec.get("volumes")):
        _default_volume(v)
    if isinstance(spec.get("overhead"), dict):
        _default_resource_list(spec["overhead"], "overhead")


def default_pod_template(template: Any) -> None:
    """A ``PodTemplateSpec`` inside a workload: the spec's defaults, and the ``metadata`` the
    1.33 encoder always writes (``creationTimestamp: null``)."""
    if not isinstance(template, dict):
        return
    meta = template.get("metadata")
    if meta is None:
        meta = template["metadata"] = {}
    if isinstance(meta, dict):
        meta.setdefault("creationTimestamp", None)
    spec = template.get("spec")
    if spec is None:
        spec = template["spec"] = {}
    if isinstance(spec, dict):
        default_pod_spec(spec)


def default_pod(pod: dict[str, Any]) -> None:
    """``SetDefaults_Pod`` on top of the PodSpec defaults: requests default to limits, service
    links on, and with host networking every container port is also a host port."""
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        return
    default_pod_spec(spec)
    for lst in ("containers", "initContainers"):
        for c in _dicts(spec.get(lst)):
            res = c.get("resources")
            if isinstance(res, dict) and isinstance(res.get("limits"), dict):
                req = res.get("requests")
                if not isinstance(req, dict):
                    req = res["requests"] = {}
                for k, v in res["limits"].items():
                    req.setdefault(k, v)
    if spec.get("enableServiceLinks") is None:
        spec["enableServiceLinks"] = True
    if spec.get("hostNetwork") is True:
        for lst in ("containers", "initContainers"):
            for c in _dicts(spec.get(lst)):
                for p in _dicts(c.get("ports")):
                    if not p.get("hostPort"):
                        p["hostPort"] = p.get("containerPort")


def pod_qos_class(pod: Mapping[str, Any]) -> str:
    """``qos.GetPodQOS``: Guaranteed when every container sets cpu and memory limits and the
    summed requests equal the summed limits, BestEffort when nothing sets either, else Burstable."""
    spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    requests: dict[str, Fraction] = {}
    limits: dict[str, Fraction] = {}
    guaranteed = True
    for c in _dicts(spec.get("containers")) + _dicts(spec.get("initContainers")):
        res = c.get("resources") if isinstance(c.get("resources"), dict) else {}
        assert isinstance(res, dict)
        for src, acc in (("requests", requests), ("limits", limits)):
            lst = res.get(src) if isinstance(res.get(src), dict) else {}
            assert isinstance(lst, dict)
            for name in _QOS_RESOURCES:
                q = parse_quantity(lst.get(name)) if name in lst else None
                if q:
                    acc[name] = acc.get(name, Fraction(0)) + q
        lim = res.get("limits") if isinstance(res.get("limits"), dict) else {}
        assert isinstance(lim, dict)
        if not all(parse_quantity(lim.get(n)) for n in _QOS_RESOURCES if n in lim) or \
                any(n not in lim for n in _QOS_RESOURCES):
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and set(requests) == set(limits) and all(requests[k] == limits[k] for k in requests):
        return "Guaranteed"
    return "Burstable"


# ---- validation ----------------------------------------------------------------------------------


def _label_errors(path: str, value: Any, checker: Any) -> list[Cause]:
    if not isinstance(value, str):
        return []  # the wrong JSON type is the typed decoder's 400, not a validation cause
    return [field_invalid(path, value, m) for m in checker(value)]


def validate_template_metadata(meta: Any, path: str) -> list[Cause]:
    """A template's metadata: labels and annotations as any object's, no name or namespace."""
    if not isinstance(meta, dict):
        return []
    probe = {"name": "x", "labels": meta.get("labels"), "annotations": meta.get("annotations")}
    return validate_object_meta(probe, namespaced=False, field=path)


def _validate_volumes(spec: Mapping[str, Any], path: str) -> tuple[list[Cause], set[str]]:
    causes: list[Cause] = []
    names: set[str] = set()
    for i, v in enumerate(spec.get("volumes") or []):
        vp = f"{path}.volumes[{i}]"
        if not isinstance(v, dict):
            continue
        name = v.get("name")
        if not name:
            causes.append(field_required(f"{vp}.name"))
        elif isinstance(name, str):
            causes += _label_errors(f"{vp}.name", name, is_dns1123_label)
            if name in names:
                causes.append(field_duplicate(f"{vp}.name", name))
            names.add(name)
        sources = [s for s in _VOLUME_SOURCES if v.get(s) is not None]
        if not sources:
            causes.append(field_required(vp, "must specify a volume type"))
        for extra in sources[1:]:
            causes.append(field_forbidden(f"{vp}.{extra}", "may not specify more than 1 volume type"))
        pvc = v.get("persistentVolumeClaim")
        if isinstance(pvc, dict) and not pvc.get("claimName"):
            causes.append(field_required(f"{vp}.persistentVolumeClaim.claimName"))
        for src, key in (("hostPath", "path"), ("secret", "secretName"), ("configMap", "name"),
                         ("nfs", "server"), ("nfs", "path"), ("csi", "driver")):
            if isinstance(v.get(src), dict) and not v[src].get(key):
                causes.append(field_required(f"{vp}.{src}.{key}"))
        for src in ("configMap", "secret"):
            for j, item in enumerate((v.get(src) or {}).get("items") or [] if isinstance(v.get(src), dict) else []):
                if isinstance(item, dict):
                    if not item.get("key"):
                        causes.append(field_required(f"{vp}.{src}.items[{j}].key"))
                    if not item.get("path"):
                        causes.append(field_required(f"{vp}.{src}.items[{j}].path"))
    return causes, names


def _validate_ports(c: Mapping[str, Any], path: str) -> list[Cause]:
    causes: list[Cause] = []
    names: set[str] = set()
    for i, p in enumerate(c.get("ports") or []):
        pp = f"{path}.ports[{i}]"
        if not isinstance(p, dict):
            continue
        name = p.get("name")
        if isinstance(name, str) and name:
            causes += _label_errors(f"{pp}.name", name, is_valid_port_name)
            if name in names:
                causes.append(field_duplicate(f"{pp}.name", name))
            names.add(name)
        cp = _int(p.get("containerPort"))
        if not cp:
            causes.append(field_required(f"{pp}.containerPort"))
        elif not 1 <= cp <= 65535:
            causes.append(field_invalid(f"{pp}.containerPort", cp, "must be between 1 and 65535, inclusive"))
        hp = _int(p.get("hostPort"))
        if hp and not 1 <= hp <= 65535:
            causes.append(field_invalid(f"{pp}.hostPort", hp, "must be between 1 and 65535, inclusive"))
        proto = p.get("protocol")
        if not proto:
            causes.append(field_required(f"{pp}.protocol"))
        elif proto not in PROTOCOLS:
            causes.append(field_unsupported(f"{pp}.protocol", proto, PROTOCOLS))
    return causes


def _validate_env(c: Mapping[str, Any], path: str) -> list[Cause]:
    causes: list[Cause] = []
    for i, e in enumerate(c.get("env") or []):
        ep = f"{path}.env[{i}]"
        if not isinstance(e, dict):
            continue
        name = e.get("name")
        if not name:
            causes.append(field_required(f"{ep}.name"))
        elif isinstance(name, str):
            causes += _label_errors(f"{ep}.name", name, is_relaxed_env_var_name)
        vf = e.get("valueFrom")
        if vf is not None and e.get("value"):
            causes.append(field_invalid(f"{ep}.valueFrom", "", "may not be specified when `value` is not empty"))
        if isinstance(vf, dict):
            refs = [k for k in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef", "fileKeyRef")
                    if vf.get(k) is not None]
            if not refs:
                causes.append(field_invalid(f"{ep}.valueFrom", "",
                                            "must specify one of: `fieldRef`, `resourceFieldRef`, "
                                            "`configMapKeyRef` or `secretKeyRef`"))
            elif len(refs) > 1:
                causes.append(field_invalid(f"{ep}.valueFrom", "", "may not have more than one field specified "
                                                                    "at a time"))
    return causes


def _validate_volume_mounts(c: Mapping[str, Any], path: str, volumes: set[str]) -> list[Cause]:
    causes: list[Cause] = []
    paths: set[str] = set()
    for i, m in enumerate(c.get("volumeMounts") or []):
        mp = f"{path}.volumeMounts[{i}]"
        if not isinstance(m, dict):
            continue
        name = m.get("name")
        if not name:
            causes.append(field_required(f"{mp}.name"))
        elif name not in volumes:
            causes.append(field_not_found(f"{mp}.name", name))
        mount_path = m.get("mountPath")
        if not mount_path:
            causes.append(field_required(f"{mp}.mountPath"))
        elif mount_path in paths:
            causes.append(field_invalid(f"{mp}.mountPath", mount_path, "must be unique"))
        if isinstance(mount_path, str):
            paths.add(mount_path)
    return causes


def _validate_resources(c: Mapping[str, Any], path: str) -> list[Cause]:
    res = c.get("resources")
    if not isinstance(res, dict):
        return []
    causes: list[Cause] = []
    values: dict[str, dict[str, Fraction]] = {"limits": {}, "requests": {}}
    for kind in ("limits", "requests"):
        lst = res.get(kind)
        if not isinstance(lst, dict):
            continue
        for name, q in lst.items():
            rp = f"{path}.resources.{kind}[{name}]"
            causes += [field_invalid(rp, name, m) for m in is_qualified_name(str(name))]
            if "/" not in str(name) and name not in _STANDARD_CONTAINER_RESOURCES and \
                    not str(name).startswith("hugepages-"):
                causes.append(field_invalid(rp, name, "must be a standard resource type or fully qualified"))
            value = parse_quantity(q)
            if value is None:
                continue
            if value < 0:
                causes.append(field_invalid(rp, str(q), "must be greater than or equal to 0"))
            values[kind][str(name)] = value
    for name, req in values["requests"].items():
        lim = values["limits"].get(name)
        if lim is not None and req > lim:
            causes.append(field_invalid(f"{path}.resources.requests", str(res["requests"][name]),
                                        f"must be less than or equal to {name} limit of {res['limits'][name]}"))
    return causes


def _validate_probe(probe: Any, path: str, *, liveness_like: bool) -> list[Cause]:
    if not isinstance(probe, dict):
        return []
    causes: list[Cause] = []
    handlers = [h for h in ("exec", "httpGet", "tcpSocket", "grpc") if probe.get(h) is not None]
    if not handlers:
        causes.append(field_required(path, "must specify a handler type"))
    for extra in handlers[1:]:
        causes.append(field_forbidden(f"{path}.{extra}", "may not specify more than 1 handler type"))
    for k in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"):
        v = _int(probe.get(k))
        if v is not None and v < 0:
            causes.append(field_invalid(f"{path}.{k}", v, "must be greater than or equal to 0"))
    st = _int(probe.get("successThreshold"))
    if liveness_like and st is not None and st != 1:
        causes.append(field_invalid(f"{path}.successThreshold", st, "must be 1"))
    for handler in ("httpGet", "tcpSocket"):
        action = probe.get(handler)
        if isinstance(action, dict):
            causes += _validate_port_num_or_name(action.get("port"), f"{path}.{handler}.port")
    return causes


def _validate_port_num_or_name(port: Any, path: str) -> list[Cause]:
    """``ValidatePortNumOrName``: a number in 1-65535 or an IANA service name."""
    if isinstance(port, int) and not isinstance(port, bool):
        return [] if 1 <= port <= 65535 else [field_invalid(path, port, "must be between 1 and 65535, inclusive")]
    if isinstance(port, str):
        return [field_invalid(path, port, m) for m in is_valid_port_name(port)]
    return [field_invalid(path, 0, "must be between 1 and 65535, inclusive")] if port is None else []


def _validate_container(c: Mapping[str, Any], path: str, volumes: set[str], *, init: bool) -> list[Cause]:
    causes: list[Cause] = []
    image = c.get("image")
    if not image:
        causes.append(field_required(f"{path}.image"))
    elif isinstance(image, str) and image != image.strip():
        causes.append(field_invalid(f"{path}.image", image, "must not have leading or trailing whitespace"))
    policy = c.get("imagePullPolicy")
    if not policy:
        causes.append(field_required(f"{path}.imagePullPolicy"))
    elif policy not in PULL_POLICIES:
        causes.append(field_unsupported(f"{path}.imagePullPolicy", policy, PULL_POLICIES))
    tmp = c.get("terminationMessagePolicy")
    if not tmp:
        causes.append(field_required(f"{path}.terminationMessagePolicy"))
    elif tmp not in TERMINATION_MESSAGE_POLICIES:
        causes.append(field_unsupported(f"{path}.terminationMessagePolicy", tmp, TERMINATION_MESSAGE_POLICIES))
    restart = c.get("restartPolicy")
    sidecar = init and restart == "Always"
    if restart is not None:
        if not init:
            causes.append(field_forbidden(f"{path}.restartPolicy", "may not be set for non-init containers"))
        elif restart != "Always":
            causes.append(field_unsupported(f"{path}.restartPolicy", restart, ("Always",)))
    for probe in _PROBES:
        if c.get(probe) is None:
            continue
        if init and not sidecar:
            causes.append(field_forbidden(f"{path}.{probe}",
                                          "may not be set for init containers without restartPolicy=Always"))
        else:
            causes += _validate_probe(c.get(probe), f"{path}.{probe}", liveness_like=probe != "readinessProbe")
    causes += _validate_ports(c, path)
    causes += _validate_env(c, path)
    causes += _validate_volume_mounts(c, path, volumes)
    causes += _validate_resources(c, path)
    return causes


def validate_pod_spec(spec: Any, path: str = "spec", *, resource_is_pod: bool = False) -> list[Cause]:
    """``ValidatePodSpec``: volumes, containers (names unique DNS-1123 labels across containers
    and init containers, images, ports, env, mounts, resources, probes), the policy enums and the
    name-like fields. An empty list means valid."""
    if not isinstance(spec, dict):
        return [field_required(path)]
    causes, volumes = _validate_volumes(spec, path)
    names: set[str] = set()
    containers = spec.get("containers")
    if not containers:
        causes.append(field_required(f"{path}.containers"))
    for lst in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(lst) or []):
            cp = f"{path}.{lst}[{i}]"
            if not isinstance(c, dict):
                continue
            name = c.get("name")
            if not name:
                causes.append(field_required(f"{cp}.name"))
            elif isinstance(name, str):
                causes += _label_errors(f"{cp}.name", name, is_dns1123_label)
                if name in names:
                    causes.append(field_duplicate(f"{cp}.name", name))
                names.add(name)
            causes += _validate_container(c, cp, volumes, init=lst == "initContainers")
    rp = spec.get("restartPolicy")
    if not rp:
        causes.append(field_required(f"{path}.restartPolicy"))
    elif rp not in RESTART_POLICIES:
        causes.append(field_unsupported(f"{path}.restartPolicy", rp, RESTART_POLICIES))
    dp = spec.get("dnsPolicy")
    if not dp:
        causes.append(field_required(f"{path}.dnsPolicy"))
    elif dp not in DNS_POLICIES:
        causes.append(field_unsupported(f"{path}.dnsPolicy", dp, DNS_POLICIES))
    if dp == "None" and spec.get("dnsConfig") is None:
        causes.append(field_required(f"{path}.dnsConfig", "must provide `dnsConfig` when `dnsPolicy` is None"))
    if spec.get("hostNetwork") is True:
        for lst in ("initContainers", "containers"):
            for i, c in enumerate(_dicts(spec.get(lst))):
                for j, p in enumerate(_dicts(c.get("ports"))):
                    # A template may leave hostPort 0: the Pod's defaulting fills it in.
                    hp = p.get("hostPort") or 0
                    if (resource_is_pod or hp != 0) and hp != p.get("containerPort"):
                        causes.append(field_invalid(f"{path}.{lst}[{i}].ports[{j}].hostPort", hp,
                                                    "must match `containerPort` when `hostNetwork` is true"))
    if isinstance(spec.get("nodeSelector"), dict):
        causes += validate_labels(spec["nodeSelector"], f"{path}.nodeSelector")
    ads = _int(spec.get("activeDeadlineSeconds"))
    if ads is not None and not 1 <= ads <= _INT32_MAX:
        causes.append(field_invalid(f"{path}.activeDeadlineSeconds", ads,
                                    f"must be between 1 and {_INT32_MAX}, inclusive"))
    for f, check in (("serviceAccountName", is_dns1123_subdomain), ("nodeName", is_dns1123_subdomain),
                     ("hostname", is_dns1123_label), ("subdomain", is_dns1123_label),
                     ("priorityClassName", is_dns1123_subdomain)):
        v = spec.get(f)
        if isinstance(v, str) and v:
            causes += _label_errors(f"{path}.{f}", v, check)
    for i, t in enumerate(spec.get("tolerations") or []):
        if not isinstance(t, dict):
            continue
        tp = f"{path}.tolerations[{i}]"
        op = t.get("operator") or "Equal"
        if op not in ("Equal", "Exists"):
            causes.append(field_unsupported(f"{tp}.operator", op, ("Equal", "Exists")))
        elif op == "Exists" and t.get("value"):
            causes.append(field_invalid(f"{tp}.operator", t.get("value"),
                                        "value must be empty when `operator` is 'Exists'"))
        if not t.get("key") and op != "Exists":
            causes.append(field_invalid(f"{tp}.operator", op,
                                        "operator must be Exists when `key` is empty, which means \"match all "
                                        "values and all keys\""))
        if t.get("key"):
            causes += _label_errors(f"{tp}.key", t["key"], is_qualified_name)
        effect = t.get("effect")
        if effect and effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            causes.append(field_unsupported(f"{tp}.effect", effect, ("NoSchedule", "PreferNoSchedule",
                                                                       "NoExecute")))
    return causes


def validate_pod_template(template: Any, path: str = "spec.template") -> list[Cause]:
    """``ValidatePodTemplateSpec``: the template's metadata and its PodSpec."""
    if not isinstance(template, dict):
        return [field_required(path)]
    return validate_template_metadata(template.get("metadata"), f"{path}.metadata") + \
        validate_pod_spec(template.get("spec"), f"{path}.spec")


def _spec_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    lines: list[str] = []
    for k in sorted(set(old) | set(new)):
        if old.get(k) != new.get(k):
            if k in old:
                lines.append(f"-  {k}: {json.dumps(old[k], sort_keys=True)}")
            if k in new:
                lines.append(f"+  {k}: {json.dumps(new[k], sort_keys=True)}")
    return "\n".join(lines)


def validate_pod_spec_update(new: Any, old: Any, path: str = "spec") -> list[Cause]:
    """``ValidatePodUpdate``'s spec rule: a pod's spec is immutable but for container images,
    ``activeDeadlineSeconds`` (set, or lowered), added tolerations and a negative grace period
    becoming 1."""
    if not isinstance(new, dict) or not isinstance(old, dict):
        return []
    causes: list[Cause] = []
    ads_new, ads_old = _int(new.get("activeDeadlineSeconds")), _int(old.get("activeDeadlineSeconds"))
    if ads_old is not None:
        if ads_new is None:
            causes.append(field_invalid(f"{path}.activeDeadlineSeconds", None,
                                        "must not update from a positive integer to nil value"))
        elif ads_new > ads_old:
            causes.append(field_invalid(f"{path}.activeDeadlineSeconds", ads_new,
                                        "must be less than or equal to previous value"))
    old_tol = [t for t in old.get("tolerations") or []]
    new_tol = [t for t in new.get("tolerations") or []]
    if any(t not in new_tol for t in old_tol):
        causes.append(field_forbidden(f"{path}.tolerations",
                                      "existing toleration can not be modified except its tolerationSeconds"))
    # What may change, set back to the old values: on a copy of what is set back (the containers'
    # dicts, the spec's top level), never on ``new``; the rest is shared and only compared.
    munged = dict(new)
    for lst in ("containers", "initContainers"):
        olds, news = old.get(lst), munged.get(lst)
        if isinstance(olds, list) and isinstance(news, list) and len(olds) == len(news):
            news = munged[lst] = list(news)
            for i, (o, n) in enumerate(zip(olds, news)):
                if isinstance(o, dict) and isinstance(n, dict):
                    n = news[i] = dict(n)
                    if "image" in o:
                        n["image"] = o["image"]
                    else:
                        n.pop("image", None)
    old_gates = [g for g in old.get("schedulingGates") or []]
    new_gates = [g for g in new.get("schedulingGates") or []]
    added = [g for g in new_gates if g not in old_gates]
    for g in added:
        name = g.get("name") if isinstance(g, dict) else g
        causes.append(field_forbidden(f"{path}.schedulingGates",
                                      f"only deletion is allowed, but found new scheduling gate '{name}'"))
    for f in ("activeDeadlineSeconds", "tolerations") + (() if added else ("schedulingGates",)):
        if f in old:
            munged[f] = old[f]
        else:
            munged.pop(f, None)
    og = _int(old.get("terminationGracePeriodSeconds"))
    if og is not None and og < 0 and munged.get("terminationGracePeriodSeconds") == 1:
        munged["terminationGracePeriodSeconds"] = og
    if munged != old:
        causes.append(field_forbidden(path, f"pod updates may not change fields other than {UPDATABLE_POD_FIELDS}\n"
                                            + _spec_diff(old, munged)))
    return causes
