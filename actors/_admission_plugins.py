"""kube-apiserver's built-in admission plugins, for the kinds jetkube serves.

Mutating (in kube's order): LimitRanger (defaults), ServiceAccount (the default service account
and the projected API token volume on pods, as kube 1.33 writes them), Priority
(``priorityClassName`` -> ``priority``, the ``globalDefault`` class), DefaultTolerationSeconds,
DefaultStorageClass, StorageObjectInUseProtection. Validating: LimitRanger (bounds),
PersistentVolumeClaimResize, CertificateApproval, CertificateSigning,
CertificateSubjectRestriction, PodSecurity, ResourceQuota (charges decided with
compare-and-swap on the quota's log subject, so that two gateways can never both take the last
unit). NamespaceLifecycle lives in actors/_admission.py; the storage plugins in
_admission_storage.py, the certificate ones in _admission_certs.py, PodSecurity in
_admission_podsecurity.py; the quota controller that returns leaked charges in
_quota_controller.py.
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict
from typing import Any

import msgspec

from bus import Key
from kinds import Registry
from kinds._errors import Forbidden
from kinds._quantity import canonical_quantity, parse_quantity
from projections import Projection

from ._admission import Attributes

log = logging.getLogger("jetkube.admission")

_decode = msgspec.json.decode
_RAND_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand
TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_VOLUME_PREFIX = "kube-api-access-"
DEFAULT_SA_WAIT_S = 2.0  # the longest a pod create waits for its namespace's default ServiceAccount
_SYSTEM_PRIORITY_CLASSES = {"system-cluster-critical": 2_000_000_000, "system-node-critical": 2_000_001_000}


def _is_pod_create(a: Attributes) -> bool:
    return a.operation == "CREATE" and not a.subresource and a.rdef.group == "" and a.rdef.plural == "pods"


def _forbidden(a: Attributes, why: str) -> Forbidden:
    r = a.rdef
    resource = f"{r.plural}.{r.group}" if r.group else r.plural
    return Forbidden(f'{resource} "{a.name}" is forbidden: {why}', name=a.name, group=r.group, kind=r.plural)


def _pod_name(a: Attributes, pod: dict[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return str(meta.get("name") or meta.get("generateName") or a.name)


class ServiceAccount:
    """kube's ServiceAccount plugin on pod creates: ``serviceAccountName`` defaults to "default"
    (also written to the deprecated ``serviceAccount``), the account must exist, and unless the
    pod or the account opts out of automounting, a ``kube-api-access-<5>`` projected volume (a
    bound token, the cluster CA, the namespace) is added and mounted read-only at
    /var/run/secrets/kubernetes.io/serviceaccount in every container and init container that
    does not mount something there already."""

    def __init__(self, projection: Projection) -> None:
        self.projection = projection

    async def admit(self, a: Attributes, obj: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        if obj is None or not _is_pod_create(a):
            return
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        meta = obj.get("metadata") or {}
        if "kubernetes.io/config.mirror" in (meta.get("annotations") or {}):
            return
        name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        spec["serviceAccountName"] = name
        spec["serviceAccount"] = name  # kube's conversion writes the deprecated alias alongside
        key = Key(a.tenant, "", "serviceaccounts", a.namespace, str(name))
        entry = self.projection.get(key)
        if entry is None:
            await self.projection.consistent()
            entry = self.projection.get(key)
        if entry is None and name == "default":
            # The serviceaccounts controller makes it moments after the namespace: kube looks it
            # up 10 times, 100-200 ms apart, before refusing the pod; we wait as long for it.
            entry = await self.projection.wait_for_entry(key, DEFAULT_SA_WAIT_S)
        if entry is None:
            raise _forbidden(a, f'error looking up service account {a.namespace}/{name}: serviceaccount "{name}" '
                                f"not found")
        sa = _decode(entry.data)
        automount = spec.get("automountServiceAccountToken")
        if automount is None:
            automount = sa.get("automountServiceAccountToken")
        if automount is False:
            return
        volumes = spec.get("volumes")
        if not isinstance(volumes, list):
            volumes = spec["volumes"] = []
        existing = {v.get("name") for v in volumes if isinstance(v, dict)}
        volume = TOKEN_VOLUME_PREFIX + "".join(secrets.choice(_RAND_CHARS) for _ in range(5))
        while volume in existing:
            volume = TOKEN_VOLUME_PREFIX + "".join(secrets.choice(_RAND_CHARS) for _ in range(5))
        mounted = False
        for field in ("initContainers", "containers"):
            for c in spec.get(field) or []:
                if not isinstance(c, dict):
                    continue
                mounts = c.get("volumeMounts")
                if not isinstance(mounts, list):
                    mounts = c["volumeMounts"] = []
                if any(isinstance(m, dict) and m.get("mountPath") == TOKEN_MOUNT_PATH for m in mounts):
                    continue
                mounts.append({"name": volume, "readOnly": True, "mountPath": TOKEN_MOUNT_PATH})
                mounted = True
        if mounted:
            volumes.append({"name": volume, "projected": {"sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1",
                                                                               "fieldPath": "metadata.namespace"}}]}},
            ], "defaultMode": 420}})


class Priority:
    """kube's Priority plugin on pod creates: ``priorityClassName`` resolved to ``priority`` (and
    ``preemptionPolicy``), the ``globalDefault`` class for pods that name none, 0 without one."""

    def __init__(self, projection: Projection) -> None:
        self.projection = projection

    async def admit(self, a: Attributes, obj: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        if obj is None or not _is_pod_create(a) or not isinstance(obj.get("spec"), dict):
            return
        spec = obj["spec"]
        state = self.projection.state(a.tenant, "scheduling.k8s.io", "priorityclasses")
        name = spec.get("priorityClassName")
        pc: dict[str, Any] | None = None
        if name:
            entry = state.get("", str(name))
            if entry is None:
                await self.projection.consistent()
                entry = state.get("", str(name))
            if entry is not None:
                pc = _decode(entry.data)
            elif name in _SYSTEM_PRIORITY_CLASSES:
                pc = {"value": _SYSTEM_PRIORITY_CLASSES[name], "preemptionPolicy": "PreemptLowerPriority"}
            else:
                raise _forbidden(a, f"no PriorityClass with name {name} was found")
        else:
            defaults = [_decode(e.data) for _ns, _n, e in state.iter_entries("")]
            defaults = [d for d in defaults if d.get("globalDefault")]
            if defaults:
                pc = min(defaults, key=lambda d: d.get("value", 0))
                spec["priorityClassName"] = pc["metadata"]["name"]
        value = int(pc.get("value", 0)) if pc else 0
        given = spec.get("priority")
        if given is not None and given != value:
            raise _forbidden(a, f"the integer value of priority ({given}) must not be provided in pod spec; priority "
                                f"admission controller computed {value} from the given PriorityClass name")
        spec["priority"] = value
        if pc and pc.get("preemptionPolicy"):
            given_pp = spec.get("preemptionPolicy")
            if given_pp is not None and given_pp != pc["preemptionPolicy"]:
                raise _forbidden(a, f"the string value of PreemptionPolicy ({given_pp}) must not be provided in pod "
                                    f"spec; priority admission controller computed {pc['preemptionPolicy']} from "
                                    f"the given PriorityClass name")
            spec["preemptionPolicy"] = pc["preemptionPolicy"]


class DefaultTolerationSeconds:
    """Pods tolerate ``node.kubernetes.io/not-ready`` and ``unreachable`` (NoExecute) for 300 s
    unless they say otherwise."""

    async def admit(self, a: Attributes, obj: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        if obj is None or not _is_pod_create(a) or not isinstance(obj.get("spec"), dict):
            return
        spec = obj["spec"]
        tolerations = spec.get("tolerations")
        if not isinstance(tolerations, list):
            tolerations = []
        for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
            if any(isinstance(t, dict) and (t.get("key") == key or (not t.get("key") and t.get("operator") == "Exists"))
                   and t.get("effect") in (None, "", "NoExecute") for t in tolerations):
                continue
            tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})
        spec["tolerations"] = tolerations


# ---- ResourceQuota ----------------------------------------------------------------------------------

_COUNTED = {("", "pods"): "pods", ("", "services"): "services", ("", "configmaps"): "configmaps",
            ("", "secrets"): "secrets", ("", "persistentvolumeclaims"): "persistentvolumeclaims",
            ("", "replicationcontrollers"): "replicationcontrollers", ("", "resourcequotas"): "resourcequotas"}
_POD_COMPUTE = {"requests.cpu": ("requests", "cpu"), "cpu": ("requests", "cpu"),
                "requests.memory": ("requests", "memory"), "memory": ("requests", "memory"),
                "limits.cpu": ("limits", "cpu"), "limits.memory": ("limits", "memory")}


_CLASS_SUFFIX = ".storageclass.storage.k8s.io/"
_BETA_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"


def claim_class(pvc: dict[str, Any]) -> str:
    """kube's ``GetPersistentVolumeClaimClass``: the beta annotation first, then the field."""
    annotations = (pvc.get("metadata") or {}).get("annotations") or {}
    if isinstance(annotations, dict) and _BETA_CLASS_ANNOTATION in annotations:
        return str(annotations[_BETA_CLASS_ANNOTATION])
    name = (pvc.get("spec") or {}).get("storageClassName") if isinstance(pvc.get("spec"), dict) else None
    return name if isinstance(name, str) else ""


