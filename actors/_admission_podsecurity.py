"""kube's PodSecurity admission (``k8s.io/pod-security-admission/admission`` as kube-apiserver 1.33
runs it, with the default configuration: privileged by default, no exemptions).

- Pods (create, update, and the subresources that can change the spec: ``ephemeralcontainers``):
  ``enforce`` refuses a violating pod (403, ``violates PodSecurity "<level>:<version>": ...``),
  ``warn`` adds ``would violate PodSecurity ...`` as a Warning, ``audit`` records the violation
  (kube writes it as the audit annotation ``pod-security.kubernetes.io/audit-violations``; here
  it is logged on ``jetkube.admission``). An update is evaluated only when it is significant as
  kube's ``isSignificantPodUpdate`` says: containers or init containers added or removed, an
  image changed, an ephemeral container added or its image changed (metadata-only and status
  changes never are).
- Pod templates (Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs, CronJobs,
  ReplicationControllers, PodTemplates; create and update, no subresource): warned and audited,
  never refused.
- Namespaces: invalid ``pod-security.kubernetes.io/*`` labels are refused (422) on create, and on
  update when they changed; raising the enforce level on an update evaluates the namespace's
  existing pods against it and answers kube's warnings (``existing pods in namespace ... violate
  the new PodSecurity enforce level ...``, one line per distinct reason, naming the first pod and
  how many others), checking at most 3,000 pods (one per controller first, as kube does).
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import trio
import trio.lowlevel

from bus import Key
from kinds._errors import Forbidden
from kinds._podsecurity import (
    LABEL_PREFIX,
    LEVELS,
    LevelVersion,
    Policy,
    evaluate,
    forbidden_detail,
    forbidden_reason,
    policy_to_evaluate,
)
from kinds._validation import field_invalid
from projections import Projection

from ._admission import Attributes, add_warning

log = logging.getLogger("jetkube.admission")
_decode = msgspec.json.decode

#: Pod subresources PodSecurity never evaluates (kube's ignoredPodSubresources).
IGNORED_POD_SUBRESOURCES = frozenset({"exec", "attach", "binding", "eviction", "log", "portforward", "proxy",
                                      "status"})
#: Kinds with a pod template: the path to the template (metadata and spec).
TEMPLATES: dict[tuple[str, str], tuple[str, ...]] = {
    ("apps", "deployments"): ("spec", "template"), ("apps", "replicasets"): ("spec", "template"),
    ("apps", "statefulsets"): ("spec", "template"), ("apps", "daemonsets"): ("spec", "template"),
    ("batch", "jobs"): ("spec", "template"), ("", "replicationcontrollers"): ("spec", "template"),
    ("batch", "cronjobs"): ("spec", "jobTemplate", "spec", "template"), ("", "podtemplates"): ("template",),
}
NAMESPACE_MAX_PODS_TO_CHECK = 3000
NAMESPACE_POD_CHECK_TIMEOUT_S = 1.0


def _qualified(a: Attributes) -> str:
    return f"{a.rdef.plural}.{a.rdef.group}" if a.rdef.group else a.rdef.plural


def _forbidden(a: Attributes, why: str) -> Forbidden:
    """``apierrors.NewForbidden`` (no quoted name when there is none)."""
    head = f'{_qualified(a)} "{a.name}"' if a.name else _qualified(a)
    return Forbidden(f"{head} is forbidden: {why}", name=a.name, group=a.rdef.group, kind=a.rdef.plural)


def _labels(obj: dict[str, Any] | None) -> dict[str, str]:
    labels = ((obj or {}).get("metadata") or {}).get("labels") if isinstance(obj, dict) else None
    return {k: v for k, v in labels.items() if isinstance(v, str)} if isinstance(labels, dict) else {}


def _images(spec: dict[str, Any], field: str) -> list[Any]:
    return [c.get("image") if isinstance(c, dict) else None for c in spec.get(field) or []]


def significant_pod_update(pod: dict[str, Any], old: dict[str, Any]) -> bool:
    """kube's ``isSignificantPodUpdate``."""
    spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
    prev = old.get("spec") if isinstance(old.get("spec"), dict) else {}
    for field in ("containers", "initContainers"):
        if _images(spec, field) != _images(prev, field):
            return True  # a container added or removed, or an image changed
    before = {c.get("name"): c.get("image") for c in prev.get("ephemeralContainers") or [] if isinstance(c, dict)}
    for c in spec.get("ephemeralContainers") or []:
        if isinstance(c, dict) and (c.get("name") not in before or before[c.get("name")] != c.get("image")):
            return True
    return False


