"""Server-side printers of the built-in kinds: Table columns as data, one cell function per kind.

Mirrors ``pkg/printers/internalversion/printers.go`` of Kubernetes 1.33 (and kube-aggregator's
APIService convertor). The apiserver always generates the *wide* form (``GenerateOptions{Wide:
true}``): every column, ``priority`` 1 included, one cell per column. ``PRINTERS`` is keyed by
``(group, kind)``, so a kind gets its printer as soon as its definition exists; adding one is a
``Printer(columns, cells)`` entry. Kinds printed by the apiserver's *default convertor* (no printer in
printers.go: Role, ClusterRole, LimitRange, CRDs) have ``DEFAULT_CONVERTOR``. A kind with neither
gets the custom-resource default (Name + Age), which the gateway builds.

Column descriptions are what printers.go takes from ``SwaggerDoc()``; here they name the schema
field (``Doc``) and are read from the bundled OpenAPI definitions (GA types stand in for the
extensions/v1beta1 & co. types printers.go quotes; the texts match apart from later edits upstream).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, NamedTuple

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

__all__ = ["CREATED_DESCRIPTION", "DEFAULT_CONVERTOR", "NAME_DESCRIPTION", "PRINTERS", "Column", "Doc", "Printer",
           "printer_for"]


class Doc(NamedTuple):
    """A column description taken from a schema field's description (``SwaggerDoc()[field]``)."""

    definition: str
    field: str


class Column(NamedTuple):
    name: str
    type: str = "string"
    description: str | Doc = ""
    priority: int = 0
    format: str = ""


Cells = Callable[[Mapping[str, Any], datetime], list[Any]]


class Printer(NamedTuple):
    columns: tuple[Column, ...]
    cells: Cells

    def column_definitions(self) -> list[dict[str, Any]]:
        """``TableColumnDefinition`` dicts (fresh copies)."""
        return [dict(c) for c in _definitions(self.columns)]


@functools.cache
def _definitions(columns: tuple[Column, ...]) -> tuple[dict[str, Any], ...]:
    return tuple({"name": c.name, "type": c.type, "format": c.format, "description": _describe(c.description),
                  "priority": c.priority} for c in columns)


def _describe(d: str | Doc) -> str:
    if isinstance(d, str):
        return d
    from ._schemas import definitions  # the schemas are loaded at start; this only reads them

    prop = definitions().get(d.definition, {}).get("properties", {}).get(d.field, {})
    return str(prop.get("description", ""))


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


# --- descriptions --------------------------------------------------------------------------------

NAME_DESCRIPTION = ("Name must be unique within a namespace. Is required when creating resources, although some "
           "resources may allow a client to request the generation of an appropriate name automatically. "
           "Name is primarily intended for creation idempotence and configuration definition. Cannot be "
           "updated. More info: "
           "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names")
CREATED_DESCRIPTION = ("CreationTimestamp is a timestamp representing the server time when this object was created. "
              "It is not guaranteed to be set in happens-before order across separate operations. Clients "
              "may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the "
              "system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/"
              "sig-architecture/api-conventions.md#metadata")
_D_CONTAINERS = "Names of each container in the template."
_D_IMAGES = "Images referenced by each container in the template."

NAME = Column("Name", "string", NAME_DESCRIPTION, 0, "name")
AGE = Column("Age", "string", CREATED_DESCRIPTION)
CREATED_AT = Column("Created At", "date", CREATED_DESCRIPTION)
CONTAINERS = Column("Containers", "string", _D_CONTAINERS, 1)
IMAGES = Column("Images", "string", _D_IMAGES, 1)

_CORE = "io.k8s.api.core.v1."
_APPS = "io.k8s.api.apps.v1."


def _selector(description: str | Doc) -> Column:
    return Column("Selector", "string", description, 1)


# --- core/v1 ---------------------------------------------------------------------------------------