def is_claim_usage(key: str) -> bool:
    """A quota key a PersistentVolumeClaim counts against (besides the object counts)."""
    return key == "requests.storage" or key.endswith((f"{_CLASS_SUFFIX}requests.storage",
                                                       f"{_CLASS_SUFFIX}persistentvolumeclaims"))


def _pod_counted(pod: dict[str, Any]) -> bool:
    """kube's ``QuotaV1Pod``: a pod in a terminal phase (Succeeded, Failed) no longer counts."""
    return ((pod.get("status") or {}).get("phase") if isinstance(pod.get("status"), dict) else None) not in (
        "Succeeded", "Failed")


def usage_of(group: str, plural: str, obj: dict[str, Any] | None) -> dict[str, Any]:
    """What one object of (group, plural) counts against a quota, by quota resource name."""
    count_name = f"count/{plural}.{group}" if group else f"count/{plural}"
    out: dict[str, Any] = {count_name: 1}
    if (group, plural) == ("", "pods") and isinstance(obj, dict) and not _pod_counted(obj):
        return out  # count/pods tracks every stored pod; "pods" and compute only live ones (kube's)
    if (group, plural) in _COUNTED:
        out[_COUNTED[(group, plural)]] = 1
    if (group, plural) == ("", "persistentvolumeclaims") and isinstance(obj, dict):
        storage: Any = obj
        for part in ("spec", "resources", "requests", "storage"):
            storage = storage.get(part) if isinstance(storage, dict) else None
        size = parse_quantity(storage) if isinstance(storage, str) else None
        if size:
            out["requests.storage"] = size
        cls = claim_class(obj)
        if cls:
            out[f"{cls}{_CLASS_SUFFIX}persistentvolumeclaims"] = 1
            if size:
                out[f"{cls}{_CLASS_SUFFIX}requests.storage"] = size
    if (group, plural) == ("", "pods") and isinstance(obj, dict):
        spec = obj.get("spec") or {}
        for quota_name, (kind, res) in _POD_COMPUTE.items():
            total = 0
            for c in spec.get("containers") or []:
                q = parse_quantity(((c.get("resources") or {}).get(kind) or {}).get(res)) if isinstance(c, dict) \
                    else None
                if q is None and kind == "requests" and isinstance(c, dict):
                    q = parse_quantity(((c.get("resources") or {}).get("limits") or {}).get(res))
                total += q or 0
            if total:
                out[quota_name] = total
    return out


