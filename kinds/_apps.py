"""apps/v1: Deployments, ReplicaSets, StatefulSets, DaemonSets, ControllerRevisions
(``pkg/apis/apps/v1/defaults.go`` and ``pkg/apis/apps/validation``)."""

from __future__ import annotations

from typing import Any

from ._errors import Cause
from ._podspec import default_pod_template
from ._strategy import Strategy
from ._validation import field_forbidden, field_invalid, field_required, field_unsupported
from ._workloads import (
    TemplateStrategy,
    immutable_selector,
    int_or_percent_is_zero,
    spec_of,
    sub_dict,
    validate_int_or_percent,
    validate_nonnegative,
    validate_selector_and_template,
)

__all__ = [
    "APPS_STRATEGIES",
    "default_daemon_set",
    "default_deployment",
    "default_replica_set",
    "default_stateful_set",
]

_ALWAYS = ("Always",)


def default_deployment(obj: dict[str, Any]) -> None:
    """``SetDefaults_Deployment``: 1 replica, RollingUpdate 25%/25%, 10 revisions, 600 s."""
    spec = spec_of(obj)
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    strategy = spec.get("strategy")
    if not isinstance(strategy, dict):
        strategy = spec["strategy"] = {}
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
    if strategy["type"] == "RollingUpdate":
        ru = strategy.get("rollingUpdate")
        if not isinstance(ru, dict):
            ru = strategy["rollingUpdate"] = {}
        if ru.get("maxUnavailable") is None:
            ru["maxUnavailable"] = "25%"
        if ru.get("maxSurge") is None:
            ru["maxSurge"] = "25%"
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    if spec.get("progressDeadlineSeconds") is None:
        spec["progressDeadlineSeconds"] = 600
    default_pod_template(sub_dict(spec, "template"))


def default_replica_set(obj: dict[str, Any]) -> None:
    """``SetDefaults_ReplicaSet``: 1 replica."""
    spec = spec_of(obj)
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    default_pod_template(sub_dict(spec, "template"))


def default_stateful_set(obj: dict[str, Any]) -> None:
    """``SetDefaults_StatefulSet``: OrderedReady, RollingUpdate with partition 0, PVCs retained,
    1 replica, 10 revisions; the claim templates get the PVC spec's defaults."""
    spec = spec_of(obj)
    if not spec.get("podManagementPolicy"):
        spec["podManagementPolicy"] = "OrderedReady"
    us = spec.get("updateStrategy")
    if not isinstance(us, dict):
        us = spec["updateStrategy"] = {}
    if not us.get("type"):
        us["type"] = "RollingUpdate"
        if us.get("rollingUpdate") is None:
            us["rollingUpdate"] = {}
    if us["type"] == "RollingUpdate" and isinstance(us.get("rollingUpdate"), dict):
        us["rollingUpdate"].setdefault("partition", 0)
    policy = spec.get("persistentVolumeClaimRetentionPolicy")
    if not isinstance(policy, dict):
        policy = spec["persistentVolumeClaimRetentionPolicy"] = {}
    for k in ("whenDeleted", "whenScaled"):
        if not policy.get(k):
            policy[k] = "Retain"
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    default_pod_template(sub_dict(spec, "template"))
    for claim in spec.get("volumeClaimTemplates") or []:
        if isinstance(claim, dict):
            # Go writes the claim's zero-valued metadata and status too.
            if isinstance(claim.get("metadata"), dict):
                claim["metadata"].setdefault("creationTimestamp", None)
            cspec = claim.get("spec")
            if isinstance(cspec, dict) and cspec.get("volumeMode") is None:
                cspec["volumeMode"] = "Filesystem"
            claim.setdefault("status", {"phase": "Pending"})


def default_daemon_set(obj: dict[str, Any]) -> None:
    """``SetDefaults_DaemonSet``: RollingUpdate with maxUnavailable 1 and maxSurge 0, 10
    revisions."""
    spec = spec_of(obj)
    us = spec.get("updateStrategy")
    if not isinstance(us, dict):
        us = spec["updateStrategy"] = {}
    if not us.get("type"):
        us["type"] = "RollingUpdate"
    if us["type"] == "RollingUpdate":
        ru = us.get("rollingUpdate")
        if not isinstance(ru, dict):
            ru = us["rollingUpdate"] = {}
        if ru.get("maxUnavailable") is None:
            ru["maxUnavailable"] = 1
        if ru.get("maxSurge") is None:
            ru["maxSurge"] = 0
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    default_pod_template(sub_dict(spec, "template"))


def _validate_rolling(ru: Any, path: str) -> list[Cause]:
    if not isinstance(ru, dict):
        return []
    causes: list[Cause] = []
    mu, ms = ru.get("maxUnavailable"), ru.get("maxSurge")
    causes += validate_int_or_percent(mu, f"{path}.maxUnavailable")
    causes += validate_int_or_percent(ms, f"{path}.maxSurge")
    if mu is not None and ms is not None and int_or_percent_is_zero(mu) and int_or_percent_is_zero(ms):
        causes.append(field_invalid(f"{path}.maxUnavailable", mu, "may not be 0 when `maxSurge` is 0"))
    return causes


