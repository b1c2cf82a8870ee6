"""core/v1 Services: ``SetDefaults_Service``, the strategy's cluster-IP normalisation and
carry-over on update, and ``ValidateService``/``ValidateServiceUpdate``'s main rules.

Allocation of cluster IPs and node ports is not here (it needs the log); the allocator calls
:func:`default_service_ip_families` once it has filled ``spec.clusterIP(s)``."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from ._defs import ResourceDef
from ._errors import Cause
from ._strategy import Strategy
from ._validation import (
    field_duplicate,
    field_forbidden,
    field_invalid,
    field_required,
    field_unsupported,
    go_repr,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_valid_port_name,
    validate_labels,
)
from ._workloads import decode_defaults, spec_of

__all__ = ["SERVICE_STRATEGIES", "default_service", "default_service_ip_families", "normalize_cluster_ips"]

SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
PROTOCOLS = ("SCTP", "TCP", "UDP")
_AFFINITIES = ("ClientIP", "None")
_DEFAULT_CLIENT_IP_TIMEOUT_S = 10800
_MAX_CLIENT_IP_TIMEOUT_S = 86400


def default_service(obj: dict[str, Any]) -> None:
    """``SetDefaults_Service``: ClusterIP, no session affinity, TCP ports whose targetPort is
    the port, Cluster traffic policies, node ports for load balancers."""
    spec = spec_of(obj)
    if not spec.get("sessionAffinity"):
        spec["sessionAffinity"] = "None"
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        cfg = spec.get("sessionAffinityConfig")
        if not isinstance(cfg, dict) or not isinstance(cfg.get("clientIP"), dict) or \
                cfg["clientIP"].get("timeoutSeconds") is None:
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": _DEFAULT_CLIENT_IP_TIMEOUT_S}}
    if not spec.get("type"):
        spec["type"] = "ClusterIP"
    for p in spec.get("ports") or []:
        if not isinstance(p, dict):
            continue
        if not p.get("protocol"):
            p["protocol"] = "TCP"
        if p.get("targetPort") in (None, 0, ""):
            p["targetPort"] = p.get("port")
    t = spec["type"]
    externally_accessible = t in ("NodePort", "LoadBalancer") or (t == "ClusterIP" and spec.get("externalIPs"))
    if externally_accessible and not spec.get("externalTrafficPolicy"):
        spec["externalTrafficPolicy"] = "Cluster"
    if spec.get("internalTrafficPolicy") is None and t in ("NodePort", "LoadBalancer", "ClusterIP"):
        spec["internalTrafficPolicy"] = "Cluster"
    if t == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        spec["allocateLoadBalancerNodePorts"] = True
    status = obj.get("status")
    if t == "LoadBalancer" and isinstance(status, dict):
        for ing in ((status.get("loadBalancer") or {}).get("ingress") or []):
            if isinstance(ing, dict) and ing.get("ip") and ing.get("ipMode") is None:
                ing["ipMode"] = "VIP"


def normalize_cluster_ips(spec: dict[str, Any]) -> None:
    """The strategy's ``NormalizeClusterIPs``: ``clusterIP`` and ``clusterIPs[0]`` say the same."""
    ip, ips = spec.get("clusterIP"), spec.get("clusterIPs")
    if ip and not ips:
        spec["clusterIPs"] = [ip]
    elif ips and not ip and isinstance(ips, list):
        spec["clusterIP"] = ips[0]


def _family(ip: str) -> str:
    try:
        return "IPv6" if ipaddress.ip_address(ip).version == 6 else "IPv4"
    except ValueError:
        return "IPv4"


