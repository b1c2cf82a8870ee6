"""Admission: the one chain every write passes, in kube-apiserver's order.

``mutate`` runs on the decoded object before the kind's defaulting and validation: the built-in
mutating plugins, then the mutating webhooks in order (a webhook with ``reinvocationPolicy:
IfNeeded`` runs once more when a later webhook changed the object). ``validate`` runs on the
final object, after defaulting and schema validation, just before the write is appended: the
built-in validating plugins, the ValidatingAdmissionPolicies, then the validating webhooks in
parallel. The resource actor calls both for every write it decides (create, update, patch,
delete, each item of a deletecollection, and the subresources), so nothing reaches the log
around the chain. ``dryRun`` requests run the chain too.

Warnings (a webhook's ``warnings``, a policy's ``Warn`` action, PodSecurity's warn mode) are
collected per request in a context variable that the resource actor opens around each message
(:func:`collecting_warnings`) and returns with its answer.

Audit annotations (a policy's ``auditAnnotations`` and ``Audit`` failures, a webhook's
``auditAnnotations``) are collected the same way, in the same scope, for the admission run of
the object being written (:meth:`AdmissionChain.mutate` starts a fresh set, so each item of a
deletecollection and each retry of a conflicting write has its own). The resource actor puts
them on the write's event (``bus.Event.annotations``), where the audit reads them; a denial
carries them as ``audit_annotations`` on the error, for the gateway's audit record.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator
from typing import Any, Protocol

import msgspec

from bus import Key
from kinds import NAMESPACES, Registry, ResourceDef
from kinds._errors import ApiError, Forbidden, NotFound
from projections import Projection

from ._runtime import Actor, ReplySlot, Stage
from ._tenancy import TenancyAdmission, tenant_terminating
from .messages import Request, UserInfo

_ADMREG = "admissionregistration.k8s.io"
# Webhooks and policies never see writes of their own configuration (kube's
# IsExemptAdmissionConfigurationResource), so a bad webhook can always be removed.
EXEMPT_RESOURCES = frozenset({"mutatingwebhookconfigurations", "validatingwebhookconfigurations",
                              "validatingadmissionpolicies", "validatingadmissionpolicybindings",
                              "mutatingadmissionpolicies", "mutatingadmissionpolicybindings"})

_encode = msgspec.json.Encoder().encode
_warnings: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("admission_warnings", default=None)
_annotations: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("admission_audit_annotations",
                                                                                    default=None)
#: kube's cap on one audit annotation's value (validating/dispatcher.go maxAuditAnnotationValueLength).
MAX_AUDIT_ANNOTATION_VALUE = 10 * 1024


@contextlib.contextmanager
def collecting_warnings() -> Iterator[list[str]]:
    """Open a warning list (and an audit annotation set) for the request handled in this task;
    yields the warnings. An :class:`~kinds.ApiError` leaving the scope takes the audit
    annotations collected so far along as its ``audit_annotations`` attribute."""
    out: list[str] = []
    token = _warnings.set(out)
    ann_token = _annotations.set({})
    try:
        yield out
    except ApiError as e:
        if (ann := _annotations.get()) and not getattr(e, "audit_annotations", None):
            e.audit_annotations = dict(ann)  # type: ignore[attr-defined]
        raise
    finally:
        _annotations.reset(ann_token)
        _warnings.reset(token)


def add_audit_annotation(key: str, value: str) -> None:
    """Record an audit annotation for the current write, as kube's ``Attributes.AddAnnotation``:
    the first value of a key stays (a second, different one is dropped)."""
    ann = _annotations.get()
    if ann is not None and key not in ann:
        ann[key] = value[:MAX_AUDIT_ANNOTATION_VALUE]


def audit_annotations() -> dict[str, str]:
    """The audit annotations collected for the current write (a copy; empty outside a request)."""
    ann = _annotations.get()
    return dict(ann) if ann else {}


def _reset_audit_annotations() -> None:
    ann = _annotations.get()
    if ann:
        ann.clear()


def add_warning(text: str) -> None:
    """Add a warning to the current request's answer (dropped when no request collects them)."""
    out = _warnings.get()
    if out is not None and text not in out:
        out.append(text)


class Attributes:
    """What admission knows of one write (kube's ``admission.Attributes``)."""

    __slots__ = ("dry_run", "name", "namespace", "operation", "options_kind", "rdef", "subresource", "tenant",
                 "uid", "user")

    def __init__(self, req: Request, operation: str, name: str) -> None:
        assert req.rdef is not None
        self.rdef: ResourceDef = req.rdef
        self.operation = operation
        self.subresource = req.subresource
        self.tenant = req.tenant
        self.namespace = req.namespace if req.rdef.namespaced else ""
        self.name = name
        self.user: UserInfo | None = req.user
        self.uid = req.audit_id
        self.dry_run = req.dry_run
        self.options_kind = {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions", "DELETE": "DeleteOptions"}.get(
            operation, "")

    @property
    def exempt(self) -> bool:
        return self.rdef.group == _ADMREG and self.rdef.plural in EXEMPT_RESOURCES


