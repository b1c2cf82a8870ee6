"""Service cluster IPs and node ports (issue 11): claims on the log decided with CAS, so two gateways
allocating at once never hand out one value twice; released on delete, on a type change and on a
failed create; kept across a restart; a leaked claim (a crash between the claim and the Service's
append) released by the repair pass; the ``kubernetes`` Service on the range's first address."""

from __future__ import annotations

import ipaddress
from typing import Any

import httpx
import msgspec
import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from actors import SYSTEM_USER, AllocationSettings, Pipeline, Request, SigningKey, Stored, TokenAuthenticator
from actors._allocation import IPADDRESSES, Txn
from bus import Key, StreamConfig, open_bridge, open_log
from kinds import InternalError, Registry
from projections import Projection
from tests.conftest import StartServer, client_for, poll_until

pytestmark = pytest.mark.integration

SVC = "/api/v1/namespaces/{ns}/services"
NET = ipaddress.ip_network("10.96.0.0/12")


def service(name: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"ports": [{"port": 80, "targetPort": 8080}], **spec}}


async def create(api: httpx.AsyncClient, ns: str, body: dict[str, Any], code: int = 201) -> dict[str, Any]:
    r = await api.post(SVC.format(ns=ns), json=body)
    assert r.status_code == code, r.text
    return r.json()


async def test_kubernetes_service_on_the_first_address(start_server: StartServer) -> None:
    server = await start_server()
    async with client_for(server) as api:
        r = await api.get("/api/v1/namespaces/default/services/kubernetes")
        assert r.status_code == 200, r.text
        spec = r.json()["spec"]
        assert spec["clusterIP"] == "10.96.0.1" and spec["clusterIPs"] == ["10.96.0.1"]
        assert spec["ports"] == [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]
        assert spec["type"] == "ClusterIP" and spec["ipFamilies"] == ["IPv4"] and spec["ipFamilyPolicy"] == "SingleStack"
        assert r.json()["metadata"]["labels"] == {"component": "apiserver", "provider": "kubernetes"}
        # Deleted: re-created by the controller, on the same address.
        assert (await api.delete("/api/v1/namespaces/default/services/kubernetes")).status_code == 200
        seen: list[httpx.Response] = []

        async def recreated() -> bool:
            # A change to the namespace makes the controller reconcile it (else its resync would).
            await api.patch("/api/v1/namespaces/default", json={"metadata": {"labels": {"poke": str(len(seen))}}},
                            headers={"Content-Type": "application/merge-patch+json"})
            seen.append(await api.get("/api/v1/namespaces/default/services/kubernetes"))
            return seen[-1].status_code == 200

        with trio.fail_after(30):
            await poll_until(recreated)
        assert seen[-1].json()["spec"]["clusterIP"] == "10.96.0.1"


