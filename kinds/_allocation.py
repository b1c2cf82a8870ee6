"""Kinds that hold allocated values (a Service's cluster IPs and node ports): what a write asks
for and where the answers go. Pure functions; the allocators that claim values on the log are
actors/_allocation.py.

A kind declares it allocates by having a hook here (:func:`allocation_hook_for`), keyed by its
definition; the resource actor asks for the hook, never for the kind by name. The ranges are the
apiserver's flags, parsed once into :class:`IPRange` and :class:`PortRange` (stdlib ``ipaddress``);
both keep kube's bitmap allocator's split: dynamic allocation starts in the upper band, leaving
the lower band (the first ``offset`` values) for addresses users ask for by value.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field
from random import Random
from typing import Any

from ._defs import ResourceDef
from ._errors import Cause, invalid
from ._validation import _invalid

IPFamily = "IPv4"


def _range_offset(size: int, *, lo: int, hi: int, step: int) -> int:
    """kube's ``calculateRangeOffset``: the size of the static band at the start of a range."""
    if size < lo:
        return 0
    return max(lo, min(hi, size // step))


class _Range:
    size: int
    offset: int

    def candidates(self, rng: Random) -> Iterator[int]:
        """Indexes to try for a dynamic allocation, each once: the upper band from a random start
        (wrapping), then the lower band likewise (kube's randomScanStrategyWithOffset)."""
        upper = self.size - self.offset
        if upper > 0:
            start = rng.randrange(upper)
            for i in range(upper):
                yield self.offset + (start + i) % upper
        if self.offset > 0:
            start = rng.randrange(self.offset)
            for i in range(self.offset):
                yield (start + i) % self.offset


class IPRange(_Range):
    """The allocatable addresses of ``--service-cluster-ip-range``: the network without its
    network and broadcast addresses. Index 0 is the first address (the ``kubernetes`` service's)."""

    def __init__(self, cidr: str) -> None:
        try:
            net = ipaddress.ip_network(cidr, strict=True)
        except ValueError as e:
            raise ValueError(f"--service-cluster-ip-range {cidr!r}: {e}") from None
        if not isinstance(net, ipaddress.IPv4Network):
            raise ValueError(  # noqa: TRY004 (a bad flag value, not a wrong type)
                f"--service-cluster-ip-range {cidr!r}: only IPv4 (single-stack) is served")
        if net.prefixlen < 12:
            raise ValueError(f"--service-cluster-ip-range {cidr!r} is too large; for 32-bit addresses, the mask "
                             f"must be >= 12")
        if net.prefixlen > 30:
            raise ValueError(f"--service-cluster-ip-range {cidr!r} is too small: it leaves no address to allocate")
        self.network = net
        self.size = net.num_addresses - 2
        self.offset = _range_offset(self.size, lo=16, hi=256, step=16)

    def __str__(self) -> str:
        return str(self.network)

    def address(self, index: int) -> str:
        if not 0 <= index < self.size:
            raise IndexError(index)
        return str(self.network.network_address + 1 + index)

    def index(self, ip: str) -> int | None:
        """The index of ``ip`` in the range, None when outside it (or the network/broadcast)."""
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        if addr.version != 4 or addr not in self.network:
            return None
        i = int(addr) - int(self.network.network_address) - 1
        return i if 0 <= i < self.size else None


class PortRange(_Range):
    """``--service-node-port-range``: ``base-last`` inclusive (or ``base+size``)."""

    def __init__(self, spec: str) -> None:
        try:
            if "+" in spec:
                b, n = spec.split("+", 1)
                base, size = int(b), int(n) + 1
            else:
                b, _, e = spec.partition("-")
                base, size = int(b), int(e or b) - int(b) + 1
        except ValueError:
            raise ValueError(f"--service-node-port-range {spec!r}: expected <first>-<last>") from None
        if not (0 < base <= 65535 and 0 < size and base + size - 1 <= 65535):
            raise ValueError(f"--service-node-port-range {spec!r}: not a range of ports")
        self.base, self.size = base, size
        self.offset = _range_offset(size, lo=16, hi=128, step=32)

    def __str__(self) -> str:
        return f"{self.base}-{self.base + self.size - 1}"

    def port(self, index: int) -> int:
        if not 0 <= index < self.size:
            raise IndexError(index)
        return self.base + index

    def index(self, port: int) -> int | None:
        i = port - self.base
        return i if 0 <= i < self.size else None


@dataclass
class Wants:
    """What one write of an object asks of the allocators. ``ips``: requested cluster IPs ("" for
    any); ``ports``: per port index, the requested node port (0 for any); ports sharing a port
    number share one node port (kube's ``svcPortToNodePort``)."""

    ips: list[str] = field(default_factory=list)
    ports: dict[int, int] = field(default_factory=dict)
    #: A LoadBalancer with ``externalTrafficPolicy: Local``: its health check node port (0 for any).
    health_check: int | None = None


class AllocationHook:
    """The kind's side of allocation: normalise the write, say what it wants, and fill in what was
    allocated. Implementations are pure."""

    def wants(self, new: dict[str, Any], old: dict[str, Any] | None) -> Wants:  # pragma: no cover
        raise NotImplementedError

    def fill(self, new: dict[str, Any], ips: list[str], ports: dict[int, int],
             health_check: int | None = None) -> None:  # pragma: no cover
        raise NotImplementedError

    def held(self, obj: dict[str, Any] | None) -> tuple[set[str], set[int]]:  # pragma: no cover
        raise NotImplementedError


_NEEDS_NODE_PORTS = ("NodePort", "LoadBalancer")


def _spec(obj: dict[str, Any] | None) -> dict[str, Any]:
    spec = (obj or {}).get("spec")
    return spec if isinstance(spec, dict) else {}


def _ports(spec: dict[str, Any]) -> list[dict[str, Any]]:
    ports = spec.get("ports")
    return [p for p in ports if isinstance(p, dict)] if isinstance(ports, list) else []


def _needs_node_ports(spec: dict[str, Any]) -> bool:
    t = spec.get("type") or "ClusterIP"
    return t == "NodePort" or (t == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is not False)


def _has_node_ports(spec: dict[str, Any]) -> bool:
    """Types whose ports may hold node ports (requested ones, at least)."""
    return (spec.get("type") or "ClusterIP") in ("NodePort", "LoadBalancer")


def _needs_health_check(spec: dict[str, Any]) -> bool:
    """``apiservice.NeedsHealthCheck``: a LoadBalancer that keeps traffic on local endpoints."""
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


class ServiceAllocation(AllocationHook):
    """A core/v1 Service: one IPv4 cluster IP (single-stack), node ports for NodePort and
    LoadBalancer services; the IP family fields as kube sets them on a single-stack cluster."""

    def wants(self, new: dict[str, Any], old: dict[str, Any] | None) -> Wants:
        spec = new.get("spec")
        if not isinstance(spec, dict):
            spec = new["spec"] = {}
        name = (new.get("metadata") or {}).get("name", "")
        old_spec = _spec(old)
        stype = spec.get("type") or "ClusterIP"
        out = Wants()
        if stype == "ExternalName":
            if old is not None and (old_spec.get("type") or "ClusterIP") != "ExternalName":
                for f in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
                    spec.pop(f, None)  # kube drops the allocated fields when a service becomes ExternalName
            return out
        was_external = (old_spec.get("type") or "ClusterIP") == "ExternalName"
        ips = self._requested_ips(spec, old_spec if not was_external else {})
        old_ips = old_spec.get("clusterIPs") or ([old_spec["clusterIP"]] if old_spec.get("clusterIP") else [])
        if old is not None and not was_external and old_ips and ips != old_ips:
            # ValidateServiceUpdate: the cluster IP of a service that has one never changes.
            raise invalid("Service", name, [_invalid("spec.clusterIP", spec.get("clusterIP") or (
                ips[0] if ips else ""), "field is immutable")])
        self._init_ip_families(spec, ips, name)
        if ips == ["None"]:
            spec["clusterIP"], spec["clusterIPs"] = "None", ["None"]
        else:
            out.ips = ips or [""]
        out.ports = self._requested_ports(spec, old_spec if _has_node_ports(old_spec) else {})
        if not _has_node_ports(spec) and old is not None and _has_node_ports(old_spec):
            # Leaving NodePort/LoadBalancer: the node ports the old service held go (dropTypeDependentFields).
            held = {p.get("nodePort") for p in _ports(old_spec)}
            for i, p in enumerate(_ports(spec)):
                if p.get("nodePort") in held:
                    p.pop("nodePort", None)
                    out.ports.pop(i, None)
        if _needs_health_check(spec):
            hc = spec.get("healthCheckNodePort")
            if not isinstance(hc, int) or isinstance(hc, bool) or hc <= 0:
                hc = old_spec.get("healthCheckNodePort") if _needs_health_check(old_spec) else 0
            out.health_check = hc if isinstance(hc, int) and not isinstance(hc, bool) else 0
        elif old is not None and _needs_health_check(old_spec) and \
                spec.get("healthCheckNodePort") == old_spec.get("healthCheckNodePort"):
            spec.pop("healthCheckNodePort", None)
        return out

    @staticmethod
    def _init_ip_families(spec: dict[str, Any], ips: list[str], name: str) -> None:
        """kube's ``initIPFamilyFields`` on a single-stack IPv4 cluster: the policy and families
        defaulted, and refused where they ask for what this cluster has not got."""
        headless = bool(ips) and ips[0] == "None"
        selectorless = not spec.get("selector")
        fams = spec.get("ipFamilies")
        fams = list(fams) if isinstance(fams, list) else []
        if not spec.get("ipFamilyPolicy"):
            dual = len(ips) > 1 or len(fams) > 1 or (headless and selectorless)
            spec["ipFamilyPolicy"] = "RequireDualStack" if dual else "SingleStack"
        policy = spec["ipFamilyPolicy"]
        causes: list[Cause] = []
        if policy == "SingleStack":
            if len(ips) == 2:
                causes.append(_invalid("spec.ipFamilyPolicy", policy, "must be 'RequireDualStack' or "
                                       "'PreferDualStack' when multiple cluster IPs are specified"))
            if len(fams) == 2:
                causes.append(_invalid("spec.ipFamilyPolicy", policy, "must be 'RequireDualStack' or "
                                       "'PreferDualStack' when multiple IP families are specified"))
        for i, ip in enumerate(ips):
            if ip == "None":
                break
            try:
                fam = "IPv6" if ipaddress.ip_address(ip).version == 6 else IPFamily
            except ValueError:
                causes.append(_invalid(f"spec.clusterIPs[{i}]", ip,
                                       "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"))
                continue
            if i >= len(fams):
                if fam != IPFamily:
                    causes.append(_invalid(f"spec.clusterIPs[{i}]", ips, f"{fam} is not configured on this cluster"))
                else:
                    fams.append(fam)
        if causes:
            raise invalid("Service", name, causes)
        if headless and selectorless:
            # Allowed multi-family even on a single-stack cluster (kube's special case).
            fams = fams or [IPFamily]
            if len(fams) < 2 and policy != "SingleStack":
                fams.append("IPv6" if fams[0] == IPFamily else IPFamily)
            spec["ipFamilies"] = fams
            return
        if policy == "RequireDualStack":
            causes.append(_invalid("spec.ipFamilyPolicy", policy, "this cluster is not configured for dual-stack "
                                                                  "services"))
        causes += [_invalid(f"spec.ipFamilies[{i}]", f, "not configured on this cluster")
                   for i, f in enumerate(fams) if f != IPFamily]
        if len(ips) > 1 and not causes:
            causes.append(_invalid("spec.clusterIPs", ips, "this cluster is not configured for dual-stack services"))
        if causes:
            raise invalid("Service", name, causes)
        spec["ipFamilies"] = fams or [IPFamily]

    @staticmethod
    def _requested_ips(spec: dict[str, Any], old_spec: dict[str, Any]) -> list[str]:
        ips = spec.get("clusterIPs")
        ip = spec.get("clusterIP")
        if isinstance(ips, list) and ips:
            return [str(v) for v in ips]
        if isinstance(ip, str) and ip:
            return [ip]
        carried = old_spec.get("clusterIPs")  # an update that leaves them out keeps them (patchAllocatedValues)
        return [str(v) for v in carried] if isinstance(carried, list) and carried else []

    @staticmethod
    def _requested_ports(spec: dict[str, Any], old_spec: dict[str, Any]) -> dict[int, int]:
        """Per port index, the node port asked for (0: any). A LoadBalancer without
        ``allocateLoadBalancerNodePorts`` gets only those asked for by value (``initNodePorts``)."""
        if not _has_node_ports(spec):
            return {}
        old_by = {(p.get("port"), p.get("protocol") or "TCP"): p.get("nodePort") for p in _ports(old_spec)}
        out: dict[int, int] = {}
        for i, p in enumerate(_ports(spec)):
            np = p.get("nodePort")
            if not isinstance(np, int) or isinstance(np, bool) or np == 0:
                carried = old_by.get((p.get("port"), p.get("protocol") or "TCP"))
                np = carried if isinstance(carried, int) and not isinstance(carried, bool) else 0
            if np == 0 and not _needs_node_ports(spec):
                continue
            out[i] = np
        return out

    def fill(self, new: dict[str, Any], ips: list[str], ports: dict[int, int],
             health_check: int | None = None) -> None:
        spec = new["spec"]
        if ips:
            spec["clusterIP"], spec["clusterIPs"] = ips[0], list(ips)
        plist = _ports(spec)
        for i, port in ports.items():
            plist[i]["nodePort"] = port
        if health_check is not None:
            spec["healthCheckNodePort"] = health_check

    def held(self, obj: dict[str, Any] | None) -> tuple[set[str], set[int]]:
        spec = _spec(obj)
        if (spec.get("type") or "ClusterIP") == "ExternalName":
            return set(), set()
        ips = {str(v) for v in spec.get("clusterIPs") or [] if v != "None"} if isinstance(
            spec.get("clusterIPs"), list) else set()
        ports = {p["nodePort"] for p in _ports(spec) if isinstance(p.get("nodePort"), int) and p["nodePort"]} \
            if _has_node_ports(spec) else set()
        hc = spec.get("healthCheckNodePort")
        if _needs_health_check(spec) and isinstance(hc, int) and not isinstance(hc, bool) and hc > 0:
            ports.add(hc)
        return ips, ports


_HOOKS: dict[tuple[str, str], AllocationHook] = {("", "services"): ServiceAllocation()}


def allocation_hook_for(rdef: ResourceDef) -> AllocationHook | None:
    """The kind's allocation hook, or None for kinds that allocate nothing."""
    return _HOOKS.get((rdef.group, rdef.plural))


def allocating_resources() -> dict[tuple[str, str], AllocationHook]:
    """(group, plural) -> hook of every kind that holds allocated values (for the repair pass)."""
    return dict(_HOOKS)