def _template(obj: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    t: Any = obj
    for part in path:
        t = t.get(part) if isinstance(t, dict) else None
    return t if isinstance(t, dict) else None


class PodSecurity:
    """The validating plugin (see the module docstring)."""

    def __init__(self, projection: Projection) -> None:
        self.projection = projection

    async def validate(self, a: Attributes, obj: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        if obj is None or a.operation not in ("CREATE", "UPDATE"):
            return
        key = (a.rdef.group, a.rdef.plural)
        if key == ("", "namespaces"):
            await self._namespace(a, obj, old)
        elif key == ("", "pods"):
            if a.subresource in IGNORED_POD_SUBRESOURCES:
                return
            policy, errors = await self._policy(a)
            if policy is None or not errors and policy.fully_privileged:
                return
            if a.operation == "UPDATE" and old is not None and not significant_pod_update(obj, old):
                return
            self._evaluate(a, policy, bool(errors), obj.get("metadata"), obj.get("spec"), enforce=True)
        elif key in TEMPLATES:
            if a.subresource:
                return
            policy, errors = await self._policy(a)
            if policy is None or not errors and policy.warn.level == policy.audit.level == "privileged":
                return
            template = _template(obj, TEMPLATES[key])
            if template is None:
                return  # a controller without a pod template is not evaluated
            self._evaluate(a, policy, bool(errors), template.get("metadata"), template.get("spec"), enforce=False)

    async def _policy(self, a: Attributes) -> tuple[Policy | None, list[tuple[str, str, str]]]:
        key = Key(a.tenant, "", "namespaces", "", a.namespace)
        entry = self.projection.get(key)
        if entry is None:
            await self.projection.consistent()
            entry = self.projection.get(key)
        if entry is None:
            return None, []  # NamespaceLifecycle answers for a missing namespace
        labels = entry.labels
        if not any(k.startswith(LABEL_PREFIX) for k in labels):
            return Policy(), []
        return policy_to_evaluate(dict(labels))

    def _evaluate(self, a: Attributes, policy: Policy, policy_errors: bool, meta: Any, spec: Any, *,
                  enforce: bool) -> None:
        cached: dict[LevelVersion, list[tuple[str, str]]] = {}

        def results(lv: LevelVersion) -> list[tuple[str, str]]:
            if lv not in cached:
                cached[lv] = evaluate(lv, meta, spec)
            return cached[lv]

        if policy_errors:
            log.info("pod-security: %s %s/%s: failed to parse the namespace's PodSecurity labels", a.rdef.plural,
                     a.namespace, a.name)
        denied = None
        if enforce:
            found = results(policy.enforce)
            if found:
                denied = _forbidden(a, f'violates PodSecurity "{policy.enforce}": {forbidden_detail(found)}')
        found = results(policy.audit)
        if found:
            log.info("pod-security audit: %s %s/%s would violate PodSecurity \"%s\": %s", a.rdef.plural,
                     a.namespace, a.name, policy.audit, forbidden_detail(found))
        if denied is not None:
            raise denied  # no warnings on a request that is refused
        found = results(policy.warn)
        if found:
            add_warning(f'would violate PodSecurity "{policy.warn}": {forbidden_detail(found)}')

    # ---- namespaces ---------------------------------------------------------------------------------

    async def _namespace(self, a: Attributes, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if a.subresource:
            return
        new_policy, new_errors = policy_to_evaluate(_labels(obj))
        if a.operation == "CREATE" or old is None:
            if new_errors:
                raise _invalid_labels(a, obj, new_errors)
            return
        old_policy, old_errors = policy_to_evaluate(_labels(old))
        if new_errors and (not old_errors or new_errors != old_errors):
            raise _invalid_labels(a, obj, new_errors)
        new, prev = new_policy.enforce, old_policy.enforce
        if new == prev or new.level == "privileged":
            return
        if new.version == prev.version and LEVELS.index(new.level) <= LEVELS.index(prev.level):
            return
        name = str((obj.get("metadata") or {}).get("name") or a.name)
        for w in await self.evaluate_pods_in_namespace(a.tenant, name, new):
            add_warning(w)

    async def evaluate_pods_in_namespace(self, tenant: str, namespace: str, enforce: LevelVersion) -> list[str]:
        """kube's ``EvaluatePodsInNamespace`` over the projection's pods of the namespace: at most
        3,000 pods and about a second (kube's limits), yielding to the loop between batches."""
        entries = [e for _, _, e in self.projection.state(tenant, "", "pods").iter_entries(namespace)]
        pods = []
        for i, e in enumerate(entries):
            if i and i % 256 == 0:
                await trio.lowlevel.checkpoint()
            pods.append(_decode(e.data))
        first: list[dict[str, Any]] = []
        duplicates: list[dict[str, Any]] = []
        seen_controllers: set[Any] = set()
        for p in pods:
            owner = next((r.get("uid") for r in (p.get("metadata") or {}).get("ownerReferences") or []
                          if isinstance(r, dict) and r.get("controller") is True), None)
            if owner is None:
                first.append(p)
            elif owner in seen_controllers:
                duplicates.append(p)
            else:
                seen_controllers.add(owner)
                first.append(p)
        prioritized = first + duplicates
        total = len(prioritized)
        prioritized = prioritized[:NAMESPACE_MAX_PODS_TO_CHECK]
        counts: dict[str, list[Any]] = {}  # reason -> [lexically first pod name, pod count]
        deadline = trio.current_time() + NAMESPACE_POD_CHECK_TIMEOUT_S
        checked = len(prioritized)
        for i, p in enumerate(prioritized):
            if i and i % 64 == 0:
                await trio.lowlevel.checkpoint()
                if trio.current_time() > deadline:
                    checked = i
                    break
            found = evaluate(enforce, p.get("metadata"), p.get("spec"))
            if not found:
                continue
            reason = forbidden_reason(found)
            pod_name = str((p.get("metadata") or {}).get("name", ""))
            c = counts.setdefault(reason, [pod_name, 0])
            c[0] = min(c[0], pod_name)
            c[1] += 1
        warnings = []
        if checked < total:
            warnings.append(f"new PodSecurity enforce level only checked against the first {checked} of "
                            f"{total} existing pods")
        if counts:
            warnings.append(f'existing pods in namespace "{namespace}" violate the new PodSecurity enforce level '
                            f'"{enforce}"')
        decorated = []
        for reason, (pod_name, n) in counts.items():
            if n == 1:
                decorated.append(f"{pod_name}: {reason}")
            elif n == 2:
                decorated.append(f"{pod_name} (and 1 other pod): {reason}")
            else:
                decorated.append(f"{pod_name} (and {n - 1} other pods): {reason}")
        return warnings + sorted(decorated)


def _invalid_labels(a: Attributes, obj: dict[str, Any], errors: list[tuple[str, str, str]]) -> Exception:
    from kinds._errors import invalid

    name = str((obj.get("metadata") or {}).get("name") or a.name)
    return invalid(a.rdef.kind, name, [field_invalid(f"metadata.labels[{label}]", value, msg)
                                       for label, value, msg in errors])


__all__ = ["IGNORED_POD_SUBRESOURCES", "NAMESPACE_MAX_PODS_TO_CHECK", "TEMPLATES", "PodSecurity",
           "significant_pod_update"]
