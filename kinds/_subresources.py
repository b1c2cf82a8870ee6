"""The generic subresource semantics, driven by the kind's definition. Pure functions on JSON objects.

- the status/spec split (kube's status strategies): a write to the main resource keeps the stored
  status; a write to ``/status`` keeps everything but status (and the metadata the definition
  names); a create stores the definition's initial status;
- ``metadata.generation``: 1 on create, +1 on every change outside metadata and status;
- ``/scale`` (``autoscaling/v1`` Scale) of the kinds with replicas;
- ``pods/binding``, ``pods/ephemeralcontainers``, ``certificatesigningrequests/approval``, and the
  PodDisruptionBudget arithmetic of ``pods/eviction``.

The resource actor calls these; messages are kube-apiserver's.
"""

from __future__ import annotations

import copy
from typing import Any

from ._defs import ResourceDef
from ._errors import BadRequest, Cause, Conflict, Forbidden, TooManyRequests, invalid

SCALE_API_VERSION = "autoscaling/v1"
# kube's MaxDisruptedPodSize: evictions not yet confirmed by the disruption controller.
MAX_DISRUPTED_PODS = 2000
DISRUPTION_BUDGET_CAUSE = "DisruptionBudget"


# ---- status/spec split and generation ------------------------------------------------------------


def prepare_create(rdef: ResourceDef, obj: dict[str, Any]) -> None:
    """Status and generation of a new object, as the kind's PrepareForCreate sets them."""
    if rdef.has_status and rdef.initial_status is not None:
        obj["status"] = copy.deepcopy(rdef.initial_status)
    elif rdef.has_status and rdef.crd:
        obj.pop("status", None)  # a custom resource's status is written through /status only
    if rdef.generation:
        obj["metadata"]["generation"] = 1


def prepare_update(rdef: ResourceDef, subresource: str, new: dict[str, Any], old: dict[str, Any],
                   now: str = "") -> None:
    """What a write through the main resource or a subresource may change; the rest is carried
    over from ``old`` into ``new``. Then the generation, counted on the final object."""
    if subresource == "status":
        _only_status(rdef, new, old)
    elif subresource == "ephemeralcontainers":
        _only_field(new, old, "spec", "ephemeralContainers")
    elif subresource == "approval":
        _only_field(new, old, "status", "conditions")
    elif rdef.has_status:
        if "status" in old:
            new["status"] = copy.deepcopy(old["status"])
        else:
            new.pop("status", None)
    if "approval" in rdef.subresources and subresource in ("approval", "status") and now:
        populate_condition_timestamps(new, old, now)  # a CSR's conditions
    if rdef.generation and subresource not in _NO_GENERATION:
        set_generation(rdef, new, old)
    elif rdef.generation:
        new["metadata"]["generation"] = old["metadata"].get("generation", 1)


# Writes that never count as a spec change: kube's status strategies, and the binding (which
# writes the pod directly, without its update strategy).
_NO_GENERATION = frozenset({"status", "approval", "binding"})


def _only_status(rdef: ResourceDef, new: dict[str, Any], old: dict[str, Any]) -> None:
    status = new.get("status")
    meta = new["metadata"]
    for k in list(new):
        if k not in ("metadata", "status", "apiVersion", "kind"):
            del new[k]
    for k, v in old.items():
        if k not in ("metadata", "status", "apiVersion", "kind"):
            new[k] = copy.deepcopy(v)
    if status is None:
        new.pop("status", None)
    for f in rdef.status_resets_metadata:
        if f in old["metadata"]:
            meta[f] = copy.deepcopy(old["metadata"][f])
        else:
            meta.pop(f, None)


def _only_field(new: dict[str, Any], old: dict[str, Any], top: str, field: str) -> None:
    """``new`` becomes ``old`` but for ``<top>.<field>`` (and the metadata the write brought)."""
    value = (new.get(top) or {}).get(field) if isinstance(new.get(top), dict) else None
    meta = new["metadata"]
    new.clear()
    new.update(copy.deepcopy(old))
    new["metadata"] = meta
    part = new.setdefault(top, {})
    if value is None:
        part.pop(field, None)
    else:
        part[field] = value


def set_generation(rdef: ResourceDef, new: dict[str, Any], old: dict[str, Any]) -> None:
    """+1 when anything outside metadata and status changed (and the annotations, for the kinds
    whose generation counts them); never on a status-only write."""
    def body(o: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in o.items() if k not in ("metadata", "status", "apiVersion", "kind")}

    om, nm = old["metadata"], new["metadata"]
    changed = body(new) != body(old)
    if rdef.generation_annotations and (nm.get("annotations") or {}) != (om.get("annotations") or {}):
        changed = True
    nm["generation"] = int(om.get("generation") or 1) + (1 if changed else 0)


