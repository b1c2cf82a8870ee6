"""The allocators' range arithmetic (stdlib ``ipaddress``) and the Service hook's pure decisions."""

from __future__ import annotations

import ipaddress
from random import Random

import pytest

from kinds._allocation import IPRange, PortRange, ServiceAllocation
from kinds._errors import Invalid


def test_default_service_range() -> None:
    r = IPRange("10.96.0.0/12")
    assert r.size == 2**20 - 2
    assert r.address(0) == "10.96.0.1"  # the kubernetes service's
    assert r.address(r.size - 1) == "10.111.255.254"
    assert r.index("10.96.0.1") == 0 and r.index("10.111.255.254") == r.size - 1
    assert r.index("10.96.0.0") is None and r.index("10.111.255.255") is None  # network, broadcast
    assert r.index("10.112.0.1") is None and r.index("::1") is None and r.index("nope") is None
    assert r.offset == 256  # kube's static band: min(max(16, size/16), 256)
    assert str(r) == "10.96.0.0/12"


def test_small_ranges_and_bands() -> None:
    r = IPRange("192.168.0.0/28")
    assert r.size == 14 and r.offset == 0
    assert [r.address(i) for i in (0, 13)] == ["192.168.0.1", "192.168.0.14"]
    r = IPRange("10.0.0.0/24")
    assert r.size == 254 and r.offset == 16
    for i in range(r.size):
        assert r.index(r.address(i)) == i
        assert ipaddress.ip_address(r.address(i)) in r.network


def test_candidates_cover_the_range_once_upper_band_first() -> None:
    r = IPRange("10.0.0.0/24")
    got = list(r.candidates(Random(7)))
    assert sorted(got) == list(range(r.size))
    assert all(i >= r.offset for i in got[: r.size - r.offset])
    p = PortRange("30000-32767")
    got = list(p.candidates(Random(1)))
    assert sorted(got) == list(range(2768)) and p.offset == 86  # 2768 / 32


@pytest.mark.parametrize("bad", ["10.96.0.0/8", "10.96.0.1/12", "fd00::/108", "10.0.0.0/31", "x"])
def test_bad_ip_ranges(bad: str) -> None:
    with pytest.raises(ValueError):
        IPRange(bad)


def test_port_ranges() -> None:
    p = PortRange("30000-32767")
    assert (p.size, p.port(0), p.port(p.size - 1), str(p)) == (2768, 30000, 32767, "30000-32767")
    assert p.index(29999) is None and p.index(32768) is None and p.index(30005) == 5
    assert PortRange("30000+10").size == 11
    for bad in ("a-b", "0-10", "30000-29999", "65000-70000"):
        with pytest.raises(ValueError):
            PortRange(bad)


def svc(**spec: object) -> dict:
    return {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}], **spec}}


