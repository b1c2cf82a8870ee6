"""Allocators of values that must be unique cluster-wide (a Service's cluster IP and node ports),
as events on the log decided with CAS.

Every allocated value is an object on a subject of its own, appended with
``Nats-Expected-Last-Subject-Sequence`` = 0 (or the value's last tombstone): JetStream takes exactly
one of two concurrent claims, so two gateways can never hand out the same value. A cluster IP is an
``IPAddress`` (networking.k8s.io/v1, named by the address, with ``spec.parentRef`` naming the
Service: kube 1.33's MultiCIDRServiceAllocator records); a node port is a ``NodePortAllocation``
(allocation.jetkube.io, named by the port). Neither resource is served: they are state that the
projection folds from the log like any object, so allocations survive restarts.

The resource actor calls :meth:`Allocators.begin` for a write of a kind that has an allocation hook
(kinds/_allocation.py): it claims what the write needs and returns a :class:`Txn`; after the
object's own append the actor calls ``commit`` (releasing what the write gave up), and on any failure
``abort`` (releasing what was claimed). A crash between the claim and the object's append leaves
a claim with no holder: the repair pass (:meth:`Allocators.repair_once`, kube's repair controllers)
releases a claim whose parent does not hold it when two passes in a row found it so, unchanged.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from random import Random
from typing import Any, NoReturn

import msgspec
import trio

from bus import BusError, BusTimeout, Key, WrongLastSequence
from kinds import ResourceDef
from kinds._allocation import IPRange, PortRange, allocating_resources, allocation_hook_for
from kinds._errors import ApiError, Cause, InternalError, ServiceUnavailable, Timeout, invalid
from kinds._validation import _go_repr
from projections import Projection, ResourceVersionTooLarge

from ._cas import append_new
from ._decide import now_rfc3339
from .messages import Request

log = logging.getLogger("jetkube.allocation")

IPADDRESSES = ResourceDef("networking.k8s.io", "v1", "IPAddress", "ipaddresses", "ipaddress", False)
NODEPORTS = ResourceDef("allocation.jetkube.io", "v1", "NodePortAllocation", "nodeportallocations",
                        "nodeportallocation", False)
_MANAGED_BY = "ipallocator.k8s.io"
# CAS attempts a dynamic allocation makes on values its projection thought free (lost races)
# before it gives up; the scan itself is bounded by the range's size.
MAX_CLAIM_RACES = 32

# (req, key, etype, object, expected sequence, attempt) -> the stored JSON: ResourceCore._append.
AppendFn = Callable[[Request, Key, str, dict[str, Any], int, int], Awaitable[bytes]]


@dataclass(frozen=True)
class AllocationSettings:
    service_cluster_ip_range: str = "10.96.0.0/12"
    service_node_port_range: str = "30000-32767"
    repair_interval_s: float = 60.0


class _Taken(Exception):
    """The value is held by someone else (a claim lost the CAS race or found it taken)."""


@dataclass
class Txn:
    """One write's allocations: ``commit`` after the object's append, ``abort`` when it failed."""

    owner: Allocators | None = None
    req: Request | None = None
    claimed: list[Key] = field(default_factory=list)
    to_release: list[tuple[Key, str, str]] = field(default_factory=list)  # (key, parent ns, parent name)

    async def commit(self) -> None:
        if self.owner is not None and self.req is not None:
            for key, ns, name in self.to_release:
                await self.owner.release(self.req, key, ns, name)

    async def abort(self, error: BaseException | None = None) -> None:
        """Release what was claimed, unless ``error`` leaves open whether the object's append was
        applied (a timeout, a dropped connection, a cancelled request): then the object may hold the
        values, and the repair pass decides from the log (it releases only claims no object holds)."""
        if error is not None and _maybe_applied(error):
            if self.claimed:
                log.warning("a write that claimed %s may or may not have been applied (%s); the repair pass "
                            "settles it", ", ".join(k.name for k in self.claimed), type(error).__name__)
            return
        if self.owner is not None and self.req is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                for key in self.claimed:
                    await self.owner.release(self.req, key, self.req.namespace, "", any_parent=True)


NOOP = Txn()


def _claim_audit_id(req: Request, rdef: ResourceDef) -> str:
    """The audit ID a claim or release is written under: the request's, qualified. The request's
    own ID names its one object event (one accepted mutation, one message under that ID); its
    claims are traceable to it by the prefix."""
    return f"{req.audit_id}/{rdef.singular}"


def _maybe_applied(error: BaseException) -> bool:
    if isinstance(error, BaseExceptionGroup):
        return any(_maybe_applied(e) for e in error.exceptions)
    return isinstance(error, (BusTimeout, trio.Cancelled, trio.TooSlowError, Timeout))


class Allocators:
    def __init__(self, projection: Projection, append: AppendFn, settings: AllocationSettings | None = None) -> None:
        self.projection = projection
        self.append = append
        self.settings = settings = settings or AllocationSettings()
        self.ips = IPRange(settings.service_cluster_ip_range)
        self.ports = PortRange(settings.service_node_port_range)
        self.rng = Random(secrets.randbits(64))
        self._suspects: dict[Key, int] = {}
        #: Claims the repair pass released (leaks found).
        self.repaired = 0

    # ---- the write path ------------------------------------------------------------------------------

    async def begin(self, req: Request, etype: str, new: dict[str, Any], old: dict[str, Any] | None, *,
                    dry: bool = False) -> Txn:
        """Claim what ``new`` needs beyond what ``old`` holds (filling the values into ``new``), and
        plan the release of what it gives up. ``etype`` "delete": release everything ``old`` holds.
        Dry run: check and choose, claim nothing."""
        assert req.rdef is not None
        hook = allocation_hook_for(req.rdef)
        if hook is None:
            return NOOP
        ns = new["metadata"].get("namespace", "")
        name = new["metadata"].get("name", "")
        held_ips, held_ports = hook.held(old)
        txn = Txn(self, req)
        if etype == "delete":
            txn.to_release = [*((self._ip_key(req, ip), ns, name) for ip in held_ips),
                              *((self._port_key(req, p), ns, name) for p in held_ports)]
            return txn
        wants = hook.wants(new, old)
        try:
            ips = [await self._ip(req, txn, ip, held_ips, wants.ips, ns, name, dry) for ip in wants.ips]
            ports = await self._node_ports(req, txn, wants.ports, held_ports, new, ns, name, dry)
            hc = None if wants.health_check is None else await self._health_check(
                req, txn, wants.health_check, held_ports, set(ports.values()), ns, name, dry)
        except BaseException:
            await txn.abort()
            raise
        hook.fill(new, ips, ports, hc)
        now_ips, now_ports = hook.held(new)
        txn.to_release = [*((self._ip_key(req, ip), ns, name) for ip in held_ips - now_ips),
                          *((self._port_key(req, p), ns, name) for p in held_ports - now_ports)]
        return txn

    async def _ip(self, req: Request, txn: Txn, ip: str, held: set[str], all_ips: list[str], ns: str, name: str,
                  dry: bool) -> str:
        if ip and ip in held:
            return ip
        if not ip:
            return await self._claim_next(req, txn, IPADDRESSES,
                                          lambda i: self.ips.address(i), self.ips.candidates(self.rng), ns, name,
                                          dry, "failed to allocate a serviceIP")
        if self.ips.index(ip) is None:
            why = (f"the provided IP ({ip}) is not in the valid range. The range of valid IPs is {self.ips}")
        else:
            try:
                await self._claim(req, txn, IPADDRESSES, ip, ns, name, dry)
                return ip
            except _Taken:
                why = "provided IP is already allocated"
        raise invalid("Service", name, [Cause("FieldValueInvalid", f"Invalid value: {_go_repr(all_ips)}: failed to "
                                                                   f"allocate IP {ip}: {why}", "spec.clusterIPs")])

    async def _node_ports(self, req: Request, txn: Txn, wants: dict[int, int], held: set[int], new: dict[str, Any],
                          ns: str, name: str, dry: bool) -> dict[int, int]:
        plist = new["spec"].get("ports") or []
        out: dict[int, int] = {}
        by_port_number: dict[Any, int] = {}  # ports with the same port number share a node port
        mine: set[int] = set()
        for i, want in wants.items():
            number = plist[i].get("port")
            if want == 0 and number in by_port_number:
                out[i] = by_port_number[number]
                continue
            if want == 0:
                got = await self._claim_next(req, txn, NODEPORTS, lambda j: str(self.ports.port(j)),
                                             self.ports.candidates(self.rng), ns, name, dry,
                                             "failed to allocate a nodePort", exclude={str(p) for p in mine | held})
                port = int(got)
            else:
                port = want
                if port not in held and port not in mine:
                    why = None
                    if self.ports.index(port) is None:
                        why = (f"provided port is not in the valid range. The range of valid ports is "
                               f"{self.ports}")
                    else:
                        try:
                            await self._claim(req, txn, NODEPORTS, str(port), ns, name, dry)
                        except _Taken:
                            why = "provided port is already allocated"
                    if why is not None:
                        raise invalid("Service", name, [Cause("FieldValueInvalid", f"Invalid value: {port}: {why}",
                                                              f"spec.ports[{i}].nodePort")])
            mine.add(port)
            by_port_number.setdefault(number, port)
            out[i] = port
        return out

    async def _health_check(self, req: Request, txn: Txn, want: int, held: set[int], mine: set[int], ns: str,
                            name: str, dry: bool) -> int:
        """``allocHealthCheckNodePort``: the requested port, or any; its failures are kube's 500s."""
        if want and (want in held or want in mine):
            return want
        if not want:
            got = await self._claim_next(req, txn, NODEPORTS, lambda j: str(self.ports.port(j)),
                                         self.ports.candidates(self.rng), ns, name, dry,
                                         "failed to allocate a nodePort", exclude={str(p) for p in mine | held})
            return int(got)
        if self.ports.index(want) is None:
            why = f"provided port is not in the valid range. The range of valid ports is {self.ports}"
        else:
            try:
                await self._claim(req, txn, NODEPORTS, str(want), ns, name, dry)
                return want
            except _Taken:
                why = "provided port is already allocated"
        raise InternalError(f"Internal error occurred: failed to allocate requested HealthCheck NodePort {want}: "
                            f"{why}")

    def _ip_key(self, req: Request, ip: str) -> Key:
        return Key(req.tenant, IPADDRESSES.group, IPADDRESSES.plural, "", ip)

    def _port_key(self, req: Request, port: int) -> Key:
        return Key(req.tenant, NODEPORTS.group, NODEPORTS.plural, "", str(port))

    def _record(self, rdef: ResourceDef, value: str, parent: tuple[str, str], ns: str, name: str) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": value, "uid": str(uuid.uuid4()), "creationTimestamp": now_rfc3339()}
        if rdef is IPADDRESSES:
            meta["labels"] = {"ipaddress.kubernetes.io/ip-family": "IPv4",
                              "ipaddress.kubernetes.io/managed-by": _MANAGED_BY}
        return {"apiVersion": rdef.api_version, "kind": rdef.kind, "metadata": meta,
                "spec": {"parentRef": {"group": parent[0], "resource": parent[1], "namespace": ns, "name": name}}}

    async def _claim(self, req: Request, txn: Txn, rdef: ResourceDef, value: str, ns: str, name: str,
                     dry: bool, parent: tuple[str, str] | None = None) -> None:
        """Append the value's record with CAS: expected 0, or the subject's last tombstone. The
        record names its holder: ``parent`` (group, resource; default: the request's kind), ns, name."""
        key = Key(req.tenant, rdef.group, rdef.plural, "", value)
        if parent is None:
            assert req.rdef is not None
            parent = (req.rdef.group, req.rdef.plural)
        if dry:
            if self.projection.get(key) is not None:
                raise _Taken(value)
            return
        sub = msgspec.structs.replace(req, rdef=rdef, verb="create", namespace="", name=value,
                                      audit_id=_claim_audit_id(req, rdef))
        record = self._record(rdef, value, parent, ns, name)

        async def append(expected: int, _attempt: int) -> None:
            # A fresh attempt number: a claim released and made again by the same request is a
            # new append, never a duplicate of the first (Nats-Msg-Id).
            await self.append(sub, key, "put", record, expected, secrets.randbits(40) + 1)

        try:
            await append_new(self.projection, key, append, tries=8, taken=lambda: _Taken(value))
        except ResourceVersionTooLarge:
            raise ServiceUnavailable("the log is ahead of this gateway; try again") from None
        txn.claimed.append(key)

    async def _claim_next(self, req: Request, txn: Txn, rdef: ResourceDef, value_of: Callable[[int], str],
                          candidates: Iterator[int], ns: str, name: str, dry: bool, what: str, *,
                          exclude: AbstractSet[str] = frozenset()) -> str:
        st = self.projection.state(req.tenant, rdef.group, rdef.plural)
        races = 0
        for n, i in enumerate(candidates):
            if n % 4096 == 4095:
                await trio.lowlevel.checkpoint()  # a nearly full /12 is a million probes: stay responsive
            value = value_of(i)
            if value in exclude or st.get("", value) is not None:
                continue
            try:
                await self._claim(req, txn, rdef, value, ns, name, dry)
                return value
            except _Taken:
                races += 1
                if races >= MAX_CLAIM_RACES:
                    raise ServiceUnavailable(f"{what}: too many concurrent allocations, try again") from None
        raise InternalError(f"Internal error occurred: {what}: range is full")

    async def release(self, req: Request, key: Key, ns: str, name: str, *, any_parent: bool = False) -> None:
        """Tombstone the value's record with CAS, if it is still held by that parent. Failures are
        logged and left to the repair pass: a release never fails a write that has succeeded."""
        rdef = IPADDRESSES if key.resource == IPADDRESSES.plural else NODEPORTS
        sub = msgspec.structs.replace(req, rdef=rdef, verb="delete", namespace="", name=key.name,
                                      audit_id=_claim_audit_id(req, rdef))
        for _ in range(4):
            entry = self.projection.get(key)
            if entry is None:
                return
            obj = msgspec.json.decode(entry.data)
            parent = (obj.get("spec") or {}).get("parentRef") or {}
            if not any_parent and (parent.get("namespace"), parent.get("name")) != (ns, name):
                return  # someone else's now
            obj["metadata"].pop("resourceVersion", None)
            try:
                await self.append(sub, key, "delete", obj, entry.seq, secrets.randbits(40) + 1)
                return
            except WrongLastSequence as e:
                try:
                    await self.projection.wait_for(e.current)
                except ResourceVersionTooLarge:
                    break
            except (ApiError, BusError, trio.TooSlowError) as e:
                log.warning("releasing %s failed: %s; the repair pass will", key.name, e)
                return

    # ---- repair --------------------------------------------------------------------------------------

    def _orphans(self) -> dict[Key, int]:
        """Claims whose parent (``spec.parentRef``) does not exist or does not hold the value."""
        out: dict[Key, int] = {}
        hooks = allocating_resources()
        for (tenant, group, resource), st in list(self.projection.store.resources.items()):
            if (group, resource) not in ((IPADDRESSES.group, IPADDRESSES.plural), (NODEPORTS.group, NODEPORTS.plural)):
                continue
            for _, value, entry in list(st.iter_entries(None)):
                parent = (msgspec.json.decode(entry.data).get("spec") or {}).get("parentRef") or {}
                pkey = (parent.get("group", ""), parent.get("resource", ""))
                hook = hooks.get(pkey)
                held = False
                if hook is not None and parent.get("name"):
                    holder = self.projection.get(Key(tenant, *pkey, parent.get("namespace", ""), parent["name"]))
                    if holder is not None:
                        ips, ports = hook.held(msgspec.json.decode(holder.data))
                        held = value in ips if resource == IPADDRESSES.plural else value in {str(p) for p in ports}
                if not held:
                    out[Key(tenant, group, resource, "", value)] = entry.seq
        return out

    async def _restore_missing(self, req: Request) -> int:
        """Claims a stored object holds without a record (e.g. one released by mistake): made again
        for it, as kube's repair controllers do; a value another holds now is logged."""
        made = 0
        hooks = allocating_resources()
        for (tenant, group, resource), st in list(self.projection.store.resources.items()):
            hook = hooks.get((group, resource))
            if hook is None:
                continue
            sub = msgspec.structs.replace(req, tenant=tenant)
            for ns, name, entry in list(st.iter_entries(None)):
                ips, ports = hook.held(msgspec.json.decode(entry.data))
                for rdef, values in ((IPADDRESSES, sorted(ips)), (NODEPORTS, sorted(str(p) for p in ports))):
                    for value in values:
                        if self.projection.get(Key(tenant, rdef.group, rdef.plural, "", value)) is not None:
                            continue
                        try:
                            await self._claim(sub, Txn(), rdef, value, ns, name, False, (group, resource))
                            made += 1
                        except _Taken:
                            log.warning("%s/%s holds %s %s, allocated to another meanwhile", ns, name, rdef.kind,
                                        value)
        return made

    async def repair_once(self, req: Request) -> int:
        """One pass: claims that stored Services hold without a record are made again; claims found
        orphaned, unchanged, by the previous pass too (a claim whose Service create is still in flight
        is younger than one pass) are released. Returns how many claims were released."""
        await self.projection.consistent()
        await self._restore_missing(req)
        orphans = self._orphans()
        released = 0
        for key, seq in orphans.items():
            if self._suspects.get(key) == seq:
                entry = self.projection.get(key)
                if entry is not None and entry.seq == seq:
                    await self.release(msgspec.structs.replace(req, tenant=key.tenant), key, "", "",
                                       any_parent=True)
                    released += 1
        self._suspects = {k: s for k, s in orphans.items() if self.projection.get(k) is not None}
        self.repaired += released
        if released:
            log.warning("the allocation repair released %d leaked claim(s)", released)
        return released

    async def run_repair(self, req: Request, *,
                         task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        task_status.started()
        while True:
            await trio.sleep(self.settings.repair_interval_s)
            try:
                await self.repair_once(req)
            except (ApiError, BusError, trio.TooSlowError) as e:
                log.warning("allocation repair pass failed: %s", e)