# ---- scale ------------------------------------------------------------------------------------------


def format_label_selector(selector: Any) -> str:
    """A ``LabelSelector`` as ``metav1.LabelSelectorAsSelector(...).String()``: terms sorted by key,
    ``k=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k``, ``!k``."""
    if not isinstance(selector, dict):
        return ""
    terms: list[tuple[str, str]] = []
    for k, v in sorted((selector.get("matchLabels") or {}).items()):
        terms.append((k, f"{k}={v}"))
    for e in selector.get("matchExpressions") or []:
        if not isinstance(e, dict):
            continue
        key, op, values = e.get("key", ""), e.get("operator", ""), sorted(set(e.get("values") or []))
        if op == "In":
            terms.append((key, f"{key} in ({','.join(values)})"))
        elif op == "NotIn":
            terms.append((key, f"{key} notin ({','.join(values)})"))
        elif op == "Exists":
            terms.append((key, key))
        elif op == "DoesNotExist":
            terms.append((key, "!" + key))
    terms.sort(key=lambda t: t[0])
    return ",".join(t for _, t in terms)


def _path_get(obj: Any, path: str) -> Any:
    for part in path.strip(".").split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def scale_selector(rdef: ResourceDef, obj: dict[str, Any]) -> str:
    if rdef.scale_paths:
        sel = _path_get(obj, rdef.scale_paths[2]) if rdef.scale_paths[2] else None
        return sel if isinstance(sel, str) else ""
    selector = (obj.get("spec") or {}).get("selector")
    if rdef.scale_selector == "map":
        return ",".join(f"{k}={v}" for k, v in sorted((selector or {}).items())) if isinstance(selector, dict) else ""
    return format_label_selector(selector)


def to_scale(rdef: ResourceDef, obj: dict[str, Any], resource_version: str) -> dict[str, Any]:
    """The ``autoscaling/v1`` Scale of an object with replicas (kube's scaleFromDeployment & co)."""
    meta = obj["metadata"]
    out_meta = {k: meta[k] for k in ("name", "namespace", "uid") if k in meta}
    out_meta["resourceVersion"] = resource_version
    if "creationTimestamp" in meta:
        out_meta["creationTimestamp"] = meta["creationTimestamp"]
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    replicas = spec.get("replicas")
    scale_status: dict[str, Any] = {"replicas": status.get("replicas") or 0}
    if rdef.scale_paths:  # a custom resource: the CRD's specReplicasPath and statusReplicasPath
        replicas = _path_get(obj, rdef.scale_paths[0])
        scale_status = {"replicas": _path_get(obj, rdef.scale_paths[1]) or 0}
    scale_spec = {"replicas": replicas} if replicas else {}
    selector = scale_selector(rdef, obj)
    if selector:
        scale_status["selector"] = selector
    return {"kind": "Scale", "apiVersion": SCALE_API_VERSION, "metadata": out_meta, "spec": scale_spec,
            "status": scale_status}


def apply_scale(rdef: ResourceDef, obj: dict[str, Any], scale: Any) -> dict[str, Any]:
    """``obj`` with the replicas of a written Scale (validated as kube's ValidateScale)."""
    if not isinstance(scale, dict) or not isinstance(scale.get("metadata", {}), dict):
        raise BadRequest("the body of the request must be a Scale object")
    kind, api_version = scale.get("kind"), scale.get("apiVersion")
    if kind not in (None, "", "Scale") or api_version not in (None, "", SCALE_API_VERSION):
        raise BadRequest(f"the kind in the body ({api_version}, Kind={kind}) does not match the expected "
                         f"{SCALE_API_VERSION}, Kind=Scale")
    name = (scale.get("metadata") or {}).get("name") or ""
    spec = scale.get("spec") or {}
    if not isinstance(spec, dict):
        raise BadRequest("Scale in version \"v1\" cannot be handled as a Scale: spec must be an object")
    replicas = spec.get("replicas", 0)
    if replicas is None:
        replicas = 0
    if isinstance(replicas, bool) or not isinstance(replicas, int) or not -2**31 <= replicas < 2**31:
        raise BadRequest(f'Scale in version "v1" cannot be handled as a Scale: json: cannot unmarshal '
                         f'{type(replicas).__name__} into Go struct field ScaleSpec.spec.replicas of type int32')
    if replicas < 0:
        raise invalid("Scale", name, [Cause("FieldValueInvalid", f"Invalid value: {replicas}: must be greater "
                                                                 f"than or equal to 0", "spec.replicas")],
                      group="autoscaling")
    new = copy.deepcopy(obj)
    if rdef.scale_paths:
        parts = rdef.scale_paths[0].strip(".").split(".")
        cur = new
        for part in parts[:-1]:
            nxt = cur.get(part)
            if not isinstance(nxt, dict):
                nxt = cur[part] = {}
            cur = nxt
        cur[parts[-1]] = replicas
        return new
    new.setdefault("spec", {})["replicas"] = replicas
    return new


