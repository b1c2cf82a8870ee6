"""B1A: B1 (POST configmaps) with the admission chain at work, beside B1 without any admission
configuration, in the same run: one allowing validating webhook (an in-process hypercorn/trio
HTTPS server with a CA of its own), then one ValidatingAdmissionPolicy with a binding. Each row
also gives the chain's own time per create (the admission-mutating and admission-validating
stages) against the resource actor's time excluding the append wait and against the whole
create."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import trio

from tests.integration.webhook_support import WebhookServer

if TYPE_CHECKING:
    from ._runner import Bench

REG = "/apis/admissionregistration.k8s.io/v1"
_RULE = {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}


def _chain_us(r: dict[str, Any]) -> float | None:
    stages = (r.get("server") or {}).get("stages") or {}
    total = 0.0
    for s in ("admission-mutating", "admission-validating"):
        st = stages.get(s)
        if not st or not st.get("mean_us"):
            return None
        total += st["mean_us"]
    return total


async def b1a(b: Bench) -> list[dict[str, Any]]:
    gw = b.g1
    assert gw is not None
    rows: list[dict[str, Any]] = []

    async def run(tag: str) -> dict[str, Any]:
        r = await b.measured([gw], lambda: b.load(ports=[gw.port], token=gw.token, op="create", ns="b1",
                                                  prefix=f"b1a-{tag}-", duration_s=b.p.http_s, name=f"B1A-{tag}"))
        row = b.http_row(f"B1A/{tag}", r, "C1-write", 0.0)
        chain = _chain_us(r)
        cpu_us = (r.get("server") or {}).get("server_cpu_us_per_request")
        if chain is not None and cpu_us:
            # The chain's wall time inside the resource actor (awaits included: a webhook's round
            # trip) against the server CPU a create costs.
            row["note"] = (f"admission chain {chain:.0f}us per create = {chain / cpu_us:.1%} of the "
                           f"{cpu_us:.0f}us server CPU per create; " + row["note"])
            row["chain_us"] = chain
        row["target"] = "informational"
        row["informational"] = True
        rows.append(row)
        return r

    base = await run("none")
    # The webhook server runs in a process of its own (as a real one would), on the same machine.
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tests.integration.webhook_support", str(b.run_dir / "webhook")],
        stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = b""
        with trio.fail_after(30):
            while not line.endswith(b"\n"):
                chunk = await proc.stdout.receive_some(4096)
                if not chunk:
                    raise RuntimeError("the webhook server exited")
                line += chunk
        info = json.loads(line)
        wh = WebhookServer(url=info["url"], ca_bundle=info["ca_bundle"])
        cfg = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
               "metadata": {"name": "bench-allow"},
               "webhooks": [{"name": "allow.bench.example.com", "clientConfig": wh.client_config("/allow"),
                             "rules": [_RULE], "sideEffects": "None", "admissionReviewVersions": ["v1"],
                             "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "b1"}}}]}
        code, body = await b.api(gw, "POST", f"{REG}/validatingwebhookconfigurations", cfg)
        if code != 201:
            raise RuntimeError(f"cannot configure the webhook: {code} {body}")
        try:
            await run("webhook")
        finally:
            await b.api(gw, "DELETE", f"{REG}/validatingwebhookconfigurations/bench-allow")
    finally:
        proc.kill()
        await proc.wait()
    policy = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
              "metadata": {"name": "bench-keys"},
              "spec": {"matchConstraints": {"resourceRules": [_RULE]},
                       "validations": [{"expression": "!has(object.data) || object.data.size() <= 64",
                                        "message": "too many keys"}]}}
    binding = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
               "metadata": {"name": "bench-keys"}, "spec": {"policyName": "bench-keys", "validationActions": ["Deny"]}}
    for path, obj in ((f"{REG}/validatingadmissionpolicies", policy),
                      (f"{REG}/validatingadmissionpolicybindings", binding)):
        code, body = await b.api(gw, "POST", path, obj)
        if code != 201:
            raise RuntimeError(f"cannot configure the policy: {code} {body}")
    try:
        await run("vap")
    finally:
        await b.api(gw, "DELETE", f"{REG}/validatingadmissionpolicybindings/bench-keys")
        await b.api(gw, "DELETE", f"{REG}/validatingadmissionpolicies/bench-keys")
    for row in rows[1:]:
        row["note"] = f"{row['value'] / base['rps']:.2f} x B1A/none; " + row["note"] if base.get("rps") else row["note"]
    return rows


def header(b: Bench) -> str:
    return (f"POST configmaps as B1, {b.p.http_s:.0f}s each: no admission configuration, then one allowing "
            f"validating webhook (hypercorn on trio over HTTPS, a process of its own), then one ValidatingAdmissionPolicy + "
            f"binding (one CEL validation)")