class MutatingPlugin(Protocol):
    async def admit(self, a: Attributes, obj: dict[str, Any] | None, old: dict[str, Any] | None) -> None: ...


class ValidatingPlugin(Protocol):
    async def validate(self, a: Attributes, obj: dict[str, Any] | None, old: dict[str, Any] | None) -> None: ...


class Dispatcher(Protocol):
    """Webhooks or policies: ``active`` is a cheap check (no configuration: nothing to do)."""

    def active(self, tenant: str) -> bool: ...


class _timed:
    """Time a block into ``stage`` (a plain context manager: a generator-based one was ~2 us of each
    of a create's two or more steps, admission itself having nothing to do)."""

    __slots__ = ("stage", "t0")

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self.t0 = 0.0

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.stage.latency.observe(time.perf_counter() - self.t0)


class AdmissionChain:
    """The plugins in order; webhooks and policies (optional) from their projections."""

    def __init__(self, *, mutating: tuple[MutatingPlugin, ...] = (), validating: tuple[ValidatingPlugin, ...] = (),
                 webhooks: Any = None, policies: Any = None, mutating_policies: Any = None) -> None:
        self.mutating = mutating
        self.validating = validating
        self.webhooks = webhooks
        self.policies = policies
        #: MutatingAdmissionPolicies (actors/_admission_mutating.py), before the mutating webhooks.
        self.mutating_policies = mutating_policies
        #: Time spent in each phase, for /metrics (jetkube_stage_duration_seconds).
        self.mutate_stage = Stage("admission-mutating")
        self.validate_stage = Stage("admission-validating")
        #: ... and in each step of a phase (webhooks and policies: only when configured).
        self.step_stages = {name: Stage(f"admission-{name}") for name in (
            "mutating-plugins", "mutating-policies", "mutating-webhooks", "validating-plugins",
            "validating-policies", "validating-webhooks")}

    @property
    def stages(self) -> tuple[Stage, ...]:
        """Every stage of the chain, for the metrics."""
        return (self.mutate_stage, self.validate_stage, *self.step_stages.values())

    def attach(self, core: Any, authorizer: Any = None) -> None:
        """Give plugins that write (ResourceQuota's charges) the resource actor's CAS loop, and
        those that authorize (the Certificate* plugins) the server's authorizer."""
        for p in (*self.mutating, *self.validating):
            if hasattr(p, "core"):
                p.core = core
            if authorizer is not None and hasattr(p, "authorizer"):
                p.authorizer = authorizer

    async def mutate(self, req: Request, operation: str, obj: dict[str, Any] | None, old: dict[str, Any] | None,
                     *, name: str = "") -> dict[str, Any] | None:
        """The mutating phase: returns the (possibly patched) object."""
        t0 = time.perf_counter()
        _reset_audit_annotations()  # a new admission run: this object's annotations only
        try:
            a = Attributes(req, operation, name or req.name)
            with _timed(self.step_stages["mutating-plugins"]):
                for p in self.mutating:
                    await p.admit(a, obj, old)
            if a.exempt:
                return obj
            reinvoke: list[str] = []
            policies = self.mutating_policies
            if policies is not None and policies.active(a.tenant):
                with _timed(self.step_stages["mutating-policies"]):
                    obj, reinvoke = await policies.mutate(a, obj, old)
            after_policies = obj
            if self.webhooks is not None and self.webhooks.active(a.tenant):
                with _timed(self.step_stages["mutating-webhooks"]):
                    obj = await self.webhooks.mutate(a, obj, old)
            # kube's reinvocation: policies that ask IfNeeded run once more when a later step
            # (the webhooks) changed the object they produced.
            if reinvoke and obj is not after_policies and _encode(obj) != _encode(after_policies):
                with _timed(self.step_stages["mutating-policies"]):
                    obj, _ = await policies.mutate(a, obj, old, only=frozenset(reinvoke))
            return obj
        finally:
            self.mutate_stage.latency.observe(time.perf_counter() - t0)

    async def validate(self, req: Request, operation: str, obj: dict[str, Any] | None,
                       old: dict[str, Any] | None, *, name: str = "") -> None:
        """The validating phase: raises the first denial."""
        t0 = time.perf_counter()
        try:
            a = Attributes(req, operation, name or req.name)
            with _timed(self.step_stages["validating-plugins"]):
                for p in self.validating:
                    await p.validate(a, obj, old)
            if a.exempt:
                return
            if self.policies is not None and self.policies.active(a.tenant):
                with _timed(self.step_stages["validating-policies"]):
                    await self.policies.validate(a, obj, old)
            if self.webhooks is not None and self.webhooks.active(a.tenant):
                with _timed(self.step_stages["validating-webhooks"]):
                    await self.webhooks.validate(a, obj, old)
        finally:
            self.validate_stage.latency.observe(time.perf_counter() - t0)


