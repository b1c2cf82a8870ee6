"""kube's mandatory and suggested APF objects (``apis/flowcontrol/bootstrap/default.go``, 1.33) and
their reconciliation (``pkg/registry/flowcontrol/ensurer``), per tenant.

- :func:`default_priority_levels` / :func:`default_flow_schemas`: the objects, as kube's numbers.
- :func:`reconcile`: what to write for one expected object given the current one (pure): create a
  missing one; overwrite the spec only while ``apf.kubernetes.io/autoupdate-spec`` is ``"true"``
  (an object without the annotation that a user never edited, generation 1, is taken over as kube
  does); mandatory objects always keep kube's spec unless the annotation says ``"false"``.
- :class:`ApfBootstrap`: writes them through the resource actor for a tenant. The tenancy
  bootstrap calls :meth:`ApfBootstrap.ensure` with each tenant it creates.
"""

from __future__ import annotations

import copy
import logging
import uuid
from typing import Any

import msgspec
import trio

from bus import BusError, Key
from kinds import FLOWCONTROL_GROUP, Registry
from kinds._errors import AlreadyExists, ApiError, Conflict, NotFound
from projections import Projection, ProjectionError

from ._controllers import SYSTEM_USER
from ._runtime import Actor
from .messages import Request

log = logging.getLogger("jetkube.controllers.apf")
AUTOUPDATE = "apf.kubernetes.io/autoupdate-spec"
API_VERSION = f"{FLOWCONTROL_GROUP}/v1"
_ALL = ["*"]


def _queue(queues: int, hand: int, qlen: int) -> dict[str, Any]:
    return {"type": "Queue", "queuing": {"queues": queues, "handSize": hand, "queueLengthLimit": qlen}}


def _limited(ncs: int, lendable: int, response: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Limited", "limited": {"nominalConcurrencyShares": ncs, "lendablePercent": lendable,
                                           "limitResponse": response}}


def _plc(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "PriorityLevelConfiguration",
            "metadata": {"name": name, "annotations": {AUTOUPDATE: "true"}}, "spec": spec}


MANDATORY_LEVELS = ("exempt", "catch-all")
MANDATORY_SCHEMAS = ("exempt", "catch-all")


def default_priority_levels() -> list[dict[str, Any]]:
    """kube 1.33's PriorityLevelConfigurations: mandatory (exempt, catch-all) then suggested.

    Numbers (nominalConcurrencyShares, lendablePercent, queues / handSize / queueLengthLimit) as in
    kubernetes/apiserver v0.33.9 ``pkg/apis/flowcontrol/bootstrap/default.go``."""
    return [
        _plc("exempt", {"type": "Exempt", "exempt": {"nominalConcurrencyShares": 0, "lendablePercent": 0}}),
        _plc("catch-all", _limited(5, 0, {"type": "Reject"})),
        _plc("system", _limited(30, 33, _queue(64, 6, 50))),
        _plc("node-high", _limited(40, 25, _queue(64, 6, 50))),
        _plc("leader-election", _limited(10, 0, _queue(16, 4, 50))),
        _plc("workload-high", _limited(40, 50, _queue(128, 6, 50))),
        _plc("workload-low", _limited(100, 90, _queue(128, 6, 50))),
        _plc("global-default", _limited(20, 50, _queue(128, 6, 50))),
    ]


def _users(*names: str) -> list[dict[str, Any]]:
    return [{"kind": "User", "user": {"name": n}} for n in names]


def _groups(*names: str) -> list[dict[str, Any]]:
    return [{"kind": "Group", "group": {"name": n}} for n in names]


def _sa(namespace: str, name: str) -> dict[str, Any]:
    return {"kind": "ServiceAccount", "serviceAccount": {"namespace": namespace, "name": name}}


def _rrule(verbs: list[str], groups: list[str], resources: list[str], namespaces: list[str] | None,
           cluster: bool) -> dict[str, Any]:
    r: dict[str, Any] = {"verbs": verbs, "apiGroups": groups, "resources": resources}
    if cluster:
        r["clusterScope"] = True
    if namespaces:
        r["namespaces"] = namespaces
    return r


_RSC_ALL = [_rrule(_ALL, _ALL, _ALL, _ALL, True)]
_NON_RSC_ALL = [{"verbs": _ALL, "nonResourceURLs": _ALL}]
_KCM, _SCHED = "system:kube-controller-manager", "system:kube-scheduler"


def _fs(name: str, level: str, precedence: int, dm: str, *rules: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"priorityLevelConfiguration": {"name": level}, "matchingPrecedence": precedence,
                            "rules": list(rules)}
    if dm:
        spec["distinguisherMethod"] = {"type": dm}
    return {"apiVersion": API_VERSION, "kind": "FlowSchema",
            "metadata": {"name": name, "annotations": {AUTOUPDATE: "true"}}, "spec": spec}


def _all(subjects: list[dict[str, Any]]) -> dict[str, Any]:
    return {"subjects": subjects, "resourceRules": copy.deepcopy(_RSC_ALL),
            "nonResourceRules": copy.deepcopy(_NON_RSC_ALL)}