async def test_concurrent_allocation_across_two_gateways(start_server: StartServer) -> None:
    a, b = await start_server(), await start_server()
    async with client_for(a) as api_a, client_for(b) as api_b:
        with trio.fail_after(90):
            assert (await api_a.post("/api/v1/namespaces", json={"metadata": {"name": "many"}})).status_code == 201
            made: dict[str, dict[str, Any]] = {}

            async def one(i: int) -> None:
                spec: dict[str, Any] = {"type": "NodePort"} if i % 3 == 0 else {}
                made[f"s{i}"] = await create(api_a if i % 2 else api_b, "many", service(f"s{i}", **spec))

            async with trio.open_nursery() as nursery:
                for i in range(60):
                    nursery.start_soon(one, i)
            ips = [m["spec"]["clusterIP"] for m in made.values()]
            assert len(set(ips)) == 60, sorted(ips)
            assert all(ipaddress.ip_address(ip) in NET and ip not in ("10.96.0.0", "10.96.0.1") for ip in ips)
            assert all(m["spec"]["clusterIPs"] == [m["spec"]["clusterIP"]] for m in made.values())
            ports = [m["spec"]["ports"][0]["nodePort"] for m in made.values() if m["spec"].get("type") == "NodePort"]
            assert len(ports) == 20 and len(set(ports)) == 20 and all(30000 <= p <= 32767 for p in ports)
            assert all("nodePort" not in m["spec"]["ports"][0] for m in made.values() if m["spec"].get("type") != "NodePort")
            # Both gateways see the same allocation state: each taken address is refused on either.
            for i, ip in enumerate(ips[:6]):
                r = await (api_a if i % 2 else api_b).post(SVC.format(ns="many"), json=service(f"dup{i}", clusterIP=ip))
                assert r.status_code == 422, r.text
                assert r.json()["message"] == (f'Service "dup{i}" is invalid: spec.clusterIPs: Invalid value: '
                                               f'[]string{{"{ip}"}}: failed to allocate IP {ip}: provided IP is already '
                                               f'allocated')
            # Deleting frees: every address and port can be asked for by value again.
            async with trio.open_nursery() as nursery:
                for name in made:
                    nursery.start_soon(api_a.delete, SVC.format(ns="many") + f"/{name}")
            async with trio.open_nursery() as nursery:
                for i, m in enumerate(made.values()):
                    spec = {"clusterIP": m["spec"]["clusterIP"]}
                    if m["spec"].get("type") == "NodePort":
                        spec.update(type="NodePort", ports=[{"port": 80, "nodePort": m["spec"]["ports"][0]["nodePort"]}])
                    nursery.start_soon(create, api_b if i % 2 else api_a, "many", service(f"again{i}", **spec))


