"""The root-CA publisher's decision (actors._controllers.root_ca_configmap): kube's syncNamespace."""

from __future__ import annotations

from actors._controllers import ROOT_CA_CONFIGMAP as NAME
from actors._controllers import ROOT_CA_DESCRIPTION as DESCRIPTION
from actors._controllers import root_ca_configmap


def test_decision() -> None:
    created = root_ca_configmap(None, "CA")
    assert created == {"apiVersion": "v1", "kind": "ConfigMap", "data": {"ca.crt": "CA"},
                       "metadata": {"name": NAME, "annotations": {"kubernetes.io/description": DESCRIPTION}}}
    current = {**created, "metadata": {**created["metadata"], "resourceVersion": "7", "labels": {"a": "b"}}}
    assert root_ca_configmap(current, "CA") is None
    # Any non-empty description is left alone (as kube does); the data must be exact.
    assert root_ca_configmap({**current, "metadata": {**current["metadata"], "annotations": {
        "kubernetes.io/description": "mine"}}}, "CA") is None
    fixed = root_ca_configmap({**current, "data": {"ca.crt": "CA", "x": "y"}}, "CA")
    assert fixed is not None and fixed["data"] == {"ca.crt": "CA"} and fixed["metadata"]["resourceVersion"] == "7"
    fixed = root_ca_configmap({**current, "metadata": {"name": NAME, "resourceVersion": "7"}}, "NEW")
    assert fixed == {**current, "data": {"ca.crt": "NEW"}, "metadata": {
        "name": NAME, "resourceVersion": "7", "annotations": {"kubernetes.io/description": DESCRIPTION}}}


def test_another_replica_s_write_stands() -> None:
    theirs = root_ca_configmap(None, "THEIR CA")
    assert root_ca_configmap(theirs, "CA", written_by_controller=True) is None
    assert root_ca_configmap(theirs, "CA", written_by_controller=False) is not None
    assert root_ca_configmap(None, "CA", written_by_controller=True) is not None


def test_kubernetes_service_and_endpoints() -> None:
    from actors._controllers import kubernetes_endpoints, kubernetes_service

    svc = kubernetes_service("10.96.0.1", 6443)
    assert svc["spec"]["clusterIPs"] == ["10.96.0.1"] and svc["spec"]["ports"][0]["targetPort"] == 6443
    assert kubernetes_endpoints("0.0.0.0", 6443)["subsets"][0]["addresses"] == [{"ip": "127.0.0.1"}]
    assert kubernetes_endpoints("10.0.0.5", 6444)["subsets"] == [
        {"addresses": [{"ip": "10.0.0.5"}], "ports": [{"name": "https", "port": 6444, "protocol": "TCP"}]}]
    assert kubernetes_endpoints("localhost", 6443)["subsets"][0]["addresses"] == [{"ip": "127.0.0.1"}]
