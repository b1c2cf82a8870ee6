"""Cells of kube's printers for the kinds of the named API groups (apps, batch, autoscaling,
networking, policy, scheduling, storage, discovery, node, certificates, coordination, rbac,
apiregistration). Pure, as ``_cells``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from ._cells import (
    _age,
    _bool_ptr,
    _condition_true,
    _containers,
    _d,
    _deleting,
    _i,
    _int_or_string,
    _l,
    _len,
    _load_balancer,
    _name,
    _s,
    _template,
)
from ._printing import (
    aware,
    format_label_selector,
    format_labels,
    human_duration,
    label_selector_string,
    parse_time,
    rfc3339_seconds,
    translate_timestamp_since,
)

# --- apps/v1 ---------------------------------------------------------------------------------------


def deployment(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec, status = _d(obj, "spec"), _d(obj, "status")
    names, images = _containers(_template(obj))
    try:
        selector = label_selector_string(spec.get("selector"))
    except ValueError:
        selector = "<invalid>"
    return [_name(obj), f"{_i(status, 'readyReplicas')}/{_i(spec, 'replicas')}", _i(status, "updatedReplicas"),
            _i(status, "availableReplicas"), _age(obj, now), names, images, selector]


def replica_set(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec, status = _d(obj, "spec"), _d(obj, "status")
    names, images = _containers(_template(obj))
    return [_name(obj), _i(spec, "replicas"), _i(status, "replicas"), _i(status, "readyReplicas"), _age(obj, now),
            names, images, format_label_selector(spec.get("selector"))]


def stateful_set(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    names, images = _containers(_template(obj))
    return [_name(obj), f"{_i(_d(obj, 'status'), 'readyReplicas')}/{_i(_d(obj, 'spec'), 'replicas')}",
            _age(obj, now), names, images]


def daemon_set(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec, status = _d(obj, "spec"), _d(obj, "status")
    names, images = _containers(_template(obj))
    return [_name(obj), _i(status, "desiredNumberScheduled"), _i(status, "currentNumberScheduled"),
            _i(status, "numberReady"), _i(status, "updatedNumberScheduled"), _i(status, "numberAvailable"),
            format_labels(_d(_template(obj), "spec").get("nodeSelector")), _age(obj, now), names, images,
            format_label_selector(spec.get("selector"))]


def controller_revision(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    controller = "<none>"
    for ref in _l(_d(obj, "metadata"), "ownerReferences"):
        if isinstance(ref, dict) and ref.get("controller") is True:
            group = _s(ref, "apiVersion").rpartition("/")[0] if "/" in _s(ref, "apiVersion") else ""
            kind = _s(ref, "kind")
            group_kind = f"{kind}.{group}" if group else kind
            controller = f"{group_kind.lower()}/{_s(ref, 'name')}" if kind else _s(ref, "name")
            break
    return [_name(obj), controller, _i(obj, "revision"), _age(obj, now)]


# --- batch/v1 ---------------------------------------------------------------------------------------


def job(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec, status = _d(obj, "spec"), _d(obj, "status")
    succeeded = _i(status, "succeeded")
    if isinstance(spec.get("completions"), int):
        completions = f"{succeeded}/{spec['completions']}"
    elif _i(spec, "parallelism") > 1:
        completions = f"{succeeded}/1 of {_i(spec, 'parallelism')}"
    else:
        completions = f"{succeeded}/1"
    start, end = parse_time(status.get("startTime")), parse_time(status.get("completionTime"))
    duration = ""
    if start is not None:
        duration = human_duration((end if end is not None else aware(now)) - start)
    conditions = _l(status, "conditions")
    if _condition_true(conditions, "Complete"):
        state = "Complete"
    elif _condition_true(conditions, "Failed"):
        state = "Failed"
    elif _deleting(obj):
        state = "Terminating"
    elif _condition_true(conditions, "Suspended"):
        state = "Suspended"
    elif _condition_true(conditions, "FailureTarget"):
        state = "FailureTarget"
    else:
        state = "Running"
    names, images = _containers(_template(obj))
    return [_name(obj), state, completions, duration, _age(obj, now), names, images,
            format_label_selector(spec.get("selector"))]


def cron_job(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec, status = _d(obj, "spec"), _d(obj, "status")
    job_spec = _d(_d(spec, "jobTemplate"), "spec")
    last = "<none>"
    if status.get("lastScheduleTime") is not None:
        last = translate_timestamp_since(status.get("lastScheduleTime"), now)
    names, images = _containers(_d(job_spec, "template"))
    return [_name(obj), _s(spec, "schedule"), _s(spec, "timeZone") or "<none>", _bool_ptr(spec.get("suspend")),
            _len(status.get("active")), last, _age(obj, now), names, images,
            format_label_selector(job_spec.get("selector"))]


# --- other groups ---------------------------------------------------------------------------------


def _metric(spec: Mapping[str, Any], status: Mapping[str, Any] | None) -> str:
    kind = _s(spec, "type")
    key = {"External": "external", "Pods": "pods", "Object": "object", "Resource": "resource",
           "ContainerResource": "containerResource"}.get(kind)
    if key is None:
        return "<unknown type>"
    src, cur_src = _d(spec, key), _d(status, key) if status is not None else {}
    target, current = _d(src, "target"), _d(cur_src, "current")
    has_status = status is not None and bool(cur_src)
    if kind == "Pods":
        return f"{_s(current, 'averageValue') if has_status else '<unknown>'}/{_s(target, 'averageValue')}"
    if kind in ("External", "Object"):
        if "averageValue" in target:
            cur = _s(current, "averageValue") if has_status and "averageValue" in current else "<unknown>"
            return f"{cur}/{_s(target, 'averageValue')} (avg)"
        cur = (_s(current, "value") or "0") if has_status else "<unknown>"
        return f"{cur}/{_s(target, 'value')}"
    name = _s(src, "name")
    if "averageValue" in target:
        cur = (_s(current, "averageValue") or "0") if has_status else "<unknown>"
        return f"{name}: {cur}/{_s(target, 'averageValue')}"
    util = current.get("averageUtilization")
    cur = f"{util}%" if has_status and isinstance(util, int) else "<unknown>"
    tgt = f"{target['averageUtilization']}%" if isinstance(target.get("averageUtilization"), int) else "<auto>"
    return f"{name}: {cur}/{tgt}"


def _hpa_metrics(obj: Mapping[str, Any]) -> tuple[list, list]:
    """(spec metrics, current metrics) in the autoscaling/v2 shape; autoscaling/v1's CPU fields are
    converted as the internal type does."""
    spec, status = _d(obj, "spec"), _d(obj, "status")
    if "metrics" in spec or "targetCPUUtilizationPercentage" not in spec:
        return _l(spec, "metrics"), _l(status, "currentMetrics")
    metrics = [{"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": spec["targetCPUUtilizationPercentage"]}}}]
    current = []
    if isinstance(status.get("currentCPUUtilizationPercentage"), int):
        current = [{"type": "Resource", "resource": {"name": "cpu", "current": {
            "averageUtilization": status["currentCPUUtilizationPercentage"]}}}]
    return metrics, current


def hpa(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec, status = _d(obj, "spec"), _d(obj, "status")
    ref = _d(spec, "scaleTargetRef")
    metrics, current = _hpa_metrics(obj)
    if not metrics:
        targets = "<none>"
    else:
        shown = [_metric(m, current[i] if i < len(current) and isinstance(current[i], dict) else None)
                 for i, m in enumerate(metrics) if isinstance(m, dict)]
        targets = ", ".join(shown[:2]) + (f" + {len(shown) - 2} more..." if len(shown) > 2 else "")
    min_pods = str(spec["minReplicas"]) if isinstance(spec.get("minReplicas"), int) else "<unset>"
    return [_name(obj), f"{_s(ref, 'kind')}/{_s(ref, 'name')}", targets, min_pods, _i(spec, "maxReplicas"),
            _i(status, "currentReplicas"), _age(obj, now)]


def ingress(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec = _d(obj, "spec")
    rules = _l(spec, "rules")
    hosts = [_s(r, "host") for r in rules[:3] if _s(r, "host")]
    hosts_cell = ",".join(hosts) or "*"
    if hosts and len(rules) > 3:
        hosts_cell += f" + {len(rules) - 3} more..."
    return [_name(obj), _s(spec, "ingressClassName") or "<none>", hosts_cell,
            _load_balancer(_d(_d(obj, "status"), "loadBalancer")), "80, 443" if _l(spec, "tls") else "80",
            _age(obj, now)]


def ingress_class(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec = _d(obj, "spec")
    params = spec.get("parameters")
    cell = "<none>"
    if isinstance(params, dict):
        cell = _s(params, "kind") + (f".{params['apiGroup']}" if isinstance(params.get("apiGroup"), str) else "")
        cell += "/" + _s(params, "name")
    return [_name(obj), _s(spec, "controller"), cell, _age(obj, now)]


def network_policy(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    return [_name(obj), format_label_selector(_d(_d(obj, "spec"), "podSelector")), _age(obj, now)]


def pdb(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec = _d(obj, "spec")
    return [_name(obj), _int_or_string(spec.get("minAvailable")) or "N/A",
            _int_or_string(spec.get("maxUnavailable")) or "N/A", _i(_d(obj, "status"), "disruptionsAllowed"),
            _age(obj, now)]


def priority_class(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    return [_name(obj), _i(obj, "value"), obj.get("globalDefault") is True, _age(obj, now),
            _s(obj, "preemptionPolicy")]


_DEFAULT_CLASS = ("storageclass.kubernetes.io/is-default-class", "storageclass.beta.kubernetes.io/is-default-class")


def storage_class(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    annotations = _d(_d(obj, "metadata"), "annotations")
    name = _name(obj) + (" (default)" if any(annotations.get(a) == "true" for a in _DEFAULT_CLASS) else "")
    return [name, _s(obj, "provisioner"), _s(obj, "reclaimPolicy") or "Delete",
            _s(obj, "volumeBindingMode") or "Immediate", obj.get("allowVolumeExpansion") is True, _age(obj, now)]


def csi_driver(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec = _d(obj, "spec")
    tokens = spec.get("tokenRequests")
    token_cell = ",".join(_s(t, "audience") for t in tokens) if isinstance(tokens, list) else "<unset>"
    return [_name(obj), spec.get("attachRequired") is not False, spec.get("podInfoOnMount") is True,
            spec.get("storageCapacity") is True, token_cell, spec.get("requiresRepublish") is True,
            ",".join(str(m) for m in _l(spec, "volumeLifecycleModes")) or "<none>", _age(obj, now)]


def csi_node(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    return [_name(obj), _len(_d(obj, "spec").get("drivers")), _age(obj, now)]


def volume_attachment(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec = _d(obj, "spec")
    return [_name(obj), _s(spec, "attacher"), _s(_d(spec, "source"), "persistentVolumeName"), _s(spec, "nodeName"),
            _d(obj, "status").get("attached") is True, _age(obj, now)]


def _with_more(items: list[str], count: int) -> str:
    text = ",".join(items[:3])
    if count > 3:
        return f"{text} + {count - 3} more..."
    return text or "<unset>"


def endpoint_slice(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    ports = [p for p in _l(obj, "ports") if isinstance(p, dict)]
    port_cells = [str(p["port"]) if isinstance(p.get("port"), int) else (p["name"] if isinstance(p.get("name"), str)
                  else "*") for p in ports]
    addresses = [str(a) for e in _l(obj, "endpoints") if isinstance(e, dict) for a in _l(e, "addresses")]
    return [_name(obj), _s(obj, "addressType"), _with_more(port_cells, len(port_cells)),
            _with_more(addresses, len(addresses)), _age(obj, now)]


def runtime_class(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    return [_name(obj), _s(obj, "handler"), _age(obj, now)]


def csr(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec, status = _d(obj, "spec"), _d(obj, "status")
    types = {_s(c, "type") for c in _l(status, "conditions") if isinstance(c, dict)}
    state = "Denied" if "Denied" in types else "Approved" if "Approved" in types else "Pending"
    if "Failed" in types:
        state += ",Failed"
    if status.get("certificate"):
        state += ",Issued"
    duration = "<none>"
    if isinstance(spec.get("expirationSeconds"), int):
        duration = human_duration(timedelta(seconds=spec["expirationSeconds"]))
    return [_name(obj), _age(obj, now), _s(spec, "signerName") or "<none>", _s(spec, "username"), duration, state]


def lease(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    return [_name(obj), _s(_d(obj, "spec"), "holderIdentity"), _age(obj, now)]


def flow_schema(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    """kube's printFlowSchema; MissingPL is "?" here (the printer sees one object, not the levels;
    kube's printer also answers "?" when it cannot tell)."""
    spec = _d(obj, "spec")
    dm = _s(_d(spec, "distinguisherMethod"), "type") or "<none>"
    return [_name(obj), _s(_d(spec, "priorityLevelConfiguration"), "name"), spec.get("matchingPrecedence", 0),
            dm, _age(obj, now), _missing_pl(obj)]