# ---- pods/binding, ephemeralcontainers, approval ------------------------------------------------------


def bind(pod: dict[str, Any], binding: Any, name: str) -> dict[str, Any]:
    """The pod with ``spec.nodeName`` set from a Binding (kube's BindingREST): once only."""
    if not isinstance(binding, dict):
        raise BadRequest("the body of the request must be a Binding object")
    meta = binding.get("metadata") or {}
    if not isinstance(meta, dict) or (meta.get("name") or "") != name:
        raise BadRequest("name in URL does not match name in Binding object")
    target = binding.get("target") or {}
    if not isinstance(target, dict):
        raise BadRequest("target must be an ObjectReference")
    causes = []
    if target.get("kind") not in (None, "", "Node"):
        causes.append(Cause("FieldValueNotSupported", f'Unsupported value: "{target.get("kind")}": supported '
                                                      f'values: "Node", ""', "target.kind"))
    if not target.get("name"):
        causes.append(Cause("FieldValueRequired", "Required value", "target.name"))
    if causes:
        raise invalid("Binding", name, causes)
    pm = pod["metadata"]
    if pm.get("deletionTimestamp"):
        raise _binding_conflict(name, f"pod {name} is being deleted, cannot be assigned to a host")
    node = (pod.get("spec") or {}).get("nodeName")
    if node:
        raise _binding_conflict(name, f'pod {name} is already assigned to node "{node}"')
    new = copy.deepcopy(pod)
    new.setdefault("spec", {})["nodeName"] = target["name"]
    annotations = meta.get("annotations")
    if isinstance(annotations, dict) and annotations:
        new["metadata"].setdefault("annotations", {}).update(annotations)
    return new


def _binding_conflict(name: str, why: str) -> Conflict:
    return Conflict(f'Operation cannot be fulfilled on pods/binding "{name}": {why}', name=name,
                    kind="pods/binding")


def validate_update(subresource: str, new: dict[str, Any], old: dict[str, Any]) -> list[Cause]:
    """What a subresource's write must satisfy beyond the kind's own validation."""
    if subresource == "approval":
        return validate_approval(new)
    if subresource == "ephemeralcontainers":
        return validate_ephemeral_containers(new, old)
    return []


def validate_ephemeral_containers(new: dict[str, Any], old: dict[str, Any]) -> list[Cause]:
    """Ephemeral containers may be added, never removed or changed (kube's
    ValidatePodEphemeralContainersUpdate)."""
    path = "spec.ephemeralContainers"
    now = {c.get("name"): c for c in (new.get("spec") or {}).get("ephemeralContainers") or []
           if isinstance(c, dict)}
    causes = []
    for c in (old.get("spec") or {}).get("ephemeralContainers") or []:
        name = c.get("name")
        if name not in now:
            causes.append(Cause("FieldValueForbidden", f'Forbidden: existing ephemeral containers "{name}" may not '
                                                       f"be removed\n", path))
        elif now[name] != c:
            causes.append(Cause("FieldValueForbidden", f'Forbidden: existing ephemeral containers "{name}" may not '
                                                       f"be changed\n", path))
    return causes


def populate_condition_timestamps(new: dict[str, Any], old: dict[str, Any], now: str) -> None:
    """A CSR's conditions get ``lastUpdateTime`` now and ``lastTransitionTime`` now, or the old one
    for an unchanged type and status (kube's populateConditionTimestamps)."""
    before = [c for c in (old.get("status") or {}).get("conditions") or [] if isinstance(c, dict)]
    for c in (new.get("status") or {}).get("conditions") or []:
        if not isinstance(c, dict):
            continue
        if not c.get("lastUpdateTime"):
            c["lastUpdateTime"] = now
        if not c.get("lastTransitionTime"):
            c["lastTransitionTime"] = next(
                (o["lastTransitionTime"] for o in before if o.get("type") == c.get("type") and
                 o.get("status") == c.get("status") and o.get("lastTransitionTime")), now)