def default_service_ip_families(svc: dict[str, Any], *, cluster_family: str = "IPv4") -> None:
    """What the apiserver's IP allocation path writes beside the addresses: ``ipFamilyPolicy``
    and ``ipFamilies`` from the cluster IPs (or the cluster's family for a headless service with a
    selector; a headless service without one is RequireDualStack over both families). Nothing for
    ExternalName, nor before an address is known."""
    spec = spec_of(svc)
    if spec.get("type") == "ExternalName":
        return
    normalize_cluster_ips(spec)
    ips = spec.get("clusterIPs")
    if not ips:
        return
    if ips == ["None"]:
        if not spec.get("selector"):
            spec.setdefault("ipFamilyPolicy", "RequireDualStack")
            spec.setdefault("ipFamilies", [cluster_family, "IPv6" if cluster_family == "IPv4" else "IPv4"])
        else:
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            spec.setdefault("ipFamilies", [cluster_family])
        return
    spec.setdefault("ipFamilyPolicy", "SingleStack" if len(ips) == 1 else "RequireDualStack")
    spec.setdefault("ipFamilies", [_family(ip) for ip in ips if isinstance(ip, str)])


def _needs_cluster_ip(spec: dict[str, Any]) -> bool:
    return spec.get("type") != "ExternalName"


def _needs_node_ports(spec: dict[str, Any]) -> bool:
    t = spec.get("type")
    return t == "NodePort" or (t == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is not False)


def _carry_allocations(new: dict[str, Any], old: dict[str, Any]) -> None:
    """``patchAllocatedValues``: an update that leaves the cluster IPs, node ports or the health
    check port out keeps the allocated ones (as ``kubectl replace`` of a hand-written file)."""
    ns, os_ = spec_of(new), spec_of(old)
    if _needs_cluster_ip(ns) and _needs_cluster_ip(os_):
        if not ns.get("clusterIP") and not ns.get("clusterIPs"):
            for k in ("clusterIP", "clusterIPs"):
                if k in os_:
                    ns[k] = os_[k]
        for k in ("ipFamilies", "ipFamilyPolicy"):
            if not ns.get(k) and os_.get(k):
                ns[k] = os_[k]
    if _needs_node_ports(ns) and _needs_node_ports(os_):
        old_ports = [p for p in os_.get("ports") or [] if isinstance(p, dict) and p.get("nodePort")]
        for p in ns.get("ports") or []:
            if isinstance(p, dict) and not p.get("nodePort"):
                for op in old_ports:
                    if op.get("name", "") == p.get("name", "") or op.get("port") == p.get("port"):
                        p["nodePort"] = op["nodePort"]
                        break
        if ns.get("externalTrafficPolicy") == "Local" and not ns.get("healthCheckNodePort") \
                and os_.get("healthCheckNodePort"):
            ns["healthCheckNodePort"] = os_["healthCheckNodePort"]


def _needs_external_traffic_policy(spec: dict[str, Any]) -> bool:
    return spec.get("type") in ("NodePort", "LoadBalancer")


def _drop_type_dependent_fields(new: dict[str, Any], old: dict[str, Any]) -> None:
    """The strategy's ``dropTypeDependentFields``: a service changing to a type that does not use
    node ports, the health check port, allocateLoadBalancerNodePorts or externalTrafficPolicy loses
    those it still carries unchanged from the old object (``kubectl patch`` of the type alone)."""
    ns, os_ = spec_of(new), spec_of(old)
    if _needs_node_ports(os_) and not _needs_node_ports(ns):
        old_np = [p.get("nodePort") for p in os_.get("ports") or [] if isinstance(p, dict)]
        new_np = [p.get("nodePort") for p in ns.get("ports") or [] if isinstance(p, dict)]
        if old_np == new_np:
            for p in ns.get("ports") or []:
                if isinstance(p, dict):
                    p.pop("nodePort", None)
    hc_old = os_.get("type") == "LoadBalancer" and os_.get("externalTrafficPolicy") == "Local"
    hc_new = ns.get("type") == "LoadBalancer" and ns.get("externalTrafficPolicy") == "Local"
    if hc_old and not hc_new and ns.get("healthCheckNodePort") == os_.get("healthCheckNodePort"):
        ns.pop("healthCheckNodePort", None)
    if os_.get("type") == "LoadBalancer" and ns.get("type") != "LoadBalancer" and \
            ns.get("allocateLoadBalancerNodePorts") == os_.get("allocateLoadBalancerNodePorts"):
        ns.pop("allocateLoadBalancerNodePorts", None)
    if _needs_external_traffic_policy(os_) and not _needs_external_traffic_policy(ns) and \
            ns.get("externalTrafficPolicy") == os_.get("externalTrafficPolicy"):
        ns.pop("externalTrafficPolicy", None)