def _missing_pl(obj: Mapping[str, Any]) -> str:
    for c in _l(_d(obj, "status"), "conditions"):
        if isinstance(c, dict) and c.get("type") == "Dangling":
            return str(c.get("status") or "?")
    return "?"


def priority_level(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    """kube's printPriorityLevelConfiguration: "<none>" for what an Exempt or Reject level lacks."""
    spec = _d(obj, "spec")
    limited = _d(spec, "limited")
    ncs: Any = "<none>"
    queues: Any = "<none>"
    hand: Any = "<none>"
    qlen: Any = "<none>"
    if limited:
        ncs = limited.get("nominalConcurrencyShares", 0)
        queuing = _d(_d(limited, "limitResponse"), "queuing")
        if queuing:
            queues, hand, qlen = queuing.get("queues"), queuing.get("handSize"), queuing.get("queueLengthLimit")
    return [_name(obj), _s(spec, "type"), ncs, queues, hand, qlen, _age(obj, now)]


def binding(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    ref = _d(obj, "roleRef")
    users: list[str] = []
    groups: list[str] = []
    sas: list[str] = []
    for s in _l(obj, "subjects"):
        kind = _s(s, "kind")
        if kind == "ServiceAccount":
            sas.append(f"{_s(s, 'namespace')}/{_s(s, 'name')}")
        elif kind == "User":
            users.append(_s(s, "name"))
        elif kind == "Group":
            groups.append(_s(s, "name"))
    return [_name(obj), f"{_s(ref, 'kind')}/{_s(ref, 'name')}", _age(obj, now),
            ", ".join(users), ", ".join(groups), ", ".join(sas)]


def api_service(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    svc = _d(obj, "spec").get("service")
    service = f"{_s(svc, 'namespace')}/{_s(svc, 'name')}" if isinstance(svc, dict) else "Local"
    available = "Unknown"
    for c in _l(_d(obj, "status"), "conditions"):
        if isinstance(c, dict) and c.get("type") == "Available":
            st = _s(c, "status")
            available = f"{st} ({c['reason']})" if st != "True" and _s(c, "reason") else st
            break
    return [_name(obj), service, available, _age(obj, now)]


def default_convertor(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    return [_name(obj), rfc3339_seconds(_d(obj, "metadata").get("creationTimestamp"))]
