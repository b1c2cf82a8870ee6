"""The actor pipeline, assembled: authn -> authz -> admission -> resource, plus controllers.

Every request is authenticated from its headers first (:meth:`Pipeline.authenticate`, in the
gateway's task, before its query or body is looked at: kube's filter chain authenticates before
anything else), then enters at authz (:meth:`Pipeline.submit_authenticated`): one authentication
and one hop per request."""

from __future__ import annotations

import time
import uuid
from functools import partial
from typing import NoReturn

import msgspec
import trio

from bus import ROOT_TENANT, Log
from kinds import Registry
from projections import Projection

from ._admission import NamespaceLifecycle, admission_handler, build_chain
from ._admission_status import PolicyStatusController
from ._allocation import AllocationSettings
from ._apf_bootstrap import ApfBootstrap
from ._apf_fleet import FleetExchange, SeatLeases, fleet_subject, run_fleet, run_leases
from ._auth import TokenAuthenticator
from ._authn import Authenticator, authenticate_request
from ._authz import RBAC, READ_VERBS, Authorizer, authz_handler
from ._controllers import SYSTEM_USER, Controllers
from ._crd_controller import CrdControllers
from ._flowcontrol import Admission, FlowControl
from ._gc import GarbageCollector
from ._quota_controller import QuotaController
from ._rbac_controllers import RbacControllers
from ._resource import ResourceCore
from ._reviews import ReviewCore, service_account_user
from ._runtime import Actor, Stage
from ._tenancy import Tenancy, TenancyAdmission
from ._tokens import SigningKey, TokenVerifier
from ._tracing import Spans, current_child
from .messages import Allowed, Request, UserInfo, WriteResult


