"""Controllers that follow the log, as kube-controller-manager's do.

- bootstrap: the namespaces every cluster starts with.
- serviceaccounts: every active namespace has a ``default`` ServiceAccount.
- namespaces: a terminating namespace is emptied, then finalized (its tombstone appended).
- root CA publisher: every active namespace has the ``kube-root-ca.crt`` ConfigMap with the
  cluster CA, re-created when deleted and restored when edited (kube's rootcacertpublisher).
- legacy service-account tokens: a ``kubernetes.io/service-account-token`` Secret gets its
  ``token``, ``ca.crt`` and ``namespace`` filled in (a legacy JWT for the service account its
  annotation names), or is deleted when that service account does not exist (kube's tokens_controller).

Every gateway replica runs them; CAS at the log makes concurrent replicas safe (a lost race is
an AlreadyExists or a no-op). They write through the resource actor as ``system:apiserver``.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import uuid
from typing import Any, NoReturn

import msgspec
import trio

from bus import ROOT_TENANT, BusError, Key, decode_event
from kinds import DEFAULT_NAMESPACES, NAMESPACES, Registry
from kinds._errors import AlreadyExists, ApiError, Conflict, Forbidden, Invalid, NotFound, ServiceUnavailable
from projections import (
    DELETED,
    Change,
    ChangeFeed,
    Projection,
    WatchFilter,
    parse_field_selector,
    parse_label_selector,
)

from ._runtime import Actor, WorkQueue, every
from ._tokens import SigningKey, legacy_claims
from .messages import FINALIZE, Request, UserInfo

log = logging.getLogger("jetkube.controllers")

SYSTEM_USER = UserInfo(name="system:apiserver", uid="system:apiserver", groups=("system:masters",))
_ALL = WatchFilter(None, parse_label_selector(""), parse_field_selector(""))
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
ROOT_CA_DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as "
    "the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of "
    "Kubernetes clusters.")
_DESCRIPTION_ANNOTATION = "kubernetes.io/description"
SA_TOKEN_SECRET = "kubernetes.io/service-account-token"
SA_NAME_ANNOTATION = "kubernetes.io/service-account.name"
SA_UID_ANNOTATION = "kubernetes.io/service-account.uid"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


KUBERNETES_SERVICE_NAMESPACE = "default"


def kubernetes_service(ip: str, target_port: int) -> dict[str, Any]:
    """The ``kubernetes`` Service as kube-apiserver writes it (controlplane/reconcilers)."""
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip], "sessionAffinity": "None",
                     "internalTrafficPolicy": "Cluster", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": target_port}]}}


def kubernetes_endpoints(host: str, port: int) -> dict[str, Any]:
    """Its Endpoints: this server's address (a loopback one when it listens on every address)."""
    try:
        addr = ipaddress.ip_address(host)
        ip = "127.0.0.1" if addr.is_unspecified else str(addr)
    except ValueError:
        ip = "127.0.0.1"
    return {"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": ip}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]}


def root_ca_configmap(current: dict[str, Any] | None, ca_pem: str, *,
                      written_by_controller: bool = False) -> dict[str, Any] | None:
    """The ``kube-root-ca.crt`` ConfigMap to write given the ``current`` one (None: absent), or None
    when it is as it should be: ``data`` exactly ``{"ca.crt": <CA>}`` and a non-empty description
    annotation; other metadata is kept (publisher.go ``syncNamespace``).

    ``written_by_controller``: the current one was last written by this controller on another
    replica. Replicas must share the cluster CA (as they share the signing key); if they do not,
    the first one's stands, rather than replicas rewriting each other's without end.
    """
    if current is not None and written_by_controller:
        return None
    data = {"ca.crt": ca_pem}
    if current is None:
        return {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": ROOT_CA_CONFIGMAP, "annotations": {_DESCRIPTION_ANNOTATION: ROOT_CA_DESCRIPTION}},
                "data": data}
    meta = current.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    if current.get("data") == data and annotations.get(_DESCRIPTION_ANNOTATION):
        return None
    return {**current, "data": data, "metadata": {**meta, "annotations": {
        **annotations, _DESCRIPTION_ANNOTATION: ROOT_CA_DESCRIPTION}}}


