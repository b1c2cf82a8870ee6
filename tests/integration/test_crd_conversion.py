"""CRD webhook conversion through the real HTTP face and kubectl: a conversion server of the test's
own (trio, hypercorn, TLS from its own CA) converts between v1 (``spec.size``) and v2
(``spec.dimension``) of a CRD. Objects created in v1 are read, listed and watched in v2 on another
gateway (one review per list page), written in v2 (stored as v1), read by kubectl in both versions;
after the storage version moves to v2, ``status.storedVersions`` holds both and old objects still
convert; a failing or dead webhook answers kube's 500 at once, never a hang."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from actors import ConversionError, Converter
from gateway._pki import ensure_pki
from kinds._crd import defs_from_crd
from tests.conftest import client_for, poll_until
from tests.integration.test_crd import established
from tests.integration.webhook_support import request_body, serve_tls

pytestmark = pytest.mark.integration

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
NAME = "gadgets.conv.example.com"
V1 = "/apis/conv.example.com/v1/namespaces/default/gadgets"
V2 = "/apis/conv.example.com/v2/namespaces/default/gadgets"
MERGE = {"Content-Type": "application/merge-patch+json"}


@dataclass
class ConversionServer:
    url: str
    ca_bundle: str
    #: (path, request) of every ConversionReview received.
    reviews: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def calls(self) -> list[dict[str, Any]]:
        return [r for p, r in self.reviews if p == "/convert"]


def _convert(obj: dict[str, Any], desired: str) -> dict[str, Any]:
    """v1 spec.size <-> v2 spec.dimension; labels get where the object came from (kube keeps a
    webhook's labels and annotations, and nothing else of its metadata)."""
    out = json.loads(json.dumps(obj))
    spec = out.setdefault("spec", {})
    if desired.endswith("/v2") and "size" in spec:
        spec["dimension"] = spec.pop("size")
    elif desired.endswith("/v1") and "dimension" in spec:
        spec["size"] = spec.pop("dimension")
    out["apiVersion"] = desired
    out["metadata"].setdefault("labels", {})["converted-from"] = obj["apiVersion"].replace("/", ".")
    out["metadata"]["generation"] = 999  # not the webhook's to change: restored from the original
    return out


async def start_conversion_server(nursery: trio.Nursery, tmp: Path) -> ConversionServer:
    pki = ensure_pki(tmp / "conversion-pki")
    server: ConversionServer

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = await request_body(scope, receive, send)
        if body is None:
            return
        review = json.loads(body)
        req = review["request"]
        server.reviews.append((scope["path"], req))
        if scope["path"] == "/slow":
            await trio.sleep(20)
        if scope["path"] == "/fail":
            resp = {"uid": req["uid"], "result": {"status": "Failure", "message": "gadgets do not convert today"}}
        else:
            resp = {"uid": req["uid"], "result": {"status": "Success"},
                    "convertedObjects": [_convert(o, req["desiredAPIVersion"]) for o in req["objects"]]}
        out = json.dumps({"apiVersion": review["apiVersion"], "kind": "ConversionReview", "response": resp}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": out})

    port = await serve_tls(nursery, app, pki)
    server = ConversionServer(url=f"https://127.0.0.1:{port}", ca_bundle=__import__("base64").b64encode(
        pki.ca_cert.read_bytes()).decode())
    return server


def gadget_crd(url: str, ca_bundle: str, storage: str = "v1") -> dict[str, Any]:
    def version(name: str, size_field: str) -> dict[str, Any]:
        return {"name": name, "served": True, "storage": name == storage,
                "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": f".spec.{size_field}"}],
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {size_field: {"type": "integer"},
                                                              "color": {"type": "string"}}}}}}}

    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": NAME},
            "spec": {"group": "conv.example.com", "scope": "Namespaced",
                     "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
                     "versions": [version("v1", "size"), version("v2", "dimension")],
                     "conversion": {"strategy": "Webhook", "webhook": {
                         "conversionReviewVersions": ["v1"],
                         "clientConfig": {"url": url, "caBundle": ca_bundle}}}}}


def gadget(name: str, version: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"conv.example.com/{version}", "kind": "Gadget",
            "metadata": {"name": name, "labels": {"app": "g"}}, "spec": spec}