def _config_map(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    return [_name(obj), _len(obj.get("data")) + _len(obj.get("binaryData")), _age(obj, now)]


def _secret(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    keys = set(_d(obj, "data")) | set(_d(obj, "stringData"))  # stringData lands in data
    return [_name(obj), _s(obj, "type"), len(keys), _age(obj, now)]


def _namespace(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    return [_name(obj), _s(_d(obj, "status"), "phase"), _age(obj, now)]


def _service_account(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    return [_name(obj), _len(obj.get("secrets")), _age(obj, now)]


def _event(obj: Mapping[str, Any], now: datetime) -> list[Any]:
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


def _events_v1(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    """events.k8s.io/v1 Events print through the core printer (the internal type is shared)."""
    core = {
        "metadata": obj.get("metadata"), "involvedObject": obj.get("regarding"), "reason": obj.get("reason"),
        "message": obj.get("note"), "source": obj.get("deprecatedSource"),
        "firstTimestamp": obj.get("deprecatedFirstTimestamp"), "lastTimestamp": obj.get("deprecatedLastTimestamp"),
        "count": obj.get("deprecatedCount"), "type": obj.get("type"), "eventTime": obj.get("eventTime"),
        "series": obj.get("series"), "reportingComponent": obj.get("reportingController"),
        "reportingInstance": obj.get("reportingInstance"),
    }
    return _event(core, now)


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


def _pod(obj: Mapping[str, Any], now: datetime) -> list[Any]:
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


def _pod_template(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    tpl = _d(obj, "template")
    names, images = _containers(tpl)
    return [_name(obj), names, images, format_labels(_d(tpl, "metadata").get("labels"))]


def _replication_controller(obj: Mapping[str, Any], now: datetime) -> list[Any]:
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


def _service(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec = _d(obj, "spec")
    ips = _l(spec, "clusterIPs")
    return [_name(obj), _s(spec, "type"), str(ips[0]) if ips else "<none>", _service_external_ip(obj),
            _service_ports(_l(spec, "ports")) or "<none>", _age(obj, now), format_labels(spec.get("selector"))]


def _join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _endpoints(obj: Mapping[str, Any], now: datetime) -> list[Any]:
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


def _node(obj: Mapping[str, Any], now: datetime) -> list[Any]:
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


def _persistent_volume(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec, status = _d(obj, "spec"), _d(obj, "status")
    claim = spec.get("claimRef")
    claim_cell = f"{_s(claim, 'namespace')}/{_s(claim, 'name')}" if isinstance(claim, dict) else ""
    annotations = _d(_d(obj, "metadata"), "annotations")
    klass = annotations[_CLASS_ANNOTATION] if _CLASS_ANNOTATION in annotations else _s(spec, "storageClassName")
    return [_name(obj), _s(_d(spec, "capacity"), "storage") or "0", _access_modes(_l(spec, "accessModes")),
            _s(spec, "persistentVolumeReclaimPolicy"), "Terminating" if _deleting(obj) else _s(status, "phase"),
            claim_cell, klass, _s(spec, "volumeAttributesClassName") or "<unset>", _s(status, "reason"),
            _age(obj, now), _s(spec, "volumeMode") or "<unset>"]


def _persistent_volume_claim(obj: Mapping[str, Any], now: datetime) -> list[Any]:
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


def _resource_quota(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    status = _d(obj, "status")
    hard, used = _d(status, "hard"), _d(status, "used")
    requests, limits = [], []
    for resource in sorted(hard):
        text = f"{resource}: {used.get(resource, '0')}/{hard[resource]}"
        pieces = resource.split(".")
        (limits if len(pieces) > 1 and pieces[0] == "limits" else requests).append(text)
    return [_name(obj), ", ".join(requests), ", ".join(limits), _age(obj, now)]


# --- apps/v1 ---------------------------------------------------------------------------------------


def _deployment(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec, status = _d(obj, "spec"), _d(obj, "status")
    names, images = _containers(_template(obj))
    try:
        selector = label_selector_string(spec.get("selector"))
    except ValueError:
        selector = "<invalid>"
    return [_name(obj), f"{_i(status, 'readyReplicas')}/{_i(spec, 'replicas')}", _i(status, "updatedReplicas"),
            _i(status, "availableReplicas"), _age(obj, now), names, images, selector]


def _replica_set(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec, status = _d(obj, "spec"), _d(obj, "status")
    names, images = _containers(_template(obj))
    return [_name(obj), _i(spec, "replicas"), _i(status, "replicas"), _i(status, "readyReplicas"), _age(obj, now),
            names, images, format_label_selector(spec.get("selector"))]


def _stateful_set(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    names, images = _containers(_template(obj))
    return [_name(obj), f"{_i(_d(obj, 'status'), 'readyReplicas')}/{_i(_d(obj, 'spec'), 'replicas')}",
            _age(obj, now), names, images]


def _daemon_set(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec, status = _d(obj, "spec"), _d(obj, "status")
    names, images = _containers(_template(obj))
    return [_name(obj), _i(status, "desiredNumberScheduled"), _i(status, "currentNumberScheduled"),
            _i(status, "numberReady"), _i(status, "updatedNumberScheduled"), _i(status, "numberAvailable"),
            format_labels(_d(_template(obj), "spec").get("nodeSelector")), _age(obj, now), names, images,
            format_label_selector(spec.get("selector"))]


def _controller_revision(obj: Mapping[str, Any], now: datetime) -> list[Any]:
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


def _job(obj: Mapping[str, Any], now: datetime) -> list[Any]:
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


def _cron_job(obj: Mapping[str, Any], now: datetime) -> list[Any]:
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


def _hpa(obj: Mapping[str, Any], now: datetime) -> list[Any]:
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


def _ingress(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec = _d(obj, "spec")
    rules = _l(spec, "rules")
    hosts = [_s(r, "host") for r in rules[:3] if _s(r, "host")]
    hosts_cell = ",".join(hosts) or "*"
    if hosts and len(rules) > 3:
        hosts_cell += f" + {len(rules) - 3} more..."
    return [_name(obj), _s(spec, "ingressClassName") or "<none>", hosts_cell,
            _load_balancer(_d(_d(obj, "status"), "loadBalancer")), "80, 443" if _l(spec, "tls") else "80",
            _age(obj, now)]


def _ingress_class(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec = _d(obj, "spec")
    params = spec.get("parameters")
    cell = "<none>"
    if isinstance(params, dict):
        cell = _s(params, "kind") + (f".{params['apiGroup']}" if isinstance(params.get("apiGroup"), str) else "")
        cell += "/" + _s(params, "name")
    return [_name(obj), _s(spec, "controller"), cell, _age(obj, now)]


def _network_policy(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    return [_name(obj), format_label_selector(_d(_d(obj, "spec"), "podSelector")), _age(obj, now)]


def _pdb(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec = _d(obj, "spec")
    return [_name(obj), _int_or_string(spec.get("minAvailable")) or "N/A",
            _int_or_string(spec.get("maxUnavailable")) or "N/A", _i(_d(obj, "status"), "disruptionsAllowed"),
            _age(obj, now)]


def _priority_class(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    return [_name(obj), _i(obj, "value"), obj.get("globalDefault") is True, _age(obj, now),
            _s(obj, "preemptionPolicy")]


_DEFAULT_CLASS = ("storageclass.kubernetes.io/is-default-class", "storageclass.beta.kubernetes.io/is-default-class")


def _storage_class(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    annotations = _d(_d(obj, "metadata"), "annotations")
    name = _name(obj) + (" (default)" if any(annotations.get(a) == "true" for a in _DEFAULT_CLASS) else "")
    return [name, _s(obj, "provisioner"), _s(obj, "reclaimPolicy") or "Delete",
            _s(obj, "volumeBindingMode") or "Immediate", obj.get("allowVolumeExpansion") is True, _age(obj, now)]


def _csi_driver(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec = _d(obj, "spec")
    tokens = spec.get("tokenRequests")
    token_cell = ",".join(_s(t, "audience") for t in tokens) if isinstance(tokens, list) else "<unset>"
    return [_name(obj), spec.get("attachRequired") is not False, spec.get("podInfoOnMount") is True,
            spec.get("storageCapacity") is True, token_cell, spec.get("requiresRepublish") is True,
            ",".join(str(m) for m in _l(spec, "volumeLifecycleModes")) or "<none>", _age(obj, now)]


def _csi_node(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    return [_name(obj), _len(_d(obj, "spec").get("drivers")), _age(obj, now)]


def _volume_attachment(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    spec = _d(obj, "spec")
    return [_name(obj), _s(spec, "attacher"), _s(_d(spec, "source"), "persistentVolumeName"), _s(spec, "nodeName"),
            _d(obj, "status").get("attached") is True, _age(obj, now)]


def _with_more(items: list[str], count: int) -> str:
    text = ",".join(items[:3])
    if count > 3:
        return f"{text} + {count - 3} more..."
    return text or "<unset>"


def _endpoint_slice(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    ports = [p for p in _l(obj, "ports") if isinstance(p, dict)]
    port_cells = [str(p["port"]) if isinstance(p.get("port"), int) else (p["name"] if isinstance(p.get("name"), str)
                  else "*") for p in ports]
    addresses = [str(a) for e in _l(obj, "endpoints") if isinstance(e, dict) for a in _l(e, "addresses")]
    return [_name(obj), _s(obj, "addressType"), _with_more(port_cells, len(port_cells)),
            _with_more(addresses, len(addresses)), _age(obj, now)]


def _runtime_class(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    return [_name(obj), _s(obj, "handler"), _age(obj, now)]


def _csr(obj: Mapping[str, Any], now: datetime) -> list[Any]:
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


def _lease(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    return [_name(obj), _s(_d(obj, "spec"), "holderIdentity"), _age(obj, now)]


def _binding(obj: Mapping[str, Any], now: datetime) -> list[Any]:
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


def _api_service(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    svc = _d(obj, "spec").get("service")
    service = f"{_s(svc, 'namespace')}/{_s(svc, 'name')}" if isinstance(svc, dict) else "Local"
    available = "Unknown"
    for c in _l(_d(obj, "status"), "conditions"):
        if isinstance(c, dict) and c.get("type") == "Available":
            st = _s(c, "status")
            available = f"{st} ({c['reason']})" if st != "True" and _s(c, "reason") else st
            break
    return [_name(obj), service, available, _age(obj, now)]


def _default_convertor(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    return [_name(obj), rfc3339_seconds(_d(obj, "metadata").get("creationTimestamp"))]


DEFAULT_CONVERTOR = Printer((NAME, CREATED_AT), _default_convertor)
"""The apiserver's default Table convertor (``pkg/registry/rest/table.go``): Name + Created At."""

_RBAC = "rbac.authorization.k8s.io"
_RB_ROLE = ("RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace. "
            "If the RoleRef cannot be resolved, the Authorizer must return an error.")
_CRB_ROLE = ("RoleRef can only reference a ClusterRole in the global namespace. If the RoleRef cannot be "
             "resolved, the Authorizer must return an error.")


def _bindings(role: str, what: str) -> tuple[Column, ...]:
    return (NAME, Column("Role", "string", role), AGE, Column("Users", "string", f"Users in the {what}", 1),
            Column("Groups", "string", f"Groups in the {what}", 1),
            Column("ServiceAccounts", "string", f"ServiceAccounts in the {what}", 1))


_EVENT_COLUMNS = (
    Column("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
    Column("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
    Column("Reason", "string", "This should be a short, machine understandable string that gives the reason for "
                               "the transition into the object's current status."),
    Column("Object", "string", "The object that this event is about."),
    Column("Subobject", "string", "If referring to a piece of an object instead of an entire object, this string "
                                  "should contain a valid JSON/Go field access statement, such as "
                                  "desiredState.manifest.containers[2].", 1),
    Column("Source", "string", "The component reporting this event. Should be a short machine understandable "
                               "string.", 1),
    Column("Message", "string", "A human-readable description of the status of this operation."),
    Column("First Seen", "string", "The time at which the event was first recorded. (Time of server receipt is in "
                                   "TypeMeta.)", 1),
    Column("Count", "string", "The number of times this event has occurred.", 1),
    Column("Name", "string", NAME_DESCRIPTION, 1, "name"),
)

_DEPLOY_STATUS = Doc(_APPS + "DeploymentStatus", "updatedReplicas")

# (group, kind) -> its printer, as printers.go registers them (wide: priority-1 columns included).
PRINTERS: dict[tuple[str, str], Printer] = {
    ("", "ConfigMap"): Printer((NAME, Column("Data", "string", Doc(_CORE + "ConfigMap", "data")), AGE), _config_map),
    ("", "Secret"): Printer((NAME, Column("Type", "string", Doc(_CORE + "Secret", "type")),
                             Column("Data", "string", Doc(_CORE + "Secret", "data")), AGE), _secret),
    ("", "Namespace"): Printer((NAME, Column("Status", "string", "The status of the namespace"), AGE), _namespace),
    ("", "ServiceAccount"): Printer((NAME, Column("Secrets", "string", Doc(_CORE + "ServiceAccount", "secrets")),
                                     AGE), _service_account),
    ("", "Event"): Printer(_EVENT_COLUMNS, _event),
    ("events.k8s.io", "Event"): Printer(_EVENT_COLUMNS, _events_v1),
    ("", "Pod"): Printer((
        NAME,
        Column("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
        Column("Status", "string", "The aggregate status of the containers in this pod."),
        Column("Restarts", "string", "The number of times the containers in this pod have been restarted and when "
                                     "the last container in this pod has restarted."),
        AGE,
        Column("IP", "string", Doc(_CORE + "PodStatus", "podIP"), 1),
        Column("Node", "string", Doc(_CORE + "PodSpec", "nodeName"), 1),
        Column("Nominated Node", "string", Doc(_CORE + "PodStatus", "nominatedNodeName"), 1),
        Column("Readiness Gates", "string", Doc(_CORE + "PodSpec", "readinessGates"), 1),
    ), _pod),
    ("", "PodTemplate"): Printer((NAME, Column("Containers", "string", _D_CONTAINERS),
                                  Column("Images", "string", _D_IMAGES),
                                  Column("Pod Labels", "string", "The labels for the pod template.")), _pod_template),
    ("", "ReplicationController"): Printer((
        NAME, Column("Desired", "integer", Doc(_CORE + "ReplicationControllerSpec", "replicas")),
        Column("Current", "integer", Doc(_CORE + "ReplicationControllerStatus", "replicas")),
        Column("Ready", "integer", Doc(_CORE + "ReplicationControllerStatus", "readyReplicas")), AGE,
        CONTAINERS, IMAGES, _selector(Doc(_CORE + "ReplicationControllerSpec", "selector")),
    ), _replication_controller),
    ("", "Service"): Printer((
        NAME, Column("Type", "string", Doc(_CORE + "ServiceSpec", "type")),
        Column("Cluster-IP", "string", Doc(_CORE + "ServiceSpec", "clusterIP")),
        Column("External-IP", "string", Doc(_CORE + "ServiceSpec", "externalIPs")),
        Column("Port(s)", "string", Doc(_CORE + "ServiceSpec", "ports")), AGE,
        _selector(Doc(_CORE + "ServiceSpec", "selector")),
    ), _service),
    ("", "Endpoints"): Printer((NAME, Column("Endpoints", "string", Doc(_CORE + "Endpoints", "subsets")), AGE),
                               _endpoints),
    ("", "Node"): Printer((
        NAME, Column("Status", "string", "The status of the node"), Column("Roles", "string", "The roles of the node"),
        AGE, Column("Version", "string", Doc(_CORE + "NodeSystemInfo", "kubeletVersion")),
        Column("Internal-IP", "string", Doc(_CORE + "NodeStatus", "addresses"), 1),
        Column("External-IP", "string", Doc(_CORE + "NodeStatus", "addresses"), 1),
        Column("OS-Image", "string", Doc(_CORE + "NodeSystemInfo", "osImage"), 1),
        Column("Kernel-Version", "string", Doc(_CORE + "NodeSystemInfo", "kernelVersion"), 1),
        Column("Container-Runtime", "string", Doc(_CORE + "NodeSystemInfo", "containerRuntimeVersion"), 1),
    ), _node),
    ("", "PersistentVolume"): Printer((
        NAME, Column("Capacity", "string", Doc(_CORE + "PersistentVolumeSpec", "capacity")),
        Column("Access Modes", "string", Doc(_CORE + "PersistentVolumeSpec", "accessModes")),
        Column("Reclaim Policy", "string", Doc(_CORE + "PersistentVolumeSpec", "persistentVolumeReclaimPolicy")),
        Column("Status", "string", Doc(_CORE + "PersistentVolumeStatus", "phase")),
        Column("Claim", "string", Doc(_CORE + "PersistentVolumeSpec", "claimRef")),
        Column("StorageClass", "string", "StorageClass of the pv"),
        Column("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv"),
        Column("Reason", "string", Doc(_CORE + "PersistentVolumeStatus", "reason")), AGE,
        Column("VolumeMode", "string", Doc(_CORE + "PersistentVolumeSpec", "volumeMode"), 1),
    ), _persistent_volume),
    ("", "PersistentVolumeClaim"): Printer((
        NAME, Column("Status", "string", Doc(_CORE + "PersistentVolumeClaimStatus", "phase")),
        Column("Volume", "string", Doc(_CORE + "PersistentVolumeClaimSpec", "volumeName")),
        Column("Capacity", "string", Doc(_CORE + "PersistentVolumeClaimStatus", "capacity")),
        Column("Access Modes", "string", Doc(_CORE + "PersistentVolumeClaimStatus", "accessModes")),
        Column("StorageClass", "string", "StorageClass of the pvc"),
        Column("VolumeAttributesClass", "string", "VolumeAttributesClass of the pvc"), AGE,
        Column("VolumeMode", "string", Doc(_CORE + "PersistentVolumeClaimSpec", "volumeMode"), 1),
    ), _persistent_volume_claim),
    ("", "ResourceQuota"): Printer((
        NAME, Column("Request", "string", "Request represents a minimum amount of cpu/memory that a container may "
                                          "consume."),
        Column("Limit", "string", "Limits control the maximum amount of cpu/memory that a container may use "
                                  "independent of contention on the node."), AGE,
    ), _resource_quota),
    ("", "LimitRange"): DEFAULT_CONVERTOR,
    ("apps", "Deployment"): Printer((
        NAME, Column("Ready", "string", "Number of the pod with ready state"),
        Column("Up-to-date", "string", _DEPLOY_STATUS),
        Column("Available", "string", Doc(_APPS + "DeploymentStatus", "availableReplicas")), AGE,
        CONTAINERS, IMAGES, _selector(Doc(_APPS + "DeploymentSpec", "selector")),
    ), _deployment),
    ("apps", "ReplicaSet"): Printer((
        NAME, Column("Desired", "integer", Doc(_APPS + "ReplicaSetSpec", "replicas")),
        Column("Current", "integer", Doc(_APPS + "ReplicaSetStatus", "replicas")),
        Column("Ready", "integer", Doc(_APPS + "ReplicaSetStatus", "readyReplicas")), AGE,
        CONTAINERS, IMAGES, _selector(Doc(_APPS + "ReplicaSetSpec", "selector")),
    ), _replica_set),
    ("apps", "StatefulSet"): Printer((NAME, Column("Ready", "string", "Number of the pod with ready state"), AGE,
                                      CONTAINERS, IMAGES), _stateful_set),
    ("apps", "DaemonSet"): Printer((
        NAME, Column("Desired", "integer", Doc(_APPS + "DaemonSetStatus", "desiredNumberScheduled")),
        Column("Current", "integer", Doc(_APPS + "DaemonSetStatus", "currentNumberScheduled")),
        Column("Ready", "integer", Doc(_APPS + "DaemonSetStatus", "numberReady")),
        Column("Up-to-date", "integer", Doc(_APPS + "DaemonSetStatus", "updatedNumberScheduled")),
        Column("Available", "integer", Doc(_APPS + "DaemonSetStatus", "numberAvailable")),
        Column("Node Selector", "string", Doc(_CORE + "PodSpec", "nodeSelector")), AGE,
        CONTAINERS, IMAGES, _selector(Doc(_APPS + "DaemonSetSpec", "selector")),
    ), _daemon_set),
    ("apps", "ControllerRevision"): Printer((
        NAME, Column("Controller", "string", "Controller of the object"),
        Column("Revision", "string", Doc(_APPS + "ControllerRevision", "revision")), AGE,
    ), _controller_revision),
    ("batch", "Job"): Printer((
        NAME, Column("Status", "string", "Status of the job."),
        Column("Completions", "string", Doc("io.k8s.api.batch.v1.JobStatus", "succeeded")),
        Column("Duration", "string", "Time required to complete the job."), AGE,
        CONTAINERS, IMAGES, _selector(Doc("io.k8s.api.batch.v1.JobSpec", "selector")),
    ), _job),
    ("batch", "CronJob"): Printer((
        NAME, Column("Schedule", "string", Doc("io.k8s.api.batch.v1.CronJobSpec", "schedule")),
        Column("Timezone", "string", Doc("io.k8s.api.batch.v1.CronJobSpec", "timeZone")),
        Column("Suspend", "boolean", Doc("io.k8s.api.batch.v1.CronJobSpec", "suspend")),
        Column("Active", "integer", Doc("io.k8s.api.batch.v1.CronJobStatus", "active")),
        Column("Last Schedule", "string", Doc("io.k8s.api.batch.v1.CronJobStatus", "lastScheduleTime")), AGE,
        CONTAINERS, IMAGES, _selector(Doc("io.k8s.api.batch.v1.JobSpec", "selector")),
    ), _cron_job),
    ("autoscaling", "HorizontalPodAutoscaler"): Printer((
        NAME, Column("Reference", "string", Doc("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec",
                                                "scaleTargetRef")),
        Column("Targets", "string", Doc("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec", "metrics")),
        Column("MinPods", "string", Doc("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec", "minReplicas")),
        Column("MaxPods", "string", Doc("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec", "maxReplicas")),
        Column("Replicas", "string", Doc("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus",
                                         "currentReplicas")), AGE,
    ), _hpa),
    ("networking.k8s.io", "Ingress"): Printer((
        NAME, Column("Class", "string", "The name of the IngressClass resource that should be used for additional "
                                        "configuration"),
        Column("Hosts", "string", "Hosts that incoming requests are matched against before the ingress rule"),
        Column("Address", "string", "Address is a list containing ingress points for the load-balancer"),
        Column("Ports", "string", "Ports of TLS configurations that open"), AGE,
    ), _ingress),
    ("networking.k8s.io", "IngressClass"): Printer((
        NAME, Column("Controller", "string", "Controller that is responsible for handling this class"),
        Column("Parameters", "string", "A reference to a resource with additional parameters"), AGE,
    ), _ingress_class),
    ("networking.k8s.io", "NetworkPolicy"): Printer((
        NAME, Column("Pod-Selector", "string", Doc("io.k8s.api.networking.v1.NetworkPolicySpec", "podSelector")), AGE,
    ), _network_policy),
    ("policy", "PodDisruptionBudget"): Printer((
        NAME, Column("Min Available", "string", "The minimum number of pods that must be available."),
        Column("Max Unavailable", "string", "The maximum number of pods that may be unavailable."),
        Column("Allowed Disruptions", "integer", "Calculated number of pods that may be disrupted at this time."), AGE,
    ), _pdb),
    ("scheduling.k8s.io", "PriorityClass"): Printer((
        NAME, Column("Value", "integer", Doc("io.k8s.api.scheduling.v1.PriorityClass", "value")),
        Column("Global-Default", "boolean", Doc("io.k8s.api.scheduling.v1.PriorityClass", "globalDefault")), AGE,
        Column("PreemptionPolicy", "string", Doc("io.k8s.api.scheduling.v1.PriorityClass", "preemptionPolicy"), 1),
    ), _priority_class),
    ("storage.k8s.io", "StorageClass"): Printer((
        NAME, Column("Provisioner", "string", Doc("io.k8s.api.storage.v1.StorageClass", "provisioner")),
        Column("ReclaimPolicy", "string", Doc("io.k8s.api.storage.v1.StorageClass", "reclaimPolicy")),
        Column("VolumeBindingMode", "string", Doc("io.k8s.api.storage.v1.StorageClass", "volumeBindingMode")),
        Column("AllowVolumeExpansion", "string", Doc("io.k8s.api.storage.v1.StorageClass", "allowVolumeExpansion")),
        AGE,
    ), _storage_class),
    ("storage.k8s.io", "CSIDriver"): Printer((
        NAME, *(Column(n, t, Doc("io.k8s.api.storage.v1.CSIDriverSpec", f)) for n, t, f in (
            ("AttachRequired", "boolean", "attachRequired"), ("PodInfoOnMount", "boolean", "podInfoOnMount"),
            ("StorageCapacity", "boolean", "storageCapacity"), ("TokenRequests", "string", "tokenRequests"),
            ("RequiresRepublish", "boolean", "requiresRepublish"), ("Modes", "string", "volumeLifecycleModes"))),
        AGE,
    ), _csi_driver),
    ("storage.k8s.io", "CSINode"): Printer((
        NAME, Column("Drivers", "integer", "Drivers indicates the number of CSI drivers registered on the node"), AGE,
    ), _csi_node),
    ("storage.k8s.io", "VolumeAttachment"): Printer((
        NAME, Column("Attacher", "string", Doc("io.k8s.api.storage.v1.VolumeAttachmentSpec", "attacher"), 0, "name"),
        Column("PV", "string", Doc("io.k8s.api.storage.v1.VolumeAttachmentSource", "persistentVolumeName")),
        Column("Node", "string", Doc("io.k8s.api.storage.v1.VolumeAttachmentSpec", "nodeName")),
        Column("Attached", "boolean", Doc("io.k8s.api.storage.v1.VolumeAttachmentStatus", "attached")), AGE,
    ), _volume_attachment),
    ("discovery.k8s.io", "EndpointSlice"): Printer((
        NAME, Column("AddressType", "string", Doc("io.k8s.api.discovery.v1.EndpointSlice", "addressType")),
        Column("Ports", "string", Doc("io.k8s.api.discovery.v1.EndpointSlice", "ports")),
        Column("Endpoints", "string", Doc("io.k8s.api.discovery.v1.EndpointSlice", "endpoints")), AGE,
    ), _endpoint_slice),
    ("node.k8s.io", "RuntimeClass"): Printer((
        NAME, Column("Handler", "string", Doc("io.k8s.api.node.v1.RuntimeClass", "handler")), AGE,
    ), _runtime_class),
    ("certificates.k8s.io", "CertificateSigningRequest"): Printer((
        NAME, AGE,
        Column("SignerName", "string", Doc("io.k8s.api.certificates.v1.CertificateSigningRequestSpec", "signerName")),
        Column("Requestor", "string", Doc("io.k8s.api.certificates.v1.CertificateSigningRequestSpec", "request")),
        Column("RequestedDuration", "string", Doc("io.k8s.api.certificates.v1.CertificateSigningRequestSpec",
                                                  "expirationSeconds")),
        Column("Condition", "string", Doc("io.k8s.api.certificates.v1.CertificateSigningRequestStatus",
                                          "conditions")),
    ), _csr),
    ("coordination.k8s.io", "Lease"): Printer((
        NAME, Column("Holder", "string", "holderIdentity contains the identity of the holder of a current lease."),
        AGE,
    ), _lease),
    (_RBAC, "RoleBinding"): Printer(_bindings(_RB_ROLE, "roleBinding"), _binding),
    (_RBAC, "ClusterRoleBinding"): Printer(_bindings(_CRB_ROLE, "clusterRoleBinding"), _binding),
    (_RBAC, "Role"): DEFAULT_CONVERTOR,
    (_RBAC, "ClusterRole"): DEFAULT_CONVERTOR,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): DEFAULT_CONVERTOR,
    ("apiregistration.k8s.io", "APIService"): Printer((
        NAME, Column("Service", "string", "The reference to the service that hosts this API endpoint."),
        Column("Available", "string", "Whether this service is available."), AGE,
    ), _api_service),
}


def printer_for(group: str, kind: str) -> Printer | None:
    """The built-in printer of a kind; None when the kind has none (custom resources and kinds
    printed like them: Name + Age, built by the caller)."""
    return PRINTERS.get((group, kind))