class DeploymentStrategy(TemplateStrategy):
    def default(self, obj: dict[str, Any]) -> None:
        default_deployment(obj)

    def validate_spec(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        spec = spec_of(obj)
        causes = validate_nonnegative(spec, ("replicas", "revisionHistoryLimit", "minReadySeconds",
                                             "progressDeadlineSeconds"))
        causes += validate_selector_and_template(spec, "deployment", restart_policies=_ALWAYS)
        strategy = spec.get("strategy") or {}
        st = strategy.get("type")
        if st not in ("Recreate", "RollingUpdate"):
            causes.append(field_unsupported("spec.strategy.type", st, ("Recreate", "RollingUpdate")))
        elif st == "Recreate" and strategy.get("rollingUpdate") is not None:
            causes.append(field_forbidden("spec.strategy.rollingUpdate",
                                          "may not be specified when strategy `type` is 'Recreate'"))
        else:
            causes += _validate_rolling(strategy.get("rollingUpdate"), "spec.strategy.rollingUpdate")
        pds, mrs = spec.get("progressDeadlineSeconds"), spec.get("minReadySeconds") or 0
        if isinstance(pds, int) and isinstance(mrs, int) and pds <= mrs:
            causes.append(field_invalid("spec.progressDeadlineSeconds", pds, "must be greater than minReadySeconds"))
        if old is not None:
            causes += immutable_selector(spec, spec_of(old))
        return causes


class ReplicaSetStrategy(TemplateStrategy):
    def default(self, obj: dict[str, Any]) -> None:
        default_replica_set(obj)

    def validate_spec(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        spec = spec_of(obj)
        causes = validate_nonnegative(spec, ("replicas", "minReadySeconds"))
        causes += validate_selector_and_template(spec, "replicaset", restart_policies=_ALWAYS)
        if old is not None:
            causes += immutable_selector(spec, spec_of(old))
        return causes


_STS_MUTABLE = ("replicas", "ordinals", "template", "updateStrategy", "persistentVolumeClaimRetentionPolicy",
                "minReadySeconds")


class StatefulSetStrategy(TemplateStrategy):
    def default(self, obj: dict[str, Any]) -> None:
        default_stateful_set(obj)

    def validate_spec(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        spec = spec_of(obj)
        causes = validate_nonnegative(spec, ("replicas", "minReadySeconds", "revisionHistoryLimit"))
        pmp = spec.get("podManagementPolicy")
        if pmp not in ("OrderedReady", "Parallel"):
            causes.append(field_unsupported("spec.podManagementPolicy", pmp, ("OrderedReady", "Parallel")))
        us = spec.get("updateStrategy") or {}
        ut = us.get("type")
        if ut not in ("OnDelete", "RollingUpdate"):
            causes.append(field_unsupported("spec.updateStrategy.type", ut, ("OnDelete", "RollingUpdate")))
        elif ut == "OnDelete" and us.get("rollingUpdate") is not None:
            causes.append(field_forbidden("spec.updateStrategy.rollingUpdate",
                                          "only allowed for updateStrategy 'RollingUpdate'"))
        elif isinstance(us.get("rollingUpdate"), dict):
            causes += validate_nonnegative(us["rollingUpdate"], ("partition",), "spec.updateStrategy.rollingUpdate")
        policy = spec.get("persistentVolumeClaimRetentionPolicy") or {}
        for k in ("whenDeleted", "whenScaled"):
            if policy.get(k) not in ("Retain", "Delete"):
                causes.append(field_unsupported(f"spec.persistentVolumeClaimRetentionPolicy.{k}", policy.get(k),
                                                ("Retain", "Delete")))
        causes += validate_selector_and_template(spec, "statefulset", restart_policies=_ALWAYS)
        for i, claim in enumerate(spec.get("volumeClaimTemplates") or []):
            if isinstance(claim, dict) and not (claim.get("metadata") or {}).get("name"):
                causes.append(field_required(f"spec.volumeClaimTemplates[{i}].metadata.name"))
        if old is not None:
            ospec = spec_of(old)
            if any(spec.get(k) != ospec.get(k) for k in set(spec) | set(ospec) if k not in _STS_MUTABLE):
                causes.append(field_forbidden("spec", "updates to statefulset spec for fields other than 'replicas', "
                                                      "'ordinals', 'template', 'updateStrategy', "
                                                      "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' "
                                                      "are forbidden"))
        return causes


class DaemonSetStrategy(TemplateStrategy):
    def default(self, obj: dict[str, Any]) -> None:
        default_daemon_set(obj)

    def validate_spec(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        spec = spec_of(obj)
        causes = validate_nonnegative(spec, ("minReadySeconds", "revisionHistoryLimit"))
        causes += validate_selector_and_template(spec, "daemonset", restart_policies=_ALWAYS)
        us = spec.get("updateStrategy") or {}
        ut = us.get("type")
        if ut not in ("OnDelete", "RollingUpdate"):
            causes.append(field_unsupported("spec.updateStrategy.type", ut, ("OnDelete", "RollingUpdate")))
        elif ut == "RollingUpdate":
            causes += _validate_rolling(us.get("rollingUpdate"), "spec.updateStrategy.rollingUpdate")
        if old is not None:
            causes += immutable_selector(spec, spec_of(old))
        return causes


class ControllerRevisionStrategy(Strategy):
    """ControllerRevisions are written by controllers; their ``data`` and ``revision`` never
    change (``ValidateControllerRevisionUpdate``)."""

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None, rdef: Any) -> list[Cause]:
        causes = super().validate(obj, old, rdef)
        rev = obj.get("revision")
        if isinstance(rev, int) and not isinstance(rev, bool) and rev < 0:
            causes.append(field_invalid("revision", rev, "must be greater than or equal to 0"))
        if old is not None and obj.get("data") != old.get("data"):
            causes.append(field_invalid("data", "", "field is immutable"))
        return causes


APPS_STRATEGIES: dict[tuple[str, str], Strategy] = {
    ("apps", "deployments"): DeploymentStrategy(),
    ("apps", "replicasets"): ReplicaSetStrategy(),
    ("apps", "statefulsets"): StatefulSetStrategy(),
    ("apps", "daemonsets"): DaemonSetStrategy(),
    ("apps", "controllerrevisions"): ControllerRevisionStrategy(),
}
