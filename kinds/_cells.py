"""Cells of kube's printers for core/v1 kinds (``printers.go``), and the accessors every cell
function reads objects with. Pure: a stored object (a JSON dict) and the time in, a row out."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ._printing import aware, format_labels, human_duration, parse_time, translate_timestamp_since

# --- small accessors ---------------------------------------------------------------------------


def _d(obj: Any, key: str) -> dict:
    v = obj.get(key) if isinstance(obj, Mapping) else None
    return v if isinstance(v, dict) else {}


def _s(obj: Any, key: str) -> str:
    v = obj.get(key) if isinstance(obj, Mapping) else None
    return v if isinstance(v, str) else ""


def _i(obj: Any, key: str) -> int:
    v = obj.get(key) if isinstance(obj, Mapping) else None
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def _l(obj: Any, key: str) -> list:
    v = obj.get(key) if isinstance(obj, Mapping) else None
    return v if isinstance(v, list) else []


def _len(v: Any) -> int:
    return len(v) if isinstance(v, dict | list) else 0


def _name(obj: Mapping[str, Any]) -> str:
    return _s(_d(obj, "metadata"), "name")


def _age(obj: Mapping[str, Any], now: datetime) -> str:
    return translate_timestamp_since(_d(obj, "metadata").get("creationTimestamp"), now)


def _deleting(obj: Mapping[str, Any]) -> bool:
    return bool(_d(obj, "metadata").get("deletionTimestamp"))


def _int_or_string(v: Any) -> str:
    return str(v) if isinstance(v, int | str) and not isinstance(v, bool) else ""


def _bool_ptr(v: Any) -> str:
    if isinstance(v, bool):
        return "True" if v else "False"
    return "<unset>"


def _containers(pod_template: Any) -> tuple[str, str]:
    """printers.go ``layoutContainerCells``: names and images, comma-joined."""
    cs = [c for c in _l(_d(pod_template, "spec"), "containers") if isinstance(c, dict)]
    return ",".join(_s(c, "name") for c in cs), ",".join(_s(c, "image") for c in cs)


def _template(obj: Mapping[str, Any]) -> dict:
    return _d(_d(obj, "spec"), "template")


# --- core/v1 ---------------------------------------------------------------------------------------


def config_map(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    return [_name(obj), _len(obj.get("data")) + _len(obj.get("binaryData")), _age(obj, now)]


def secret(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    keys = set(_d(obj, "data")) | set(_d(obj, "stringData"))  # stringData lands in data
    return [_name(obj), _s(obj, "type"), len(keys), _age(obj, now)]


def namespace(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    return [_name(obj), _s(_d(obj, "status"), "phase"), _age(obj, now)]


def service_account(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    return [_name(obj), _len(obj.get("secrets")), _age(obj, now)]


def event(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    first = translate_timestamp_since(obj.get("firstTimestamp"), now)
    if parse_time(obj.get("firstTimestamp")) is None:
        first = translate_timestamp_since(obj.get("eventTime"), now)
    last = translate_timestamp_since(obj.get("lastTimestamp"), now)
    if parse_time(obj.get("lastTimestamp")) is None:
        last = first
    count = _i(obj, "count")
    series = obj.get("series")
    if isinstance(series, dict):
        last = translate_timestamp_since(series.get("lastObservedTime"), now)
        count = _i(series, "count")
    elif count == 0:
        count = 1  # singleton events don't have a count set in the new API
    involved = _d(obj, "involvedObject")
    kind, name = _s(involved, "kind").lower(), _s(involved, "name")
    target = f"{kind}/{name}" if name else kind
    source = _d(obj, "source")
    component = _s(source, "component") or _s(obj, "reportingComponent")
    instance = _s(source, "host") or _s(obj, "reportingInstance")
    src = f"{component}, {instance}" if instance else component
    return [last, _s(obj, "type"), _s(obj, "reason"), target, _s(involved, "fieldPath"), src,
            _s(obj, "message").strip(), first, count, _name(obj)]


def events_v1(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    """events.k8s.io/v1 Events print through the core printer (the internal type is shared)."""
    core = {
        "metadata": obj.get("metadata"), "involvedObject": obj.get("regarding"), "reason": obj.get("reason"),
        "message": obj.get("note"), "source": obj.get("deprecatedSource"),
        "firstTimestamp": obj.get("deprecatedFirstTimestamp"), "lastTimestamp": obj.get("deprecatedLastTimestamp"),
        "count": obj.get("deprecatedCount"), "type": obj.get("type"), "eventTime": obj.get("eventTime"),
        "series": obj.get("series"), "reportingComponent": obj.get("reportingController"),
        "reportingInstance": obj.get("reportingInstance"),
    }
    return event(core, now)


def _restartable_init(container: Any) -> bool:
    return _s(container, "restartPolicy") == "Always"


def _terminated_reason(term: Mapping[str, Any], prefix: str) -> str:
    if _s(term, "reason"):
        return prefix + _s(term, "reason")
    if _i(term, "signal"):
        return f"{prefix}Signal:{_i(term, 'signal')}"
    return f"{prefix}ExitCode:{_i(term, 'exitCode')}"


def _condition_true(conditions: list, type_: str) -> bool:
    for c in conditions:
        if isinstance(c, dict) and c.get("type") == type_:
            return c.get("status") == "True"
    return False


def _pod_status(obj: Mapping[str, Any], now: datetime) -> tuple[str, int, int, int, datetime | None]:
    """printers.go ``printPod``: (reason, ready, total, restarts, last restart time)."""
    spec, status = _d(obj, "spec"), _d(obj, "status")
    conditions = _l(status, "conditions")
    phase = _s(status, "phase")
    reason = _s(status, "reason") or phase
    for c in conditions:
        if isinstance(c, dict) and c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"
    init_specs = {_s(c, "name"): c for c in _l(spec, "initContainers") if isinstance(c, dict)}
    total = _len(spec.get("containers")) + sum(1 for c in init_specs.values() if _restartable_init(c))
    ready = restarts = sidecar_restarts = 0
    last: datetime | None = None
    sidecar_last: datetime | None = None

    def later(a: datetime | None, cs: Mapping[str, Any]) -> datetime | None:
        t = parse_time(_d(_d(cs, "lastState"), "terminated").get("finishedAt"))
        return t if t is not None and (a is None or t > a) else a

    initializing = False
    init_statuses = [c for c in _l(status, "initContainerStatuses") if isinstance(c, dict)]
    for i, cs in enumerate(init_statuses):
        restarts += _i(cs, "restartCount")
        last = later(last, cs)
        sidecar = _restartable_init(init_specs.get(_s(cs, "name")))
        if sidecar:
            sidecar_restarts += _i(cs, "restartCount")
            sidecar_last = later(sidecar_last, cs)
        state = _d(cs, "state")
        term, waiting = state.get("terminated"), state.get("waiting")
        if isinstance(term, dict) and _i(term, "exitCode") == 0:
            continue
        if sidecar and cs.get("started") is True:
            if cs.get("ready") is True:
                ready += 1
            continue
        if isinstance(term, dict):
            reason = _terminated_reason(term, "Init:")
        elif isinstance(waiting, dict) and _s(waiting, "reason") and _s(waiting, "reason") != "PodInitializing":
            reason = "Init:" + _s(waiting, "reason")
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break
    if not initializing or _condition_true(conditions, "Initialized"):
        restarts, last = sidecar_restarts, sidecar_last
        has_running = False
        for cs in reversed([c for c in _l(status, "containerStatuses") if isinstance(c, dict)]):
            restarts += _i(cs, "restartCount")
            last = later(last, cs)
            state = _d(cs, "state")
            term, waiting = state.get("terminated"), state.get("waiting")
            if isinstance(waiting, dict) and _s(waiting, "reason"):
                reason = _s(waiting, "reason")
            elif isinstance(term, dict):
                reason = _terminated_reason(term, "")
            elif cs.get("ready") is True and isinstance(state.get("running"), dict):
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if _condition_true(conditions, "Ready") else "NotReady"
    if _deleting(obj) and _s(status, "reason") == "NodeLost":
        reason = "Unknown"
    elif _deleting(obj) and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"
    return reason, ready, total, restarts, last


def pod(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec, status = _d(obj, "spec"), _d(obj, "status")
    reason, ready, total, restarts, last = _pod_status(obj, now)
    restarts_cell = str(restarts)
    if restarts and last is not None:
        restarts_cell = f"{restarts} ({human_duration(aware(now) - last)} ago)"
    ips = _l(status, "podIPs")
    ip = _s(ips[0], "ip") if ips else ""
    gates = "<none>"
    if _l(spec, "readinessGates"):
        conditions = _l(status, "conditions")
        true = 0
        for gate in _l(spec, "readinessGates"):
            for c in conditions:
                if isinstance(c, dict) and c.get("type") == _s(gate, "conditionType"):
                    true += c.get("status") == "True"
                    break
        gates = f"{true}/{len(_l(spec, 'readinessGates'))}"
    return [_name(obj), f"{ready}/{total}", reason, restarts_cell, _age(obj, now), ip or "<none>",
            _s(spec, "nodeName") or "<none>", _s(status, "nominatedNodeName") or "<none>", gates]


def pod_template(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    tpl = _d(obj, "template")
    names, images = _containers(tpl)
    return [_name(obj), names, images, format_labels(_d(tpl, "metadata").get("labels"))]


def replication_controller(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec, status = _d(obj, "spec"), _d(obj, "status")
    names, images = _containers(_template(obj))
    return [_name(obj), _i(spec, "replicas"), _i(status, "replicas"), _i(status, "readyReplicas"), _age(obj, now),
            names, images, format_labels(spec.get("selector"))]


def _load_balancer(status: Any) -> str:
    """``loadBalancerStatusStringer`` (wide: never clipped): IPs or hostnames, sorted, comma-joined."""
    out = {(_s(i, "ip") or _s(i, "hostname")) for i in _l(status, "ingress") if isinstance(i, dict)}
    return ",".join(sorted(x for x in out if x))


def _service_external_ip(obj: Mapping[str, Any]) -> str:
    spec = _d(obj, "spec")
    external = [str(x) for x in _l(spec, "externalIPs")]
    kind = _s(spec, "type")
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else "<none>"
    if kind == "LoadBalancer":
        lb = _load_balancer(_d(_d(obj, "status"), "loadBalancer"))
        if external:
            return ",".join(([*lb.split(",")] if lb else []) + external)
        return lb or "<pending>"
    if kind == "ExternalName":
        return _s(spec, "externalName")
    return "<unknown>"


def _service_ports(ports: list) -> str:
    out = []
    for p in ports:
        if not isinstance(p, dict):
            continue
        node_port = _i(p, "nodePort")
        proto = _s(p, "protocol")
        out.append(f"{_i(p, 'port')}:{node_port}/{proto}" if node_port > 0 else f"{_i(p, 'port')}/{proto}")
    return ",".join(out)


def service(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec = _d(obj, "spec")
    ips = _l(spec, "clusterIPs")
    return [_name(obj), _s(spec, "type"), str(ips[0]) if ips else "<none>", _service_external_ip(obj),
            _service_ports(_l(spec, "ports")) or "<none>", _age(obj, now), format_labels(spec.get("selector"))]


def _join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def endpoints(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    """printers.go ``formatEndpoints(endpoints, nil)``: up to three ``ip:port``, then ``+ N more...``."""
    subsets = [s for s in _l(obj, "subsets") if isinstance(s, dict)]
    if not subsets:
        return [_name(obj), "<none>", _age(obj, now)]
    shown: list[str] = []
    count, more = 0, False
    for ss in subsets:
        addrs = [a for a in _l(ss, "addresses") if isinstance(a, dict)]
        ports = [p for p in _l(ss, "ports") if isinstance(p, dict)] or [None]
        for port in ports:
            count += len(addrs)
            for a in addrs:
                if len(shown) == 3:
                    more = True
                    break
                shown.append(_s(a, "ip") if port is None else _join_host_port(_s(a, "ip"), _i(port, "port")))
    text = ",".join(shown)
    return [_name(obj), f"{text} + {count - 3} more..." if more else text, _age(obj, now)]


def node(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec, status = _d(obj, "spec"), _d(obj, "status")
    conds = {c.get("type"): c for c in _l(status, "conditions") if isinstance(c, dict)}
    states = []
    if "Ready" in conds:
        states.append("Ready" if conds["Ready"].get("status") == "True" else "NotReady")
    states = states or ["Unknown"]
    if spec.get("unschedulable") is True:
        states.append("SchedulingDisabled")
    roles: set[str] = set()
    for k, v in (_d(obj, "metadata").get("labels") or {}).items():
        if k.startswith("node-role.kubernetes.io/") and k[len("node-role.kubernetes.io/"):]:
            roles.add(k[len("node-role.kubernetes.io/"):])
        elif k == "kubernetes.io/role" and v:
            roles.add(v)
    info = _d(status, "nodeInfo")

    def address(kind: str) -> str:
        for a in _l(status, "addresses"):
            if isinstance(a, dict) and a.get("type") == kind:
                return _s(a, "address")
        return "<none>"

    return [_name(obj), ",".join(states), ",".join(sorted(roles)) or "<none>", _age(obj, now),
            _s(info, "kubeletVersion"), address("InternalIP"), address("ExternalIP"),
            _s(info, "osImage") or "<unknown>", _s(info, "kernelVersion") or "<unknown>",
            _s(info, "containerRuntimeVersion") or "<unknown>"]


_ACCESS_MODES = (("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"),
                 ("ReadWriteOncePod", "RWOP"))


def _access_modes(modes: list) -> str:
    """``helper.GetAccessModesAsString``: the short forms, in a fixed order, each once."""
    return ",".join(short for mode, short in _ACCESS_MODES if mode in modes)


_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"


def persistent_volume(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec, status = _d(obj, "spec"), _d(obj, "status")
    claim = spec.get("claimRef")
    claim_cell = f"{_s(claim, 'namespace')}/{_s(claim, 'name')}" if isinstance(claim, dict) else ""
    annotations = _d(_d(obj, "metadata"), "annotations")
    klass = annotations[_CLASS_ANNOTATION] if _CLASS_ANNOTATION in annotations else _s(spec, "storageClassName")
    return [_name(obj), _s(_d(spec, "capacity"), "storage") or "0", _access_modes(_l(spec, "accessModes")),
            _s(spec, "persistentVolumeReclaimPolicy"), "Terminating" if _deleting(obj) else _s(status, "phase"),
            claim_cell, klass, _s(spec, "volumeAttributesClassName") or "<unset>", _s(status, "reason"),
            _age(obj, now), _s(spec, "volumeMode") or "<unset>"]


def persistent_volume_claim(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec, status = _d(obj, "spec"), _d(obj, "status")
    capacity = modes = ""
    if _s(spec, "volumeName"):
        modes = _access_modes(_l(status, "accessModes"))
        capacity = _s(_d(status, "capacity"), "storage") or "0"
    annotations = _d(_d(obj, "metadata"), "annotations")
    klass = annotations[_CLASS_ANNOTATION] if _CLASS_ANNOTATION in annotations else _s(spec, "storageClassName")
    return [_name(obj), "Terminating" if _deleting(obj) else _s(status, "phase"), _s(spec, "volumeName"),
            capacity, modes, klass, _s(spec, "volumeAttributesClassName") or "<unset>", _age(obj, now),
            _s(spec, "volumeMode") or "<unset>"]


def resource_quota(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    status = _d(obj, "status")
    hard, used = _d(status, "hard"), _d(status, "used")
    requests, limits = [], []
    for resource in sorted(hard):
        text = f"{resource}: {used.get(resource, '0')}/{hard[resource]}"
        pieces = resource.split(".")
        (limits if len(pieces) > 1 and pieces[0] == "limits" else requests).append(text)
    return [_name(obj), ", ".join(requests), ", ".join(limits), _age(obj, now)]