async def kubectl(kubeconfig: Path, *args: str) -> str:
    binary = shutil.which("kubectl")
    assert binary is not None
    out = await trio.to_thread.run_sync(partial(
        subprocess.run, [binary, *args], check=False, capture_output=True, text=True, timeout=50,
        env={**os.environ, "KUBECONFIG": str(kubeconfig)}))
    assert out.returncode == 0, out.stderr
    return out.stdout


def dead_url() -> str:
    """An https URL where nothing listens (a port just bound and closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"https://127.0.0.1:{port}/convert"


async def set_conversion(api: httpx.AsyncClient, api2: httpx.AsyncClient, url: str, ca_bundle: str,
                         storage: str = "v1") -> dict[str, Any]:
    """Point the CRD at ``url`` (and its storage version), until both gateways serve the change."""
    crd = (await api.get(f"{CRDS}/{NAME}")).json()
    want = gadget_crd(url, ca_bundle, storage)["spec"]
    crd["spec"]["conversion"], crd["spec"]["versions"] = want["conversion"], want["versions"]
    r = await api.put(f"{CRDS}/{NAME}", json=crd)
    assert r.status_code == 200, r.text
    rv = r.json()["metadata"]["resourceVersion"]
    for c in (api, api2):  # a consistent read on each gateway: its CRD view has applied the change
        assert (await c.get(f"{CRDS}/{NAME}", params={"resourceVersion": rv})).status_code == 200
    return r.json()


async def test_webhook_conversion(start_server, nursery: trio.Nursery, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    one, two = await start_server(), await start_server()
    conv = await start_conversion_server(nursery, tmp_path)
    url = conv.url + "/convert"
    async with client_for(one) as api, client_for(two) as api2:
        with trio.fail_after(90):
            r = await api.post(CRDS, json=gadget_crd(url, conv.ca_bundle))
            assert r.status_code == 201, r.text
            crd = await established(api, NAME)
            assert crd["status"]["storedVersions"] == ["v1"]

            async def served_on_two() -> bool:
                return (await api2.get(V2)).status_code == 200
            await poll_until(served_on_two)

            # Objects created in the storage version: no review is needed to store them.
            for i in range(1, 4):
                r = await api.post(V1, json=gadget(f"g{i}", "v1", size=i, color="red"))
                assert r.status_code == 201, r.text
                assert r.json()["spec"] == {"size": i, "color": "red"}
            assert conv.calls() == []

            # Reads in v2 on the other gateway: converted, the webhook's labels kept, the rest of
            # its metadata changes undone.
            for i in range(1, 4):
                r = await api2.get(f"{V2}/g{i}")
                assert r.status_code == 200, r.text
                g = r.json()
                assert g["apiVersion"] == "conv.example.com/v2" and g["spec"] == {"dimension": i, "color": "red"}
                assert g["metadata"]["labels"] == {"app": "g", "converted-from": "conv.example.com.v1"}
                assert g["metadata"]["generation"] == 1
            assert len(conv.calls()) == 3
            assert conv.calls()[0]["desiredAPIVersion"] == "conv.example.com/v2"

            # A list page is one review of all its objects.
            before = len(conv.calls())
            r = await api2.get(V2)
            assert r.status_code == 200, r.text
            listed = r.json()
            assert listed["apiVersion"] == "conv.example.com/v2" and listed["kind"] == "GadgetList"
            assert [(i["metadata"]["name"], i["spec"]["dimension"]) for i in listed["items"]] == [
                ("g1", 1), ("g2", 2), ("g3", 3)]
            assert len(conv.calls()) == before + 1 and len(conv.calls()[-1]["objects"]) == 3
            # A page of two, then the rest.
            r = await api2.get(V2, params={"limit": 2})
            assert [i["spec"]["dimension"] for i in r.json()["items"]] == [1, 2]
            assert len(conv.calls()[-1]["objects"]) == 2
            r = await api2.get(V2, params={"limit": 2, "continue": r.json()["metadata"]["continue"]})
            assert [i["spec"]["dimension"] for i in r.json()["items"]] == [3]

            # A v2 watch on gateway two sees v2 objects.
            events: list[dict[str, Any]] = []
            seen_three = trio.Event()

            async def watch() -> None:
                async with api2.stream("GET", V2, params={"watch": "1", "resourceVersion": listed["metadata"][
                        "resourceVersion"]}, timeout=60) as resp:
                    async for line in resp.aiter_lines():
                        events.append(json.loads(line))
                        if len(events) == 3:
                            seen_three.set()
                            return

            nursery.start_soon(watch)

            # Writes in v2: the body stored as v1, the answer in v2.
            r = await api.post(V2, json=gadget("g4", "v2", dimension=9))
            assert r.status_code == 201, r.text
            assert r.json()["apiVersion"] == "conv.example.com/v2" and r.json()["spec"] == {"dimension": 9}
            stored = (await api.get(f"{V1}/g4")).json()
            assert stored["apiVersion"] == "conv.example.com/v1" and stored["spec"] == {"size": 9}
            g1 = (await api.get(f"{V2}/g1")).json()
            g1["spec"]["dimension"] = 42
            r = await api.put(f"{V2}/g1", json=g1)
            assert r.status_code == 200 and r.json()["spec"]["dimension"] == 42, r.text
            assert (await api2.get(f"{V1}/g1")).json()["spec"] == {"size": 42, "color": "red"}
            r = await api2.patch(f"{V2}/g2", content=json.dumps({"spec": {"dimension": 20}}), headers=MERGE)
            assert r.status_code == 200 and r.json()["spec"] == {"dimension": 20, "color": "red"}, r.text
            assert (await api.get(f"{V1}/g2")).json()["spec"] == {"size": 20, "color": "red"}

            await seen_three.wait()
            assert [(e["type"], e["object"]["apiVersion"], e["object"]["metadata"]["name"],
                     e["object"]["spec"]["dimension"]) for e in events] == [
                ("ADDED", "conv.example.com/v2", "g4", 9), ("MODIFIED", "conv.example.com/v2", "g1", 42),
                ("MODIFIED", "conv.example.com/v2", "g2", 20)]

            # kubectl reads both versions (its Table has the version's printer column).
            out = json.loads(await kubectl(two.kubeconfig, "get", "gadgets.v2.conv.example.com", "g1", "-o", "json"))
            assert out["apiVersion"] == "conv.example.com/v2" and out["spec"]["dimension"] == 42
            out = json.loads(await kubectl(one.kubeconfig, "get", "gadgets.v1.conv.example.com", "g1", "-o", "json"))
            assert out["apiVersion"] == "conv.example.com/v1" and out["spec"]["size"] == 42
            table = await kubectl(two.kubeconfig, "get", "gadgets.v2.conv.example.com")
            assert [ln.split() for ln in table.strip().splitlines()][1:] == [
                ["g1", "42"], ["g2", "20"], ["g3", "3"], ["g4", "9"]], table

            # The storage version moves to v2: storedVersions keeps v1 (objects are still stored
            # so); a new object is stored as v2, and the old ones still read in every version.
            await set_conversion(api, api2, url, conv.ca_bundle, storage="v2")

            async def stored_both() -> bool:
                got = (await api.get(f"{CRDS}/{NAME}")).json()
                return got["status"]["storedVersions"] == ["v1", "v2"]
            await poll_until(stored_both)
            r = await api2.post(V2, json=gadget("g5", "v2", dimension=5))
            assert r.status_code == 201, r.text
            before = len(conv.calls())
            r = await api.get(V1)
            assert [(i["apiVersion"], i["spec"]["size"]) for i in r.json()["items"]] == [
                ("conv.example.com/v1", 42), ("conv.example.com/v1", 20), ("conv.example.com/v1", 3),
                ("conv.example.com/v1", 9), ("conv.example.com/v1", 5)]
            # Only g5 (stored as v2) needed the webhook.
            assert len(conv.calls()) == before + 1 and [o["metadata"]["name"] for o in conv.calls()[-1]["objects"]] \
                == ["g5"]
            r = await api.get(V2)  # the storage version's reads convert the objects stored as v1
            assert [i["spec"]["dimension"] for i in r.json()["items"]] == [42, 20, 3, 9, 5]

            # A webhook that answers Failure: its message, in kube's words, a 500 at once.
            await set_conversion(api, api2, conv.url + "/fail", conv.ca_bundle, storage="v2")
            r = await api2.get(f"{V1}/g5")
            assert r.status_code == 500, r.text
            st = r.json()
            assert st["message"] == ("conversion webhook for conv.example.com/v2, Kind=Gadget failed: gadgets do not "
                                     "convert today"), st
            assert "reason" not in st and st["code"] == 500

            # A dead webhook: every read, list and write that needs it fails fast, never hangs.
            dead = dead_url()
            await set_conversion(api, api2, dead, conv.ca_bundle, storage="v2")
            with trio.fail_after(10):
                r = await api.get(f"{V2}/g1")
                assert r.status_code == 500, r.text
                msg = r.json()["message"]
                assert msg.startswith(f'conversion webhook for conv.example.com/v1, Kind=Gadget failed: Post '
                                      f'"{dead}?timeout=30s": '), msg
                r = await api2.get(V2)
                assert r.status_code == 500 and "Kind=GadgetList failed: Post" in r.json()["message"], r.text
                r = await api.post(V1, json=gadget("g6", "v1", size=6))
                assert r.status_code == 500, r.text
                assert r.json()["message"].startswith("conversion webhook for conv.example.com/v1, Kind=Gadget failed")
                # Nothing was half-written.
                assert (await api.get(f"{V2}/g6")).status_code == 404
                # Objects already in the version asked for need no webhook.
                r = await api.get(f"{V2}/g5")
                assert r.status_code == 200 and r.json()["spec"]["dimension"] == 5

            # A watch whose conversion fails ends with an ERROR event carrying the Status.
            async with api2.stream("GET", V2, params={"watch": "1", "resourceVersion": "0"}, timeout=30) as resp:
                lines = [json.loads(ln) async for ln in resp.aiter_lines() if ln]
            assert lines[-1]["type"] == "ERROR" and lines[-1]["object"]["code"] == 500, lines
            assert "conversion webhook for conv.example.com/v1, Kind=Gadget failed" in lines[-1]["object"]["message"]


async def test_conversion_is_validated_on_the_crd(api: httpx.AsyncClient) -> None:
    """spec.conversion with kube's messages (and its internal field names)."""
    crd = gadget_crd("http://example.com/convert?x=1", "bm90IGEgY2VydA==")
    crd["spec"]["conversion"]["webhook"]["conversionReviewVersions"] = ["v9"]
    with trio.fail_after(30):
        r = await api.post(CRDS, json=crd)
    assert r.status_code == 422, r.text
    msg = r.json()["message"]
    assert ("spec.conversion.webhookClientConfig.url: Invalid value: \"http\": 'https' is the only allowed URL "
            "scheme; desired format: https://host[/path]") in msg, msg
    assert 'spec.conversion.webhookClientConfig.url: Invalid value: "x=1": query parameters are not permitted' in msg
    assert "spec.conversion.conversionReviewVersions: Invalid value: []string{\"v9\"}: must include at least one " \
           "of v1, v1beta1" in msg, msg
    assert "spec.conversion.webhookClientConfig.caBundle: Invalid value" in msg
    crd = gadget_crd("https://example.com/convert", "")
    crd["spec"]["conversion"] = {"strategy": "None", "webhook": crd["spec"]["conversion"]["webhook"]}
    with trio.fail_after(30):
        r = await api.post(CRDS, json=crd)
    assert r.status_code == 422, r.text
    assert "spec.conversion.webhookClientConfig: Forbidden: should not be set when strategy is not set to Webhook" \
        in r.json()["message"]


