"""Repeated keys under ``fieldValidation`` (issue 7, item 16) in YAML bodies and in patches, with
kube-apiserver's texts (``test/integration/apiserver/field_validation_test.go``)."""

from __future__ import annotations

import httpx
import pytest
import trio

pytestmark = pytest.mark.integration

CM = "/api/v1/namespaces/default/configmaps"
Y = {"Content-Type": "application/yaml"}
MERGE = {"Content-Type": "application/merge-patch+json"}
SMP = {"Content-Type": "application/strategic-merge-patch+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def failure(r: httpx.Response, code: int, reason: str) -> str:
    assert r.status_code == code, r.text[:500]
    body = r.json()
    assert body["kind"] == "Status" and body["code"] == code and body["reason"] == reason, body
    return str(body["message"])


def warnings(r: httpx.Response) -> list[str]:
    """The warning texts, unquoted as client-go does (``299 - "text"``)."""
    out = []
    for h in r.headers.get_list("Warning"):
        assert h.startswith('299 - "') and h.endswith('"'), h
        out.append(h[7:-1].replace('\\"', '"'))
    return out


def cm_yaml(name: str) -> bytes:
    return (f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  name: {name}\n"
            f"  unknownMeta: x\ndata:\n  k: '1'\n  k: '2'\n").encode()


YAML_LINES = ['line 5: key "name" already set in map', 'line 9: key "k" already set in map']


async def test_yaml_bodies(api: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        for method, url in (("POST", f"{CM}?fieldValidation=Strict"), ("PUT", f"{CM}/ys?fieldValidation=Strict")):
            msg = failure(await api.request(method, url, content=cm_yaml("ys"), headers=Y), 400, "BadRequest")
            assert msg == ('ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: '
                           'yaml: unmarshal errors:\n  line 5: key "name" already set in map\n'
                           '  line 9: key "k" already set in map, unknown field "metadata.unknownMeta"'), msg
        assert (await api.get(f"{CM}/ys")).status_code == 404
        for query in ("?fieldValidation=Warn", ""):
            name = f"yw{len(query)}"
            r = await api.post(f"{CM}{query}", content=cm_yaml(name), headers=Y)
            assert r.status_code == 201, r.text
            assert warnings(r) == [*YAML_LINES, 'unknown field "metadata.unknownMeta"']
            assert r.json()["data"] == {"k": "2"}
            r = await api.put(f"{CM}/{name}{query}", content=cm_yaml(name), headers=Y)
            assert r.status_code == 200, r.text
            assert warnings(r) == [*YAML_LINES, 'unknown field "metadata.unknownMeta"']
        r = await api.post(f"{CM}?fieldValidation=Ignore", content=cm_yaml("yi"), headers=Y)
        assert r.status_code == 201 and "Warning" not in r.headers, r.text


MERGE_BODY = b'{"data":{"a":"1","a":"2"},"metadata":{"unknownMeta":"x"}}'
MERGE_ERRORS = ['duplicate field "data.a"', 'unknown field "metadata.unknownMeta"']


@pytest.mark.parametrize("headers", [MERGE, SMP], ids=["merge", "strategic"])
async def test_merge_patches(api: httpx.AsyncClient, headers: dict[str, str]) -> None:
    with trio.fail_after(30):
        name = f"mp-{headers['Content-Type'][12:15]}"
        assert (await api.post(CM, json={"metadata": {"name": name}, "data": {"z": "0"}})).status_code == 201
        msg = failure(await api.patch(f"{CM}/{name}?fieldValidation=Strict", content=MERGE_BODY, headers=headers),
                      422, "Invalid")
        assert msg.startswith(' "" is invalid: patch: Invalid value: "{'), msg
        assert msg.endswith('": strict decoding error: ' + ", ".join(MERGE_ERRORS)), msg
        assert (await api.get(f"{CM}/{name}")).json()["data"] == {"z": "0"}
        for query in ("?fieldValidation=Warn", ""):
            r = await api.patch(f"{CM}/{name}{query}", content=MERGE_BODY, headers=headers)
            assert r.status_code == 200, r.text
            assert warnings(r) == MERGE_ERRORS
            assert r.json()["data"] == {"z": "0", "a": "2"}
        r = await api.patch(f"{CM}/{name}?fieldValidation=Ignore", content=MERGE_BODY, headers=headers)
        assert r.status_code == 200 and "Warning" not in r.headers, r.text


JSON_PATCH_BODY = (b'[{"op": "add", "path": "/data/b", "value": "1", "foo": "bar"},'
                   b' {"op": "add", "path": "/data/c", "path": "/data/d", "value": "1"}]')
JSON_PATCH_ERRORS = ['json patch unknown field "[0].foo"', 'json patch duplicate field "[1].path"']


async def test_json_patch_operations(api: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        assert (await api.post(CM, json={"metadata": {"name": "jp"}, "data": {"z": "0"}})).status_code == 201
        msg = failure(await api.patch(f"{CM}/jp?fieldValidation=Strict", content=JSON_PATCH_BODY,
                                      headers=JSON_PATCH), 422, "Invalid")
        assert msg.endswith('": strict decoding error: ' + ", ".join(JSON_PATCH_ERRORS)), msg
        for query in ("?fieldValidation=Warn", ""):
            r = await api.patch(f"{CM}/jp{query}", content=JSON_PATCH_BODY, headers=JSON_PATCH)
            assert r.status_code == 200, r.text
            assert warnings(r) == JSON_PATCH_ERRORS
            assert r.json()["data"] == {"z": "0", "b": "1", "d": "1"}
        r = await api.patch(f"{CM}/jp?fieldValidation=Ignore", content=JSON_PATCH_BODY, headers=JSON_PATCH)
        assert r.status_code == 200 and "Warning" not in r.headers, r.text
