"""API Priority and Fairness against a real nats-server: kube's objects served and bootstrapped."""

from __future__ import annotations

import httpx
import pytest
import trio

from actors._apf_bootstrap import default_flow_schemas, default_priority_levels

pytestmark = pytest.mark.integration
FC = "/apis/flowcontrol.apiserver.k8s.io/v1"


async def test_default_objects_bootstrapped(api: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        fs = (await api.get(f"{FC}/flowschemas")).json()
        pl = (await api.get(f"{FC}/prioritylevelconfigurations")).json()
    names = {o["metadata"]["name"] for o in fs["items"]}
    assert names == {o["metadata"]["name"] for o in default_flow_schemas()}
    levels = {o["metadata"]["name"]: o for o in pl["items"]}
    assert set(levels) == {o["metadata"]["name"] for o in default_priority_levels()}
    assert levels["workload-low"]["spec"]["limited"]["nominalConcurrencyShares"] == 100
    assert levels["exempt"]["metadata"]["annotations"]["apf.kubernetes.io/autoupdate-spec"] == "true"