class Controllers:
    def __init__(self, projection: Projection, registry: Registry, resource: Actor[Request], *,
                 root_ca_pem: str = "", tenant: str = ROOT_TENANT, queue_size: int = 10_000,
                 resync_s: float = 60.0, signing_key: SigningKey | None = None,
                 api_endpoint: tuple[str, int] = ("127.0.0.1", 6443), first_ip: str = "10.96.0.1") -> None:
        self.projection = projection
        self.registry = registry
        self.resource = resource
        self.tenant = tenant
        self.queue: WorkQueue[str] = WorkQueue(queue_size)  # namespaces of this tenant
        self.resync_s = resync_s
        self.root_ca_pem = root_ca_pem  # "": no CA to publish
        self.signing_key = signing_key  # None: no legacy token controller
        ns_def = registry.by_resource(*NAMESPACES)
        sa_def = registry.by_resource("", "serviceaccounts")
        cm_def = registry.by_resource("", "configmaps")
        secret_def = registry.by_resource("", "secrets")
        assert ns_def is not None and sa_def is not None and cm_def is not None and secret_def is not None
        self.ns_def, self.sa_def, self.cm_def, self.secret_def = ns_def, sa_def, cm_def, secret_def
        # The `kubernetes` Service (and its Endpoints) in `default`, when those kinds are served.
        self.svc_def = registry.by_resource("", "services")
        self.ep_def = registry.by_resource("", "endpoints")
        self.api_endpoint = api_endpoint
        self.first_ip = first_ip  # the service range's first address

    def _request(self, **kw: Any) -> Request:
        return Request(user=SYSTEM_USER, audit_id=str(uuid.uuid4()), user_agent="jetkube-controller-manager",
                       tenant=self.tenant, **kw)

    async def bootstrap(self) -> None:
        """Create the default namespaces that do not exist yet, and reconcile them once."""
        for ns in DEFAULT_NAMESPACES:
            if self.projection.get(Key(self.tenant, *NAMESPACES, "", ns)) is not None:
                continue
            req = self._request(verb="create", rdef=self.ns_def, name=ns,
                                body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            try:
                await self.resource.ask(req, timeout_s=30)
            except AlreadyExists:
                pass
        # Ready means the default namespaces are complete (serviceaccount, root CA): the controller
        # loop would get there too, moments later; clients and tests should not race it.
        await self.projection.consistent()
        for ns in DEFAULT_NAMESPACES:
            try:
                await self.reconcile(ns)
            except (ApiError, trio.TooSlowError) as e:
                log.warning("bootstrap of namespace %s incomplete: %s; the controller loop retries", ns, e)

    def enqueue(self, namespace: str) -> None:
        self.queue.add(namespace)

    def wants(self, key: tuple[str, str, str], ch: Change) -> bool:
        """What :meth:`on_change` may act on (the projection sends nothing else): this tenant's
        namespaces, and in a namespace every deletion, its Secrets and the root CA ConfigMap."""
        tenant, group, resource = key
        if tenant != self.tenant:
            return False
        if (group, resource) == NAMESPACES:
            return True
        return bool(ch.namespace) and (ch.type == DELETED or group == "" and (
            resource == "secrets" or resource == "configmaps" and ch.name == ROOT_CA_CONFIGMAP))

    def on_change(self, ch: Change, tenant: str, group: str, resource: str) -> None:
        if tenant != self.tenant:
            return
        if (group, resource) == NAMESPACES:
            if ch.type != DELETED:
                self.enqueue(ch.name)
        elif ch.namespace:
            ns = self.projection.get(Key(tenant, *NAMESPACES, "", ch.namespace))
            terminating = ns is not None and ns.fields.get("status.phase") == "Terminating"
            if (terminating and ch.type == DELETED
                    or group == "" and resource == "serviceaccounts" and ch.type == DELETED
                    or group == "" and resource == "configmaps" and ch.name == ROOT_CA_CONFIGMAP
                    or group == "" and resource == "secrets" and ch.type != DELETED
                    and ch.entry.fields.get("type") == SA_TOKEN_SECRET):
                self.enqueue(ch.namespace)

    def resync(self) -> None:
        st = self.projection.state(self.tenant, *NAMESPACES)
        for _, name, _ in st.iter_entries(None):
            self.enqueue(name)

    async def run(self, *, changes: ChangeFeed | None = None,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        """``changes``: the projection's changes (a tenant's only, from the tenancy controller);
        None: subscribe to all of them."""
        if changes is None:
            changes = self.projection.feed(accept=self.wants)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._follow, changes)
            nursery.start_soon(every, self.resync_s, self.resync)
            self.resync()
            task_status.started()
            while True:
                ns = await self.queue.get()
                try:
                    await self.reconcile(ns)
                except (ApiError, BusError, trio.TooSlowError) as e:  # the log may be down: retried
                    log.warning("reconcile of namespace %s failed: %s; will retry", ns, e)
                    nursery.start_soon(self.queue.add_later, ns, 1.0)

    async def _follow(self, changes: ChangeFeed) -> None:
        """Every change; a change lost (the feed was full) resyncs once the feed is drained."""
        await changes.follow(lambda key, ch: self.on_change(ch, *key), self.resync,
                             name=f"the namespace controllers of tenant {self.tenant}")

    async def reconcile(self, ns: str) -> None:
        entry = self.projection.get(Key(self.tenant, *NAMESPACES, "", ns))
        if entry is None:
            return
        if entry.fields.get("status.phase") == "Terminating":
            await self._empty_namespace(ns)
        else:
            await self._ensure_default_sa(ns)
            await self._publish_root_ca(ns)
            if ns == KUBERNETES_SERVICE_NAMESPACE:
                await self._ensure_kubernetes_service()
            await self._legacy_tokens(ns)

    async def _legacy_tokens(self, ns: str) -> None:
        """kube's tokens_controller ``syncSecret`` for each service-account-token Secret of ``ns``."""
        if self.signing_key is None:
            return
        st = self.projection.state(self.tenant, "", "secrets")
        todo = [e for _, _, e in st.iter_entries(ns) if e.fields.get("type") == SA_TOKEN_SECRET]
        for entry in todo:
            secret = msgspec.json.decode(entry.data)
            meta = secret.get("metadata") or {}
            if meta.get("deletionTimestamp"):
                continue
            annotations = meta.get("annotations") or {}
            sa_name = annotations.get(SA_NAME_ANNOTATION)
            if not isinstance(sa_name, str) or not sa_name:
                continue  # (kube refuses such a Secret at create; never deleted here)
            sa_entry = self.projection.get(Key(self.tenant, "", "serviceaccounts", ns, sa_name))
            sa_uid = None if sa_entry is None else msgspec.json.decode(sa_entry.data)["metadata"].get("uid")
            wanted_uid = annotations.get(SA_UID_ANNOTATION)
            if sa_uid is None or (wanted_uid and wanted_uid != sa_uid):
                # The service account is gone (or was re-created): its token Secret goes too.
                req = self._request(verb="delete", rdef=self.secret_def, namespace=ns, name=meta["name"], body=None)
                try:
                    await self.resource.ask(req, timeout_s=30)
                except (NotFound, Conflict):
                    pass
                continue
            data = secret.get("data") or {}
            if data.get("token") and wanted_uid:
                continue
            token = self.signing_key.sign(legacy_claims(ns, sa_name, sa_uid, meta["name"], self.tenant))
            body = {**secret, "metadata": {**meta, "annotations": {**annotations, SA_UID_ANNOTATION: sa_uid}},
                    "data": {**data, "token": _b64(token), "namespace": _b64(ns),
                             **({"ca.crt": _b64(self.root_ca_pem)} if self.root_ca_pem else {})}}
            req = self._request(verb="update", rdef=self.secret_def, namespace=ns, name=meta["name"], body=body)
            try:
                await self.resource.ask(req, timeout_s=30)
            except (NotFound, Conflict):
                pass  # changed meanwhile: that change requeues the namespace

    async def _ensure_default_sa(self, ns: str) -> None:
        if self.projection.get(Key(self.tenant, "", "serviceaccounts", ns, "default")) is not None:
            return
        req = self._request(verb="create", rdef=self.sa_def, namespace=ns,
                            body={"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}})
        try:
            await self.resource.ask(req, timeout_s=30)
        except (AlreadyExists, Forbidden, NotFound):
            pass  # another replica made it, or the namespace is going away

    async def _ensure_kubernetes_service(self) -> None:
        """kube-apiserver's ``kubernetes`` Service in ``default`` on the range's first address, and
        its Endpoints naming this server (controlplane's reconciler). Re-created when deleted."""
        ns = KUBERNETES_SERVICE_NAMESPACE
        host, port = self.api_endpoint
        if self.svc_def is not None and self.projection.get(
                Key(self.tenant, "", "services", ns, "kubernetes")) is None:
            req = self._request(verb="create", rdef=self.svc_def, namespace=ns,
                                body=kubernetes_service(self.first_ip, port))
            try:
                await self.resource.ask(req, timeout_s=30)
            except (AlreadyExists, Invalid, Forbidden, NotFound):
                pass  # another replica made it (Invalid: it holds the address), or the namespace is going away
        if self.ep_def is not None and self.projection.get(
                Key(self.tenant, "", "endpoints", ns, "kubernetes")) is None:
            req = self._request(verb="create", rdef=self.ep_def, namespace=ns, body=kubernetes_endpoints(host, port))
            try:
                await self.resource.ask(req, timeout_s=30)
            except (AlreadyExists, Forbidden, NotFound):
                pass
            except Invalid as e:  # an address the Endpoints validation refuses: not retried forever
                log.warning("the kubernetes Endpoints cannot name %s: %s", host, e)

    async def _publish_root_ca(self, ns: str) -> None:
        if not self.root_ca_pem:
            return
        key = Key(self.tenant, "", "configmaps", ns, ROOT_CA_CONFIGMAP)
        entry = self.projection.get(key)
        current = None if entry is None else msgspec.json.decode(entry.data)
        if root_ca_configmap(current, self.root_ca_pem) is None:
            return
        body = root_ca_configmap(current, self.root_ca_pem, written_by_controller=await self._ours(key))
        if body is None:
            log.warning("%s/%s holds another replica's CA: every replica must be given the same CA", ns,
                        ROOT_CA_CONFIGMAP)
            return
        req = self._request(verb="create" if entry is None else "update", rdef=self.cm_def, namespace=ns,
                            name="" if entry is None else ROOT_CA_CONFIGMAP, body=body)
        try:
            await self.resource.ask(req, timeout_s=30)
        except (AlreadyExists, Forbidden, NotFound):
            pass  # another replica made it (its change requeues us), or the namespace is going away

    async def _ours(self, key: Key) -> bool:
        """Whether the object's last write (read from the log) was this controller's."""
        log_ = self.projection.log
        try:
            last = await log_.last_message(log_.subject(key))
        except BusError as e:
            raise ServiceUnavailable(f"reading the last writer of {key.name}: {e}") from e  # retried later
        return last is not None and decode_event(last[2]).actor.user == SYSTEM_USER.name

    async def _empty_namespace(self, ns: str) -> None:
        remaining = 0
        for rdef in self.registry.for_tenant(self.tenant).defs:  # the tenant's custom resources too
            if not rdef.namespaced or rdef.storage:  # a version served by conversion: its storage's
                continue
            st = self.projection.state(self.tenant, rdef.group, rdef.plural)
            for _, name, e in list(st.iter_entries(ns)):
                remaining += 1
                if b'"deletionTimestamp"' in e.data and msgspec.json.decode(e.data)["metadata"].get(
                        "deletionTimestamp"):
                    continue  # waiting for its finalizers
                req = self._request(verb="delete", rdef=rdef, namespace=ns, name=name, body=None)
                try:
                    await self.resource.ask(req, timeout_s=30)
                except (NotFound, Conflict):
                    pass
        if remaining == 0:
            req = self._request(verb=FINALIZE, rdef=self.ns_def, name=ns)
            try:
                await self.resource.ask(req, timeout_s=30)
            except (NotFound, Conflict):
                pass