def validate_approval(obj: dict[str, Any]) -> list[Cause]:
    """A CSR's conditions as the approval subresource accepts them: Approved and Denied not both."""
    conditions = (obj.get("status") or {}).get("conditions") or []
    types = [c.get("type") for c in conditions if isinstance(c, dict)]
    causes = []
    if "Approved" in types and "Denied" in types:
        causes.append(Cause("FieldValueInvalid", "Invalid value: \"Approved\": Approved and Denied conditions "
                                                 "are mutually exclusive", "status.conditions[1].type"))
    for i, c in enumerate(conditions):
        if isinstance(c, dict) and not c.get("type"):
            causes.append(Cause("FieldValueRequired", "Required value", f"status.conditions[{i}].type"))
    return causes


# ---- pods/eviction -----------------------------------------------------------------------------------


def can_ignore_pdb(pod: dict[str, Any]) -> bool:
    """kube's canIgnorePDB: a terminal or pending pod, or one being deleted, is evicted at once."""
    phase = (pod.get("status") or {}).get("phase")
    return phase in ("Succeeded", "Failed", "Pending") or bool(pod["metadata"].get("deletionTimestamp"))


def check_eviction(eviction: Any, name: str) -> dict[str, Any]:
    """The Eviction body, checked: its name is the pod's."""
    if not isinstance(eviction, dict):
        raise BadRequest("the body of the request must be an Eviction object")
    meta = eviction.get("metadata") or {}
    if not isinstance(meta, dict) or (meta.get("name") or "") != name:
        raise BadRequest("name in URL does not match name in Eviction object")
    return eviction


def decrement_budget(pdb: dict[str, Any], pod_name: str, now: str) -> dict[str, Any]:
    """The PDB after one more disruption (kube's checkAndDecrement), or the error that refuses it."""
    pdb_name = pdb["metadata"]["name"]
    status = pdb.get("status") or {}
    if int(status.get("observedGeneration") or 0) < int(pdb["metadata"].get("generation") or 0):
        why = f"The disruption budget {pdb_name} is still being processed by the server."
        raise TooManyRequests("Cannot evict pod as it would violate the pod's disruption budget. " + why,
                              causes=(Cause(DISRUPTION_BUDGET_CAUSE, why),), retry_after_s=10)
    allowed = int(status.get("disruptionsAllowed") or 0)
    if allowed < 0:
        raise Forbidden(f'poddisruptionbudget.policy "{pdb_name}" is forbidden: pdb disruptions allowed is '
                        f"negative", name=pdb_name, group="policy", kind="poddisruptionbudget")
    if len(status.get("disruptedPods") or {}) > MAX_DISRUPTED_PODS:
        raise Forbidden(f'poddisruptionbudget.policy "{pdb_name}" is forbidden: DisruptedPods map too big - too '
                        f"many evictions not confirmed by PDB controller", name=pdb_name, group="policy",
                        kind="poddisruptionbudget")
    if allowed == 0:
        raise TooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.",
                              causes=(Cause(DISRUPTION_BUDGET_CAUSE,
                                            f"The disruption budget {pdb_name} needs "
                                            f"{int(status.get('desiredHealthy') or 0)} healthy pods and has "
                                            f"{int(status.get('currentHealthy') or 0)} currently"),))
    new = copy.deepcopy(pdb)
    st = new.setdefault("status", {})
    st["disruptionsAllowed"] = allowed - 1
    if allowed - 1 == 0:
        _set_condition(st, {"type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods",
                            "message": "", "lastTransitionTime": now,
                            "observedGeneration": st.get("observedGeneration", 0)})
    st.setdefault("disruptedPods", {})[pod_name] = now
    return new


def _set_condition(status: dict[str, Any], cond: dict[str, Any]) -> None:
    conditions = [c for c in status.get("conditions") or [] if isinstance(c, dict)]
    for i, c in enumerate(conditions):
        if c.get("type") == cond["type"]:
            if c.get("status") == cond["status"]:
                cond["lastTransitionTime"] = c.get("lastTransitionTime", cond["lastTransitionTime"])
            conditions[i] = cond
            break
    else:
        conditions.append(cond)
    status["conditions"] = conditions