class NamespaceLifecycle:
    """kube's NamespaceLifecycle: no new content in a missing namespace (404) or in a terminating
    one (403); a kind's immortal objects (``ResourceDef.immortal``: the namespaces default,
    kube-system and kube-public) may not be deleted (403), whatever the path (a single delete,
    each item of a deletecollection), except when their whole tenant is being deleted."""

    def __init__(self, projection: Projection) -> None:
        self.projection = projection

    async def admit(self, a: Attributes, obj: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        """First of the mutating plugins, as in kube: a write into a missing namespace is 404
        before the object is defaulted or validated."""
        rdef = a.rdef
        if a.operation == "DELETE" and a.name in rdef.immortal and not tenant_terminating(self.projection, a.tenant):
            raise _immortal(rdef, a.name)
        if rdef.namespaced and a.operation == "CREATE" and not a.subresource:
            await self.admit_namespace(a.tenant, a.namespace, a.name, rdef)

    async def admit_request(self, req: Request) -> None:
        """The early check the admission actor makes before the resource actor decodes anything."""
        rdef = req.rdef
        if rdef is None:
            return
        if req.verb in ("delete", "deletecollection") and req.name in rdef.immortal and not tenant_terminating(
                self.projection, req.tenant):
            raise _immortal(rdef, req.name)
        if rdef.namespaced and req.verb == "create" and not req.subresource:
            await self.admit_namespace(req.tenant, req.namespace, req.name, rdef)

    async def admit_namespace(self, tenant: str, namespace: str, name: str, rdef: ResourceDef) -> None:
        # An active namespace in the local projection is taken as it is (writes through this
        # gateway are applied before they are answered, so this gateway's own changes are always
        # seen); like the apiserver's informer-backed plugin, a deletion made on another gateway
        # a moment ago may be missed, and the namespace controller then removes the late object.
        # Anything else is confirmed with a consistent read before it is refused.
        key = Key(tenant, *NAMESPACES, "", namespace)
        entry = self.projection.get(key)
        if entry is None or entry.fields.get("status.phase") != "Active":
            await self.projection.consistent()
            entry = self.projection.get(key)
        if entry is None:
            raise NotFound(f'{NAMESPACES[1]} "{namespace}" not found', name=namespace, kind=NAMESPACES[1])
        if entry.fields.get("status.phase") == "Terminating":
            raise Forbidden(f"unable to create new content in namespace {namespace} because it is being "
                            f"terminated", name=name, group=rdef.group, kind=rdef.plural)


def _immortal(rdef: ResourceDef, name: str) -> Forbidden:
    return Forbidden(f'{rdef.plural} "{name}" is forbidden: this {rdef.singular} may not be deleted', name=name,
                     group=rdef.group, kind=rdef.plural)


def admission_handler(lifecycle: NamespaceLifecycle, next_actor: Actor[Request],  # type: ignore[no-untyped-def]
                      tenancy: TenancyAdmission | None = None):
    async def handle(req: Request, reply: ReplySlot) -> None:
        if tenancy is not None:
            req = tenancy.admit(req)
        await lifecycle.admit_request(req)
        next_actor.forward(req, reply)

    return handle


def build_chain(projection: Projection, registry: Registry, lifecycle: NamespaceLifecycle) -> AdmissionChain:
    """kube's default plugin set for the kinds served, with webhooks and policies."""
    from ._admission_mutating import MutatingPolicyDispatcher
    from ._admission_plugins import mutating_plugins, validating_plugins
    from ._admission_policies import PolicyDispatcher
    from ._admission_webhooks import WebhookDispatcher

    return AdmissionChain(mutating=(lifecycle, *mutating_plugins(projection, registry)),
                          validating=validating_plugins(projection, registry),
                          webhooks=WebhookDispatcher(projection, registry),
                          policies=PolicyDispatcher(projection, registry),
                          mutating_policies=MutatingPolicyDispatcher(projection, registry))


__all__ = [
    "AdmissionChain",
    "Attributes",
    "NamespaceLifecycle",
    "add_audit_annotation",
    "add_warning",
    "admission_handler",
    "audit_annotations",
    "build_chain",
    "collecting_warnings",
]