async def test_requested_values_headless_and_updates(start_server: StartServer) -> None:
    server = await start_server()
    async with client_for(server) as api:
        with trio.fail_after(30):
            mine = await create(api, "default", service("mine", clusterIP="10.96.0.10"))
            assert mine["spec"]["clusterIPs"] == ["10.96.0.10"]
            r = await api.post(SVC.format(ns="default"), json=service("far", clusterIP="10.0.0.5"))
            assert r.status_code == 422
            assert r.json()["message"] == ('Service "far" is invalid: spec.clusterIPs: Invalid value: '
                                           '[]string{"10.0.0.5"}: failed to allocate IP 10.0.0.5: the provided IP '
                                           '(10.0.0.5) is not in the valid range. The range of valid IPs is '
                                           '10.96.0.0/12')
            headless = await create(api, "default", service("hl", clusterIP="None", selector={"app": "x"}))
            assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["clusterIPs"] == ["None"]
            assert headless["spec"]["ipFamilyPolicy"] == "SingleStack" and headless["spec"]["ipFamilies"] == ["IPv4"]
            np = await create(api, "default", service("np", type="NodePort", ports=[
                {"name": "dns-tcp", "port": 53, "protocol": "TCP"}, {"name": "dns-udp", "port": 53, "protocol": "UDP"},
                {"name": "other", "port": 54, "nodePort": 30054}]))
            p = np["spec"]["ports"]
            assert p[0]["nodePort"] == p[1]["nodePort"] != 30054 and p[2]["nodePort"] == 30054  # kube shares by port
            r = await api.post(SVC.format(ns="default"), json=service("np2", type="NodePort", ports=[
                {"port": 80, "nodePort": 30054}]))
            assert r.status_code == 422 and r.json()["message"] == (
                'Service "np2" is invalid: spec.ports[0].nodePort: Invalid value: 30054: provided port is already '
                'allocated'), r.text
            r = await api.post(SVC.format(ns="default"), json=service("np3", type="NodePort", ports=[
                {"port": 80, "nodePort": 8080}]))
            assert r.status_code == 422 and "provided port is not in the valid range. The range of valid ports is " \
                                             "30000-32767" in r.json()["message"], r.text
            # An update that leaves the allocated values out keeps them (kubectl apply/replace).
            cur = (await api.get(SVC.format(ns="default") + "/np")).json()
            put = {"metadata": {"name": "np", "resourceVersion": cur["metadata"]["resourceVersion"]},
                   "spec": {"type": "NodePort", "ports": [{"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                                                          {"name": "other", "port": 54}]}}
            r = await api.put(SVC.format(ns="default") + "/np", json=put)
            assert r.status_code == 200, r.text
            assert r.json()["spec"]["clusterIP"] == np["spec"]["clusterIP"]
            assert [q["nodePort"] for q in r.json()["spec"]["ports"]] == [p[0]["nodePort"], 30054]
            # NodePort -> ClusterIP releases the node ports; ClusterIP -> ExternalName the address.
            r = await api.patch(SVC.format(ns="default") + "/np", json={"spec": {"type": "ClusterIP"}},
                                headers={"Content-Type": "application/merge-patch+json"})
            assert r.status_code == 200, r.text
            assert all("nodePort" not in q for q in r.json()["spec"]["ports"])
            await create(api, "default", service("np4", type="NodePort", ports=[{"port": 80, "nodePort": 30054}]))
            r = await api.patch(SVC.format(ns="default") + "/mine", json={"spec": {
                "type": "ExternalName", "externalName": "db.example.com", "clusterIP": None, "clusterIPs": None}},
                headers={"Content-Type": "application/merge-patch+json"})
            assert r.status_code == 200, r.text
            assert "clusterIP" not in r.json()["spec"]
            await create(api, "default", service("mine2", clusterIP="10.96.0.10"))
            # A failed create leaks nothing: the address claimed before the AlreadyExists is free again.
            r = await api.post(SVC.format(ns="default"), json=service("mine2", clusterIP="10.96.0.11"))
            assert r.status_code == 409, r.text
            await create(api, "default", service("mine3", clusterIP="10.96.0.11"))
            # A LoadBalancer keeping traffic local gets a health check node port too; a taken one
            # asked for by value is kube's 500.
            lb = await create(api, "default", service("lb", type="LoadBalancer", externalTrafficPolicy="Local"))
            hc, np_lb = lb["spec"]["healthCheckNodePort"], lb["spec"]["ports"][0]["nodePort"]
            assert 30000 <= hc <= 32767 and hc != np_lb
            r = await api.post(SVC.format(ns="default"), json=service(
                "lb2", type="LoadBalancer", externalTrafficPolicy="Local", healthCheckNodePort=hc))
            assert r.status_code == 500 and r.json()["message"] == (
                f"Internal error occurred: failed to allocate requested HealthCheck NodePort {hc}: provided port is "
                f"already allocated"), r.text
            assert (await api.delete(SVC.format(ns="default") + "/lb")).status_code == 200
            await create(api, "default", service("lb3", type="NodePort", ports=[{"port": 80, "nodePort": hc}]))
            # Dry run checks and chooses, claims nothing.
            r = await api.post(SVC.format(ns="default") + "?dryRun=All", json=service("dry", clusterIP="10.96.0.12"))
            assert r.status_code == 201 and r.json()["spec"]["clusterIP"] == "10.96.0.12"
            await create(api, "default", service("dry", clusterIP="10.96.0.12"))


async def test_allocations_survive_a_restart(start_server: StartServer) -> None:
    first = await start_server()
    async with client_for(first) as api:
        with trio.fail_after(30):
            made = [await create(api, "default", service(f"r{i}", type="NodePort")) for i in range(5)]
    second = await start_server(stream="JETKUBE")  # another gateway on the same log, started later
    async with client_for(second) as api:
        with trio.fail_after(30):
            for i, m in enumerate(made):
                r = await api.post(SVC.format(ns="default"), json=service(f"x{i}", clusterIP=m["spec"]["clusterIP"]))
                assert r.status_code == 422 and "provided IP is already allocated" in r.text
                r = await api.post(SVC.format(ns="default"), json=service(
                    f"y{i}", type="NodePort", ports=[{"port": 1, "nodePort": m["spec"]["ports"][0]["nodePort"]}]))
                assert r.status_code == 422 and "provided port is already allocated" in r.text


async def test_repair_releases_a_leaked_claim(nats_url: str) -> None:
    """A gateway that died between claiming an address and appending its Service leaves a claim with
    no holder: the repair pass releases it on its second sighting, never a claim whose Service
    exists (or whose create may still be in flight: first sighting)."""
    with trio.fail_after(30):
        async with open_bridge(nats_url) as bridge, trio.open_nursery() as nursery:
            log = await open_log(bridge, StreamConfig(name="ALLOC", prefix="alloc"))
            projection = Projection(log)
            await nursery.start(projection.run)
            key = SigningKey(ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
            pipeline = Pipeline(log, projection, Registry(), TokenAuthenticator({}), key, run_controllers=False,
                                allocation=AllocationSettings("10.0.0.0/24", "30000-30010"))
            await nursery.start(pipeline.run)
            allocators = pipeline.core.allocators
            # Every write passes admission (NamespaceLifecycle too): the namespace first, as the
            # controllers (not run here) would bootstrap it.
            ns = await pipeline.resource.ask(Request(verb="create", rdef=Registry().by_resource("", "namespaces"),
                                                     body={"metadata": {"name": "default"}}, user=SYSTEM_USER,
                                                     audit_id="ns"), timeout_s=10)
            assert isinstance(ns, Stored) and ns.created
            svc_def = Registry().by_resource("", "services")
            req = Request(verb="create", rdef=svc_def, namespace="default", name="", user=SYSTEM_USER,
                          audit_id="leak-1")
            # The crash: a claim made for a Service whose append never happened.
            await allocators._claim(req, Txn(), IPADDRESSES, "10.0.0.77", "default", "ghost", False)
            live = await pipeline.resource.ask(Request(verb="create", rdef=svc_def, namespace="default",
                                                       body=service("real", clusterIP="10.0.0.78"), user=SYSTEM_USER,
                                                       audit_id="leak-2"), timeout_s=10)
            assert isinstance(live, Stored) and live.created
            ghost = Key("root", IPADDRESSES.group, IPADDRESSES.plural, "", "10.0.0.77")
            real = Key("root", IPADDRESSES.group, IPADDRESSES.plural, "", "10.0.0.78")
            assert await allocators.repair_once(req) == 0  # first sighting: may be a create in flight
            assert projection.get(ghost) is not None
            assert await allocators.repair_once(req) == 1
            await projection.consistent()
            assert projection.get(ghost) is None and projection.get(real) is not None
            assert await allocators.repair_once(req) == 0
            assert projection.get(real) is not None
            # The other way round: a record lost while its Service holds the address is made again.
            await allocators.release(req, real, "", "", any_parent=True)
            await projection.consistent()
            assert projection.get(real) is None
            assert await allocators.repair_once(req) == 0
            restored = projection.get(real)
            assert restored is not None
            assert msgspec.json.decode(restored.data)["spec"]["parentRef"] == {
                "group": "", "resource": "services", "namespace": "default", "name": "real"}
            # A full node port range (11 ports here): kube's 500 with its message.
            for i in range(11):
                r = await pipeline.resource.ask(Request(verb="create", rdef=svc_def, namespace="default",
                                                        body=service(f"np{i}", type="NodePort"), user=SYSTEM_USER,
                                                        audit_id=f"full-{i}"), timeout_s=10)
                assert isinstance(r, Stored) and r.created
            with pytest.raises(InternalError) as e:
                await pipeline.resource.ask(Request(verb="create", rdef=svc_def, namespace="default",
                                                    body=service("np-full", type="NodePort"), user=SYSTEM_USER,
                                                    audit_id="full-x"), timeout_s=10)
            assert e.value.message == "Internal error occurred: failed to allocate a nodePort: range is full"
            nursery.cancel_scope.cancel()