async def test_a_slow_webhook_is_bounded_and_delays_nobody_else(nursery: trio.Nursery, tmp_path: Path) -> None:
    """A call waits at most the timeout (kube's 30 s; 1 s here), with kube's message, while calls
    to another webhook go on meanwhile."""
    conv = await start_conversion_server(nursery, tmp_path)
    slow = defs_from_crd(gadget_crd(conv.url + "/slow", conv.ca_bundle))
    fast = defs_from_crd(gadget_crd(conv.url + "/convert", conv.ca_bundle))
    v2_slow = next(d for d in slow if d.version == "v2")
    v2_fast = next(d for d in fast if d.version == "v2")
    converter = Converter(timeout_s=1)
    objs = [{**gadget(f"g{i}", "v1", size=i), "metadata": {"name": f"g{i}", "namespace": "default",
                                                             "uid": f"u{i}"}} for i in range(3)]
    done_fast: list[float] = []
    failed: list[str] = []

    async def slow_call() -> None:
        try:
            await converter.many(objs, v2_slow)
        except ConversionError as e:
            failed.append(e.message)

    async def fast_calls() -> None:
        for _ in range(5):
            got = await converter.many(objs, v2_fast)
            assert [o["spec"]["dimension"] for o in got] == [0, 1, 2]
            done_fast.append(trio.current_time())

    with trio.fail_after(10):
        start = trio.current_time()
        async with trio.open_nursery() as n:
            n.start_soon(slow_call)
            n.start_soon(fast_calls)
        took = trio.current_time() - start
    assert len(done_fast) == 5 and done_fast[-1] - start < 1  # not behind the slow call
    assert failed == [(f'conversion webhook for conv.example.com/v1, Kind=GadgetList failed: Post '
                      f'"{conv.url}/slow?timeout=1s": context deadline exceeded')]
    assert 1 <= took < 5