def _go_service_port(p: dict[str, Any]) -> str:
    return (f'core.ServicePort{{Name:"", Protocol:{json.dumps(str(p.get("protocol", "")))}, AppProtocol:(*string)(nil), '
            f'Port:{p.get("port")}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:""}}, NodePort:0}}')


def _validate_ports(spec: dict[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    ports = [p for p in spec.get("ports") or []]
    names: set[str] = set()
    seen: set[tuple[Any, Any]] = set()
    node_ports: set[tuple[Any, Any]] = set()
    t = spec.get("type")
    for i, p in enumerate(ports):
        if not isinstance(p, dict):
            continue
        pp = f"spec.ports[{i}]"
        name = p.get("name") or ""
        if len(ports) > 1 and not name:
            causes.append(field_required(f"{pp}.name"))
        elif name:
            causes += [field_invalid(f"{pp}.name", name, m) for m in is_dns1123_label(name)]
            if name in names:
                causes.append(field_duplicate(f"{pp}.name", name))
            names.add(name)
        port = p.get("port")
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            causes.append(field_invalid(f"{pp}.port", port, "must be between 1 and 65535, inclusive"))
        proto = p.get("protocol")
        if not proto:
            causes.append(field_required(f"{pp}.protocol"))
        elif proto not in PROTOCOLS:
            causes.append(field_unsupported(f"{pp}.protocol", proto, PROTOCOLS))
        tp = p.get("targetPort")
        if isinstance(tp, int) and not isinstance(tp, bool):
            if not 1 <= tp <= 65535:
                causes.append(field_invalid(f"{pp}.targetPort", tp, "must be between 1 and 65535, inclusive"))
        elif isinstance(tp, str):
            causes += [field_invalid(f"{pp}.targetPort", tp, m) for m in is_valid_port_name(tp)]
        np = p.get("nodePort")
        if np:
            if t in ("ClusterIP", "ExternalName"):
                causes.append(field_forbidden(f"{pp}.nodePort", f"may not be used when `type` is '{t}'"))
            elif not isinstance(np, int) or not 1 <= np <= 65535:
                causes.append(field_invalid(f"{pp}.nodePort", np, "must be between 1 and 65535, inclusive"))
            elif (np, proto) in node_ports:
                causes.append(field_duplicate(f"{pp}.nodePort", np))
            node_ports.add((np, proto))
        key = (port, proto)
        if key in seen:
            causes.append(Cause("FieldValueDuplicate", f"Duplicate value: {_go_service_port(p)}", pp))
        seen.add(key)
    return causes


def _validate_ip(ip: Any) -> bool:
    try:
        ipaddress.ip_address(str(ip))
    except ValueError:
        return False
    return True


class ServiceStrategy(Strategy):
    """Services: defaults on every write, ``status.loadBalancer`` on create, allocations kept on
    update, cluster IPs immutable once set."""

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        decode_defaults(obj, default_service)
        normalize_cluster_ips(spec_of(obj))
        default_service_ip_families(obj)
        obj["status"] = {"loadBalancer": {}}

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        _drop_type_dependent_fields(new, old)
        decode_defaults(new, default_service)
        normalize_cluster_ips(spec_of(new))
        _carry_allocations(new, old)

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None, rdef: ResourceDef) -> list[Cause]:
        causes = super().validate(obj, old, rdef)
        name = (obj.get("metadata") or {}).get("name")
        if isinstance(name, str) and name and not is_dns1123_label(name):
            causes += [field_invalid("metadata.name", name, m) for m in is_dns1035_label(name)]
        spec = spec_of(obj)
        t = spec.get("type")
        if t not in SERVICE_TYPES:
            causes.append(field_unsupported("spec.type", t, SERVICE_TYPES))
        ips = spec.get("clusterIPs") or []
        headless = spec.get("clusterIP") == "None"
        if t == "ExternalName":
            ext = spec.get("externalName")
            if not ext:
                causes.append(field_required("spec.externalName"))
            elif isinstance(ext, str):
                causes += [field_invalid("spec.externalName", ext, m) for m in is_dns1123_subdomain(ext.rstrip("."))]
            if ips:
                causes.append(field_forbidden("spec.clusterIPs", "may not be set for ExternalName services"))
        elif not spec.get("ports") and not headless:
            causes.append(field_required("spec.ports"))
        for i, ip in enumerate(ips):
            if ip != "None" and not _validate_ip(ip):
                causes.append(field_invalid(f"spec.clusterIPs[{i}]", ip,
                                            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"))
            elif ip == "None" and (i > 0 or len(ips) > 1):
                causes.append(field_invalid("spec.clusterIPs", ips, "'None' must be the first and only value"))
        if headless and t in ("NodePort", "LoadBalancer"):
            causes.append(field_invalid("spec.clusterIPs[0]", "None",
                                        f"may not be set to 'None' for {t} services"))
        if spec.get("clusterIP") and ips and spec["clusterIP"] != ips[0]:
            causes.append(field_invalid("spec.clusterIPs", ips, "element [0] must match clusterIP"))
        causes += _validate_ports(spec)
        aff = spec.get("sessionAffinity")
        if aff not in _AFFINITIES:
            causes.append(field_unsupported("spec.sessionAffinity", aff, _AFFINITIES))
        timeout = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
        if aff == "ClientIP" and isinstance(timeout, int) and not 0 < timeout <= _MAX_CLIENT_IP_TIMEOUT_S:
            causes.append(field_invalid("spec.sessionAffinityConfig.clientIP.timeoutSeconds", timeout,
                                        f"must be greater than 0 and less than {_MAX_CLIENT_IP_TIMEOUT_S}"))
        for i, ip in enumerate(spec.get("externalIPs") or []):
            if not _validate_ip(ip):
                causes.append(field_invalid(f"spec.externalIPs[{i}]", ip,
                                            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"))
        for f, allowed in (("externalTrafficPolicy", ("Cluster", "Local")),
                           ("internalTrafficPolicy", ("Cluster", "Local"))):
            v = spec.get(f)
            if v is not None and v not in allowed:
                causes.append(field_unsupported(f"spec.{f}", v, allowed))
        if spec.get("externalTrafficPolicy") and t not in ("NodePort", "LoadBalancer") \
                and not spec.get("externalIPs"):
            causes.append(field_invalid("spec.externalTrafficPolicy", spec["externalTrafficPolicy"],
                                        "may only be set for externally-accessible services"))
        sel = spec.get("selector")
        if isinstance(sel, dict):
            causes += validate_labels(sel, "spec.selector")
        if old is not None:
            causes += self._validate_update(spec, spec_of(old))
        return causes

    @staticmethod
    def _validate_update(spec: dict[str, Any], ospec: dict[str, Any]) -> list[Cause]:
        if spec.get("type") == "ExternalName" or ospec.get("type") == "ExternalName":
            return []
        old_ips, new_ips = ospec.get("clusterIPs") or [], spec.get("clusterIPs") or []
        if old_ips and not new_ips:
            return [field_required("spec.clusterIPs[0]", "primary clusterIP can not be unset")]
        return [Cause("FieldValueInvalid", f"Invalid value: {go_repr(new_ips)}: may not change once set",
                      f"spec.clusterIPs[{i}]")
                for i, (o, n) in enumerate(zip(old_ips, new_ips)) if o != n]


SERVICE_STRATEGIES: dict[tuple[str, str], Strategy] = {("", "services"): ServiceStrategy()}