class ResourceQuota:
    """Object counts and pod compute resources charged to every ResourceQuota of the namespace.

    Invariant: a charge is an update of the quota's ``status.used`` appended with CAS on the
    version it was decided against (the resource actor's retry loop): concurrent creates on any
    gateways serialise on the quota's subject, so ``used`` never passes ``hard``. A charge is
    made before the object is appended; a write that fails after it leaves the charge behind until
    the quota controller (actors/_quota_controller.py) recounts the namespace, as kube's does."""

    #: Update and delete requests charged, remembered so that one decided again (its object
    #: changed meanwhile: the resource actor's retry loop) is not charged (refunded) twice.
    REMEMBERED = 4096

    def __init__(self, projection: Projection) -> None:
        self.projection = projection
        self.core: Any = None  # the ResourceCore, attached by the pipeline (its CAS retry loop)
        self._once: OrderedDict[tuple[str, str], None] = OrderedDict()

    async def validate(self, a: Attributes, obj: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        if self.core is None or a.subresource or not a.rdef.namespaced or a.operation not in (
                "CREATE", "DELETE", "UPDATE"):
            return
        state = self.projection.state(a.tenant, "", "resourcequotas")
        if not state.by_ns.get(a.namespace):
            return
        if a.operation == "UPDATE":
            # Only a claim's growth is charged on update (kube charges the increase; what an
            # update frees is returned by the quota controller's recount).
            if (a.rdef.group, a.rdef.plural) != ("", "persistentvolumeclaims") or obj is None or old is None:
                return
            before = usage_of("", "persistentvolumeclaims", old)
            grown = {k: v - before.get(k, 0) for k, v in usage_of("", "persistentvolumeclaims", obj).items()
                     if v > before.get(k, 0)}
            for name in list(state.sorted_names(a.namespace)) if grown else ():
                await self._charge_once(a, name, grown, 1)
            return
        if a.operation == "DELETE" and ((old or {}).get("metadata") or {}).get("deletionTimestamp"):
            return  # refunded when it was marked for deletion (the quota controller counts alike)
        delta = usage_of(a.rdef.group, a.rdef.plural, obj if a.operation == "CREATE" else old)
        sign = 1 if a.operation == "CREATE" else -1
        for name in list(state.sorted_names(a.namespace)):
            if sign < 0:
                await self._charge_once(a, name, delta, sign)
            else:
                await self._charge(a, name, delta, sign)

    async def _charge_once(self, a: Attributes, quota: str, delta: dict[str, Any], sign: int) -> None:
        """A charge an update or a delete makes: in the resource actor's retry loop, the same
        request may be decided again, and is charged (refunded) only the first time."""
        if (a.uid, quota) in self._once:
            return
        if await self._charge(a, quota, delta, sign) and not a.dry_run:
            self._once[(a.uid, quota)] = None
            if len(self._once) > self.REMEMBERED:
                self._once.popitem(last=False)

    async def _charge(self, a: Attributes, quota: str, delta: dict[str, Any], sign: int) -> bool:
        """Charge (``sign`` 1) or refund (-1) ``delta`` to ``quota``; False: the quota is gone."""
        from ._decide import NoChange  # the resource actor's no-op decision
        from .messages import Request

        core = self.core
        rdef = core.registry.by_resource("", "resourcequotas")
        req = Request(verb="update", rdef=rdef, tenant=a.tenant, namespace=a.namespace, name=quota,
                      subresource="status", user=a.user, audit_id=f"{a.uid}:quota")
        key = Key(a.tenant, "", "resourcequotas", a.namespace, quota)

        async def decide(entry: Any, current: dict[str, Any] | None) -> Any:
            if entry is None or current is None:
                raise _QuotaGone
            hard = (current.get("spec") or {}).get("hard") or {}
            charged = {k: v for k, v in delta.items() if k in hard}
            if not charged:
                return NoChange(entry)
            status = current.setdefault("status", {})
            used = dict(status.get("used") or {})
            new_used = dict(used)
            for k, v in charged.items():
                now = parse_quantity(used[k]) or 0 if k in used else self._recount(a, k)
                new_used[k] = max(now + sign * v, 0)
            if sign > 0:
                over = [k for k in sorted(charged) if new_used[k] > (parse_quantity(hard[k]) or 0)]
                if over:
                    raise _forbidden(a, "exceeded quota: {}, requested: {}, used: {}, limited: {}".format(
                        quota, ",".join(f"{k}={_fmt(charged[k], k)}" for k in over),
                        ",".join(f"{k}={_fmt(new_used[k] - charged[k], k)}" for k in over),
                        ",".join(f"{k}={hard[k]}" for k in over)))
            if a.dry_run:
                return NoChange(entry)  # checked as kube does on a dry run, never charged
            status["hard"] = dict(hard)
            status["used"] = {k: v if isinstance(v, str) else _fmt(v, k) for k, v in new_used.items()}
            current["metadata"].pop("resourceVersion", None)
            return ("put", current)

        try:
            await core.guaranteed_update(req, key, decide)
        except _QuotaGone:
            return False
        return True

    def _recount(self, a: Attributes, resource: str) -> Any:
        """A quota resource not yet in ``status.used``: the usage of what the namespace holds
        (kube's quota controller fills it in when a quota is created)."""
        total: Any = 0
        for _ns, _name, entry in self.projection.state(a.tenant, a.rdef.group, a.rdef.plural).iter_entries(
                a.namespace):
            obj = _decode(entry.data)
            if not (obj.get("metadata") or {}).get("deletionTimestamp"):  # as the quota controller counts
                total += usage_of(a.rdef.group, a.rdef.plural, obj).get(resource, 0)
        return total


class _QuotaGone(Exception):
    """The quota was deleted while a charge was being decided: nothing to charge."""


_BINARY = ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei")


def _fmt(v: Any, key: str = "") -> str:
    """A usage as a quantity string: whole numbers as they are, fractions in milli-units; bytes
    (memory, storage) in the largest binary unit that holds them exactly, as kube's BinarySI."""
    if getattr(v, "denominator", 1) == 1:
        n = int(v)
        if n and ("memory" in key or "storage" in key):
            for i in range(len(_BINARY), 0, -1):
                if n % (1024 ** i) == 0:
                    return f"{n // 1024 ** i}{_BINARY[i - 1]}"
        return str(n)
    return canonical_quantity(f"{int(v * 1000)}m") or str(v)


# ---- LimitRanger ------------------------------------------------------------------------------------


def _quantity_text(v: Any) -> str:
    return v if isinstance(v, str) else str(v)


class LimitRanger:
    """kube's LimitRanger for pods: each container's missing ``limits`` and ``requests`` come
    from the namespace's LimitRanges (``type: Container``, ``default`` and ``defaultRequest``),
    recorded in the ``kubernetes.io/limit-ranger`` annotation; then ``min``, ``max`` and
    ``maxLimitRequestRatio`` are enforced (403, kube's messages)."""

    def __init__(self, projection: Projection) -> None:
        self.projection = projection

    def _ranges(self, a: Attributes) -> list[dict[str, Any]]:
        state = self.projection.state(a.tenant, "", "limitranges")
        out = []
        for _ns, _name, entry in state.iter_entries(a.namespace) if state.by_ns.get(a.namespace) else ():
            for item in (_decode(entry.data).get("spec") or {}).get("limits") or []:
                if isinstance(item, dict) and item.get("type") == "Container":
                    out.append(item)
        return out

    async def admit(self, a: Attributes, obj: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        if obj is None or not _is_pod_create(a) or not isinstance(obj.get("spec"), dict):
            return
        ranges = self._ranges(a)
        if not ranges:
            return
        notes: list[str] = []
        for field in ("initContainers", "containers"):
            for c in obj["spec"].get(field) or []:
                if not isinstance(c, dict):
                    continue
                res = c.get("resources")
                if not isinstance(res, dict):
                    res = c["resources"] = {}
                set_req: list[str] = []
                set_lim: list[str] = []
                for lr in ranges:
                    for src, kind, seen in (("defaultRequest", "requests", set_req), ("default", "limits", set_lim)):
                        for name, value in (lr.get(src) or {}).items():
                            current = res.get(kind)
                            if not isinstance(current, dict):
                                current = res[kind] = {}
                            if name not in current:
                                current[name] = _quantity_text(value)
                                seen.append(name)
                for kind, seen in (("requests", set_req), ("limits", set_lim)):
                    if not res.get(kind):
                        res.pop(kind, None)
                    if seen:
                        notes.append(f"{', '.join(sorted(seen))} {kind[:-1]} for {field[:-1].replace('initC', 'init c')} "
                                     f"{c.get('name', '')}")
        if notes:
            meta = obj.setdefault("metadata", {})
            annotations = meta.get("annotations")
            if not isinstance(annotations, dict):
                annotations = meta["annotations"] = {}
            annotations["kubernetes.io/limit-ranger"] = "LimitRanger plugin set: " + "; ".join(notes)

    async def validate(self, a: Attributes, obj: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        if obj is None or not _is_pod_create(a):
            return
        ranges = self._ranges(a)
        for lr in ranges:
            for c in [*(obj.get("spec", {}).get("initContainers") or []), *(obj.get("spec", {}).get("containers") or [])]:
                res = c.get("resources") or {}
                req, lim = res.get("requests") or {}, res.get("limits") or {}
                for name, bound in (lr.get("min") or {}).items():
                    b = parse_quantity(bound) or 0
                    if name not in req:
                        raise _forbidden(a, f"minimum {name} usage per Container is {bound}.  No request is specified")
                    if (parse_quantity(req[name]) or 0) < b:
                        raise _forbidden(a, f"minimum {name} usage per Container is {bound}, but request is "
                                            f"{req[name]}")
                for name, bound in (lr.get("max") or {}).items():
                    b = parse_quantity(bound) or 0
                    if name not in lim:
                        raise _forbidden(a, f"maximum {name} usage per Container is {bound}.  No limit is specified")
                    if (parse_quantity(lim[name]) or 0) > b:
                        raise _forbidden(a, f"maximum {name} usage per Container is {bound}, but limit is "
                                            f"{lim[name]}")
                for name, ratio in (lr.get("maxLimitRequestRatio") or {}).items():
                    if name in req and name in lim:
                        r_, l_ = parse_quantity(req[name]) or 0, parse_quantity(lim[name]) or 0
                        if r_ and l_ / r_ > (parse_quantity(ratio) or 0):
                            raise _forbidden(a, f"{name} max limit to request ratio per Container is {ratio}, but "
                                                f"provided ratio is {float(l_ / r_):f}")


# ---- DefaultStorageClass ----------------------------------------------------------------------------

_DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"


class DefaultStorageClass:
    """A PersistentVolumeClaim created without ``storageClassName`` gets the default StorageClass
    (annotated ``storageclass.kubernetes.io/is-default-class: "true"``; the newest when several)."""

    def __init__(self, projection: Projection) -> None:
        self.projection = projection

    async def admit(self, a: Attributes, obj: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        if obj is None or a.operation != "CREATE" or a.subresource or (a.rdef.group, a.rdef.plural) != (
                "", "persistentvolumeclaims"):
            return
        spec = obj.get("spec")
        if not isinstance(spec, dict) or spec.get("storageClassName") is not None:
            return
        state = self.projection.state(a.tenant, "storage.k8s.io", "storageclasses")
        defaults = []
        for _ns, name, entry in state.iter_entries(""):
            sc = _decode(entry.data)
            if ((sc.get("metadata") or {}).get("annotations") or {}).get(_DEFAULT_CLASS) == "true":
                defaults.append((sc["metadata"].get("creationTimestamp", ""), name))
        if defaults:
            spec["storageClassName"] = max(defaults)[1]


def mutating_plugins(projection: Projection, registry: Registry) -> tuple[Any, ...]:
    from ._admission_storage import StorageObjectInUseProtection

    return (LimitRanger(projection), ServiceAccount(projection), Priority(projection), DefaultTolerationSeconds(),
            DefaultStorageClass(projection), StorageObjectInUseProtection())


def validating_plugins(projection: Projection, registry: Registry) -> tuple[Any, ...]:
    """In kube's order (ResourceQuota last of the plugins)."""
    from ._admission_certs import CertificateApproval, CertificateSigning, CertificateSubjectRestriction
    from ._admission_podsecurity import PodSecurity
    from ._admission_storage import PersistentVolumeClaimResize

    return (LimitRanger(projection), PersistentVolumeClaimResize(projection), CertificateApproval(),
            CertificateSigning(), CertificateSubjectRestriction(), PodSecurity(projection), ResourceQuota(projection))