def default_flow_schemas() -> list[dict[str, Any]]:
    """kube 1.33's FlowSchemas: mandatory (exempt, catch-all) then suggested.

    Checked rule by rule against kubernetes/apiserver v0.33.9 (= kube 1.33)
    ``pkg/apis/flowcontrol/bootstrap/default.go``: precedences, distinguishers, subjects, verbs,
    groups, resources, namespaces and clusterScope as there."""
    # system-leader-election matches leases only (1.33; endpoints and configmaps are
    # workload-leader-election's).
    leader = [_rrule(["get", "create", "update"], ["coordination.k8s.io"], ["leases"], _ALL, False)]
    workload_leader = [_rrule(["get", "create", "update"], [""], ["endpoints", "configmaps"], _ALL, False),
                       _rrule(["get", "create", "update"], ["coordination.k8s.io"], ["leases"], _ALL, False)]
    return [
        _fs("exempt", "exempt", 1, "", _all(_groups("system:masters"))),
        _fs("catch-all", "catch-all", 10000, "ByUser", _all(_groups("system:unauthenticated",
                                                                     "system:authenticated"))),
        _fs("probes", "exempt", 2, "", {
            "subjects": _groups("system:unauthenticated", "system:authenticated"),
            "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz", "/readyz", "/livez"]}]}),
        _fs("system-leader-election", "leader-election", 100, "ByUser", {
            "subjects": [*_users(_KCM, _SCHED), _sa("kube-system", "*")], "resourceRules": leader}),
        _fs("endpoint-controller", "workload-high", 150, "ByUser", {
            "subjects": [*_users(_KCM), _sa("kube-system", "endpoint-controller"),
                         _sa("kube-system", "endpointslicemirroring-controller")],
            "resourceRules": [_rrule(["get", "create", "update"], [""], ["endpoints"], _ALL, False)]}),
        _fs("workload-leader-election", "leader-election", 200, "ByUser", {
            "subjects": [_sa("kube-system", "*")], "resourceRules": workload_leader}),
        _fs("system-node-high", "node-high", 400, "ByUser", {
            "subjects": _groups("system:nodes"),
            "resourceRules": [_rrule(_ALL, [""], ["nodes", "nodes/status"], _ALL, True),
                              _rrule(_ALL, ["coordination.k8s.io"], ["leases"], _ALL, False)]}),
        _fs("system-nodes", "system", 500, "ByUser", _all(_groups("system:nodes"))),
        _fs("kube-controller-manager", "workload-high", 800, "ByNamespace", _all(_users(_KCM))),
        _fs("kube-scheduler", "workload-high", 800, "ByNamespace", _all(_users(_SCHED))),
        _fs("kube-system-service-accounts", "workload-high", 900, "ByNamespace", _all([_sa("kube-system", "*")])),
        _fs("service-accounts", "workload-low", 9000, "ByUser", _all(_groups("system:serviceaccounts"))),
        _fs("global-default", "global-default", 9900, "ByUser", _all(_groups("system:unauthenticated",
                                                                             "system:authenticated"))),
    ]


def reconcile(current: dict[str, Any] | None, expected: dict[str, Any], *, mandatory: bool) -> dict[str, Any] | None:
    """The object to write (``None``: nothing). kube's ensurer: a missing object is created; an
    existing one gets kube's spec back when its autoupdate annotation is ``"true"`` (or absent on an
    object never changed since creation, generation 1: then the annotation is added); ``"false"``
    leaves a user's spec alone, for mandatory objects too."""
    if current is None:
        return copy.deepcopy(expected)
    meta = current.get("metadata") or {}
    annotations = dict(meta.get("annotations") or {})
    value = annotations.get(AUTOUPDATE)
    if value is None:
        update = mandatory or meta.get("generation", 1) == 1
    else:
        update = value == "true"
    if not update:
        return None
    if current.get("spec") == expected["spec"] and value == "true":
        return None
    annotations[AUTOUPDATE] = "true"
    return {**current, "metadata": {**meta, "annotations": annotations}, "spec": copy.deepcopy(expected["spec"])}


class ApfBootstrap:
    """Creates and reconciles a tenant's APF objects (kube's ``priority-and-fairness-config-producer``
    post-start hook). Every gateway replica runs it at start; writes are CAS, a lost race is fine."""

    def __init__(self, projection: Projection, registry: Registry, resource: Actor[Request]) -> None:
        self.projection, self.resource = projection, resource
        fs = registry.by_resource(FLOWCONTROL_GROUP, "flowschemas")
        pl = registry.by_resource(FLOWCONTROL_GROUP, "prioritylevelconfigurations")
        assert fs is not None and pl is not None
        self.fs_def, self.pl_def = fs, pl

    async def ensure(self, tenant: str) -> bool:
        """Create or reconcile ``tenant``'s objects; False when the log failed (retry later)."""
        try:
            await self.projection.consistent()
            for rdef, objs, mandatory in ((self.pl_def, default_priority_levels(), MANDATORY_LEVELS),
                                          (self.fs_def, default_flow_schemas(), MANDATORY_SCHEMAS)):
                for expected in objs:
                    name = expected["metadata"]["name"]
                    entry = self.projection.get(Key(tenant, FLOWCONTROL_GROUP, rdef.plural, "", name))
                    current = None if entry is None else msgspec.json.decode(entry.data)
                    new = reconcile(current, expected, mandatory=name in mandatory)
                    if new is not None:
                        await self._write(tenant, rdef, current, new)
        except (ApiError, BusError, ProjectionError, trio.TooSlowError) as e:
            log.warning("APF bootstrap of tenant %s incomplete: %s", tenant, e)
            return False
        return True

    async def _write(self, tenant: str, rdef: Any, current: dict[str, Any] | None, new: dict[str, Any]) -> None:
        verb = "create" if current is None else "update"
        req = Request(verb=verb, rdef=rdef, name="" if current is None else new["metadata"]["name"], body=new,
                      user=SYSTEM_USER, tenant=tenant, audit_id=str(uuid.uuid4()),
                      user_agent="jetkube-apf-bootstrap")
        try:
            await self.resource.ask(req, timeout_s=30)
        except (AlreadyExists, Conflict, NotFound):
            pass  # another replica was first