class Pipeline:
    """Owns the actors. ``authenticate`` then ``submit_authenticated`` carry a request through."""

    def __init__(self, log: Log, projection: Projection, registry: Registry,
                 authenticator: Authenticator | TokenAuthenticator,
                 signing_key: SigningKey, *, root_ca_pem: str = "", mailbox_size: int = 4096, workers: int = 64,
                 run_controllers: bool = True, spans: Spans | None = None,
                 authorization_modes: tuple[str, ...] = (RBAC,),
                 allocation: AllocationSettings | None = None,
                 api_endpoint: tuple[str, int] = ("127.0.0.1", 6443), server_concurrency: int = 600,
                 queue_wait_s: float = 15.0, quota_settle_s: float = 60.0, quota_resync_s: float = 300.0,
                 apf_fleet_period_s: float = 1.0, apf_fleet_lease_ttl_s: float = 0.0,
                 apf_fleet_fallback: float = 0.0) -> None:
        self.log, self.projection, self.registry = log, projection, registry
        lifecycle = NamespaceLifecycle(projection)
        #: kube's authorizer chain over the projection's RBAC view; impersonation checks use it too.
        self.authorizer = Authorizer(projection.rbac, authorization_modes, projection=projection)
        self.chain = build_chain(projection, registry, lifecycle)
        for policies in (self.chain.policies, self.chain.mutating_policies, self.chain.webhooks):
            if policies is not None:  # the ``authorizer`` variable of admission policies
                policies.authorizer = self.authorizer
        self.core = ResourceCore(log, projection, registry=registry, allocation=allocation, chain=self.chain)
        self.chain.attach(self.core, self.authorizer)
        self.core.guard = self.authorizer.guard  # RBAC escalation prevention, on the final object
        self.reviews_core = ReviewCore(projection, registry, signing_key, self.authorizer)
        self.reviews_core.chain = self.chain
        self.reviews: Actor[Request] = Actor("reviews", self.reviews_core.handle, mailbox_size=mailbox_size,
                                             workers=workers)
        if isinstance(authenticator, TokenAuthenticator):
            authenticator = Authenticator(authenticator)
        self.token_verifier = TokenVerifier(signing_key)  # signature checks cached briefly (by hash)
        authenticator.tokens.jwt = self._service_account_user
        self.reviews_core.tokens = authenticator.tokens  # TokenReview asks the same token authenticators
        self.reviews_core.oidc = authenticator.oidc
        #: Impersonation asks the same authorizer as authz (verb ``impersonate``), synchronously.
        self.authorize = self.authorizer.authorize_request
        self.resource: Actor[Request] = Actor("resource", self.core.handle, mailbox_size=mailbox_size,
                                              workers=workers * 4)
        self.admission: Actor[Request] = Actor("admission", admission_handler(lifecycle, self.resource, TenancyAdmission()),
                                               mailbox_size=mailbox_size, workers=workers)
        self.authz: Actor[Request] = Actor("authz", authz_handler(self.authorizer, self.admission, self.reviews),
                                           mailbox_size=mailbox_size, workers=workers)
        self.authn = Stage("authn")
        #: API Priority and Fairness between authn and authz; queue waits at kube's RequestTimeout/4.
        self.flow_control = FlowControl(projection, server_cl=server_concurrency, queue_wait_s=queue_wait_s)
        #: Fleet-wide fairness: demand reports exchanged with the other gateways (0: this one alone).
        self.apf_fleet_period_s = apf_fleet_period_s
        self.apf_fleet: FleetExchange | None = None
        #: Fleet-wide seat budgets: leased from each tenant's owner gateway (0: off, local limits).
        self.apf_fleet_lease_ttl_s, self.apf_fleet_fallback = apf_fleet_lease_ttl_s, apf_fleet_fallback
        self.apf_leases: SeatLeases | None = None
        self.authenticator = authenticator
        self.actors = (self.authz, self.admission, self.resource, self.reviews)
        #: Every step a request passes, for the metrics: authentication, then the actors.
        self.stages: tuple[Actor[Request] | Stage, ...] = (self.authn, *self.actors, *self.chain.stages)
        # Tracing (None: off): a span per stage, each a child of the request's span (Request.trace).
        self.spans = spans
        for a in self.actors:
            a.spans = spans
        self.core.spans = spans
        self.controllers = (Controllers(projection, registry, self.resource, root_ca_pem=root_ca_pem,
                                        signing_key=signing_key, api_endpoint=api_endpoint,
                                        first_ip=self.core.allocators.ips.address(0))
                            if run_controllers else None)
        self.rbac_controllers = (RbacControllers(projection, registry, self.resource)
                                 if run_controllers else None)
        #: The root tenant's controllers above; every other tenant's, and tenants' lives, here.
        self.tenancy = (Tenancy(projection, registry, self.resource, root_ca_pem=root_ca_pem,
                                signing_key=signing_key, api_endpoint=api_endpoint,
                                first_ip=self.core.allocators.ips.address(0)) if run_controllers else None)
        #: kube's APF objects per tenant; the tenancy bootstrap calls ``apf_bootstrap.ensure(tenant)``.
        self.apf_bootstrap = ApfBootstrap(projection, registry, self.resource)
        if self.tenancy is not None:
            self.tenancy.apf = self.apf_bootstrap
        self.run_controllers = run_controllers
        self.gc = GarbageCollector(projection, registry, self.resource, SYSTEM_USER) if run_controllers else None
        self.crd_controllers = CrdControllers(projection, registry, self.resource) if run_controllers else None
        #: status.typeChecking of ValidatingAdmissionPolicies (kube's status controller).
        self.policy_status = PolicyStatusController(projection, registry, self.resource) if run_controllers else None
        #: kube's resource quota controller: returns charges leaked by writes that failed after them.
        #: A quota correction waits until no write that may have charged it can still be running.
        self.quota = (QuotaController(projection, registry, self.core, SYSTEM_USER, settle_s=quota_settle_s,
                                      resync_s=quota_resync_s) if run_controllers else None)
        if self.quota is not None:
            self.stages = (*self.stages, self.quota.stage)

    @staticmethod
    def _system_request() -> Request:
        return Request(verb="repair", user=SYSTEM_USER, audit_id="allocation-repair",
                       user_agent="jetkube-controller-manager/repair")

    def _service_account_user(self, token: str) -> UserInfo:
        return service_account_user(self.token_verifier.verify(token), self.projection, token=token)

    def authenticate(self, req: Request) -> Request:
        """Authentication alone (401, or 403/400 for Impersonate-* headers): ``req`` with its user
        and tenant. The gateway calls this before it reads a request body, so a body is read and
        decoded only for a known user (as kube's filter chain). It runs in the caller's task: a
        token lookup costs less than a hop to the authn actor (an ask is ~40 us here), and the
        request then makes one hop, to authz."""
        t0 = time.perf_counter()
        try:
            if self.spans is None:
                return authenticate_request(self.authenticator, req, self.authorize)
            # The request span is this task's current span: the stages that follow are its children.
            trace = self.spans.current_traceparent()
            with current_child(self.spans if trace else None, "authn"):
                return authenticate_request(self.authenticator, msgspec.structs.replace(req, trace=trace),
                                            self.authorize)
        finally:
            self.authn.latency.observe(time.perf_counter() - t0)

    async def admit(self, req: Request, adm: Admission) -> None:
        """Flow control (API Priority and Fairness) for an authenticated request: returns once it
        holds its seats, recorded in ``adm``; the caller gives them back with :meth:`release`."""
        await self.flow_control.admit(req, adm)

    def release(self, adm: Admission) -> None:
        self.flow_control.release(adm)

    async def submit_authenticated(self, req: Request, *, timeout_s: float | None) -> Allowed | WriteResult:
        """The rest of the pipeline, from authz, for a request :meth:`authenticate` returned.
        ``timeout_s`` None: the caller's own deadline bounds it (see :meth:`Actor.ask`)."""
        if req.user is None:
            raise AssertionError("submit_authenticated needs an authenticated request")
        # A read is only authorized here (the gateway then serves it): nothing half done if the
        # caller goes, so the authz step runs in the caller's task when an authz slot is free
        # (no hop). A write's work must outlive its caller: it goes to the authz workers.
        result: Allowed | WriteResult = await self.authz.ask(req, timeout_s=timeout_s,
                                                             inline=req.verb in READ_VERBS)
        return result

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        """Run every actor; bootstrap the default namespaces; then start the controllers."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.flow_control.run)
            if self.apf_fleet_period_s > 0:
                self.apf_fleet = await nursery.start(partial(
                    run_fleet, self.flow_control.dispatcher, self.log.bridge, fleet_subject(self.log.prefix),
                    period_s=self.apf_fleet_period_s))
            if self.apf_fleet_lease_ttl_s > 0:
                self.apf_leases = await nursery.start(partial(
                    run_leases, self.flow_control, self.log.bridge, self.log.prefix, self.log.stream,
                    gateway=self.apf_fleet.gateway if self.apf_fleet is not None else uuid.uuid4().hex,
                    replicas=self.log.config.replicas, ttl_s=self.apf_fleet_lease_ttl_s,
                    fallback=self.apf_fleet_fallback, exchange=self.apf_fleet))
            for a in self.actors:
                await nursery.start(a.run)
            if self.rbac_controllers is not None:
                await self.rbac_controllers.bootstrap()
                await nursery.start(self.rbac_controllers.run)
            if self.run_controllers and not await self.apf_bootstrap.ensure(ROOT_TENANT):
                nursery.start_soon(self._retry_apf_bootstrap)
            if self.controllers is not None:
                await self.controllers.bootstrap()
                await nursery.start(self.controllers.run)
            if self.gc is not None:
                await nursery.start(self.gc.run)
                await nursery.start(partial(self.core.allocators.run_repair, self._system_request()))
            if self.crd_controllers is not None:
                await nursery.start(self.crd_controllers.run)
            if self.policy_status is not None:
                await nursery.start(self.policy_status.run)
            if self.quota is not None:
                await nursery.start(self.quota.run)
            if self.tenancy is not None:
                await nursery.start(self.tenancy.run)
            task_status.started()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _retry_apf_bootstrap(self) -> None:
        while not await self.apf_bootstrap.ensure(ROOT_TENANT):
            await trio.sleep(1.0)  # backoff against a log that failed at start