APPLY = {"Content-Type": "application/apply-patch+yaml"}


async def test_apply_ownership_across_webhook_versions(start_server, nursery: trio.Nursery,  # type: ignore[no-untyped-def]
                                                       tmp_path: Path) -> None:
    """A manager that applied spec.size through v1 owns spec.dimension as v2 names it: an apply
    through v2 changing it conflicts (kube's message names the v1 field), force takes it over,
    and an apply of another field does not conflict."""
    one, two = await start_server(), await start_server()
    conv = await start_conversion_server(nursery, tmp_path)
    async with client_for(one) as api, client_for(two) as api2:
        with trio.fail_after(90):
            assert (await api.post(CRDS, json=gadget_crd(conv.url + "/convert", conv.ca_bundle))).status_code == 201
            await established(api, NAME)

            async def served_on_two() -> bool:
                return (await api2.get(V2)).status_code == 200
            await poll_until(served_on_two)
            for i in range(3):
                r = await api.patch(f"{V1}/a{i}", content=json.dumps(gadget(f"a{i}", "v1", size=5)),
                                    params={"fieldManager": "alpha"}, headers=APPLY)
                assert r.status_code == 201, r.text
            for i in range(3):
                # Another field through v2: no conflict; beta owns it as v2.
                r = await api2.patch(f"{V2}/a{i}", content=json.dumps(gadget(f"a{i}", "v2", color="blue")),
                                     params={"fieldManager": "beta"}, headers=APPLY)
                assert r.status_code == 200, r.text
                assert r.json()["spec"] == {"dimension": 5, "color": "blue"}
                # alpha's field, renamed in v2: a conflict with alpha's v1 path.
                r = await api2.patch(f"{V2}/a{i}", content=json.dumps(gadget(f"a{i}", "v2", color="blue",
                                                                             dimension=7)),
                                     params={"fieldManager": "beta"}, headers=APPLY)
                assert r.status_code == 409, r.text
                # (an applier's identity has no apiVersion in kube, so none is printed)
                assert r.json()["message"] == 'Apply failed with 1 conflict: conflict with "alpha": .spec.size', r.text
                r = await api2.patch(f"{V2}/a{i}", content=json.dumps(gadget(f"a{i}", "v2", color="blue",
                                                                             dimension=7)),
                                     params={"fieldManager": "beta", "force": "true"}, headers=APPLY)
                assert r.status_code == 200 and r.json()["spec"]["dimension"] == 7, r.text
                by = {(m["manager"], m["apiVersion"]): m for m in r.json()["metadata"]["managedFields"]}
                assert by[("beta", "conv.example.com/v2")]["fieldsV1"]["f:spec"] == {"f:color": {}, "f:dimension": {}}
                assert "f:spec" not in by[("alpha", "conv.example.com/v1")]["fieldsV1"], by  # it lost spec.size
                assert (await api.get(f"{V1}/a{i}")).json()["spec"]["size"] == 7