def test_service_wants() -> None:
    h = ServiceAllocation()
    o = svc()
    assert h.wants(o, None).ips == [""] and o["spec"]["ipFamilies"] == ["IPv4"]
    assert o["spec"]["ipFamilyPolicy"] == "SingleStack"
    o = svc(clusterIP="10.96.0.9")
    assert h.wants(o, None).ips == ["10.96.0.9"]
    o = svc(clusterIP="None")
    assert h.wants(o, None).ips == [] and o["spec"]["clusterIPs"] == ["None"]
    # Headless without selector: RequireDualStack over both families, even on a single-stack
    # cluster (initIPFamilyFields' special case).
    assert o["spec"]["ipFamilyPolicy"] == "RequireDualStack" and o["spec"]["ipFamilies"] == ["IPv4", "IPv6"]
    o = svc(clusterIP="None", selector={"a": "b"})
    h.wants(o, None)
    assert o["spec"]["ipFamilyPolicy"] == "SingleStack"
    o = svc(type="ExternalName", externalName="x.example")
    w = h.wants(o, None)
    assert w.ips == [] and w.ports == {} and "ipFamilies" not in o["spec"]
    o = svc(type="NodePort", ports=[{"port": 80}, {"port": 81, "nodePort": 30001}])
    assert h.wants(o, None).ports == {0: 0, 1: 30001}
    for bad, field, msg in (
            (svc(clusterIP="300.1.1.1"), "spec.clusterIPs[0]", "must be a valid IP address"),
            (svc(ipFamilies=["IPv6"]), "spec.ipFamilies[0]", 'Invalid value: "IPv6": not configured on this cluster'),
            (svc(clusterIP="fd00::1"), "spec.clusterIPs[0]",
             'Invalid value: []string{"fd00::1"}: IPv6 is not configured on this cluster'),
            (svc(ipFamilyPolicy="RequireDualStack"), "spec.ipFamilyPolicy",
             "this cluster is not configured for dual-stack services"),
            (svc(clusterIPs=["10.96.0.5", "fd00::5"], ipFamilyPolicy="SingleStack"), "spec.ipFamilyPolicy",
             "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified")):
        with pytest.raises(Invalid) as e:
            h.wants(bad, None)
        assert e.value.causes[0].field == field and msg in e.value.causes[0].message, e.value.causes
    o = svc(ipFamilyPolicy="PreferDualStack")
    assert h.wants(o, None).ips == [""] and o["spec"]["ipFamilies"] == ["IPv4"]


def test_service_update_releases() -> None:
    h = ServiceAllocation()
    old = svc(type="NodePort", clusterIP="10.96.0.9", clusterIPs=["10.96.0.9"], ipFamilies=["IPv4"],
              ipFamilyPolicy="SingleStack", ports=[{"port": 80, "protocol": "TCP", "nodePort": 30001}])
    assert h.held(old) == ({"10.96.0.9"}, {30001})
    same = svc(type="NodePort", clusterIP="10.96.0.9", ports=[{"port": 80, "protocol": "TCP"}])
    assert h.wants(same, old).ports == {0: 30001}  # carried
    to_ip = svc(type="ClusterIP", clusterIP="10.96.0.9", ports=[{"port": 80, "nodePort": 30001}])
    assert h.wants(to_ip, old).ports == {}
    assert "nodePort" not in to_ip["spec"]["ports"][0]  # leaving NodePort drops the node ports
    ext = svc(type="ExternalName", externalName="x", clusterIP="10.96.0.9", clusterIPs=["10.96.0.9"])
    h.wants(ext, old)
    assert h.held(ext) == (set(), set()) and "clusterIP" not in ext["spec"]


def test_load_balancer_ports_and_health_check() -> None:
    h = ServiceAllocation()
    lb = svc(type="LoadBalancer", externalTrafficPolicy="Local", ports=[{"port": 80}])
    w = h.wants(lb, None)
    assert w.ports == {0: 0} and w.health_check == 0
    h.fill(lb, ["10.96.0.3"], {0: 30005}, 30006)
    assert lb["spec"]["healthCheckNodePort"] == 30006 and h.held(lb) == ({"10.96.0.3"}, {30005, 30006})
    quiet = svc(type="LoadBalancer", allocateLoadBalancerNodePorts=False, ports=[{"port": 80}, {"port": 81,
                                                                                              "nodePort": 30010}])
    w = h.wants(quiet, None)
    assert w.ports == {1: 30010} and w.health_check is None  # only what is asked for by value


def test_cluster_ip_is_immutable() -> None:
    h = ServiceAllocation()
    old = svc(clusterIP="10.96.0.9", clusterIPs=["10.96.0.9"])
    with pytest.raises(Invalid) as e:
        h.wants(svc(clusterIP="10.96.0.8", clusterIPs=["10.96.0.8"]), old)
    assert e.value.message == 'Service "s" is invalid: spec.clusterIP: Invalid value: "10.96.0.8": field is immutable'
    assert h.wants(svc(clusterIP="10.96.0.9"), old).ips == ["10.96.0.9"]
    # From ExternalName a service gets a new address.
    assert h.wants(svc(), svc(type="ExternalName", externalName="x")).ips == [""]
