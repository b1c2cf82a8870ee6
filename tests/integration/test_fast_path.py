"""The read fast path (gateway/_fast.py) answers as the app does: the same requests sent through
both paths (``FastPath.enabled`` off: Quart's handler) give the same status line, headers and body,
the same request metrics, flow-control counts, audit records and request-log lines; and the fast
path did serve what it should (its answers are counted by Audit-Id), so a silent fall-through fails."""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from gateway._fast import FastPath
from gateway._settings import load_audit_policy
from tests.conftest import StartServer, client_for, poll_until

pytestmark = pytest.mark.integration

LC = "/apis/tenancy.jetkube.io/v1alpha1/logicalclusters"
RBAC = "/apis/rbac.authorization.k8s.io/v1"
EVENTS = "/apis/audit.jetkube.io/v1/events"
H = "/apis/history.jetkube.io/v1"
POLICY = """
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
"""
TENANTS = ("root", "t1")
NAMESPACES = ("alpha", "beta")  # (and "gamma", where the writes go)
PER_NS = 12


def t(tenant: str, path: str) -> str:
    return path if tenant == "root" else f"/clusters/{tenant}{path}"


class Lines(logging.Handler):
    """The request-log lines (``jetkube.httplog``) by audit ID."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.by_id: dict[str, dict[str, Any]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        fields = {k: getattr(record, k, None) for k in ("verb", "URI", "userAgent", "srcIP", "resp", "user")}
        self.by_id[getattr(record, "audit_id", "")] = fields


def _requests(old_rv: str) -> list[tuple[str, str, str, dict[str, str], dict[str, str]]]:
    """(who, method, path, query, headers) of every read compared, with the path each should take."""
    out: list[tuple[str, str, str, dict[str, str], dict[str, str]]] = []
    for tenant in TENANTS:
        for ns in NAMESPACES:
            cms = t(tenant, f"/api/v1/namespaces/{ns}/configmaps")
            for i in range(PER_NS):
                out.append(("admin", "GET", f"{cms}/cm-{i}", {}, {}))
            out += [
                ("admin", "GET", f"{cms}/cm-0", {"resourceVersion": "0"}, {}),
                ("admin", "GET", f"{cms}/missing", {}, {}),  # 404
                ("admin", "HEAD", f"{cms}/cm-1", {}, {}),
                ("admin", "GET", f"{cms}/cm-2", {}, {"Accept": "application/json, */*"}),
                ("admin", "GET", f"{cms}/cm-3", {"resourceVersion": "abc"}, {}),  # 400
                ("admin", "GET", cms, {}, {}),
                ("admin", "GET", cms, {"limit": "5"}, {}),
                ("admin", "GET", cms, {"labelSelector": "half=a"}, {}),
                ("admin", "GET", cms, {"labelSelector": "half in (a"}, {}),  # 400
                ("admin", "GET", cms, {"fieldSelector": "metadata.name=cm-4"}, {}),
                ("admin", "GET", t(tenant, f"/api/v1/namespaces/{ns}/secrets/s-0"), {}, {}),
                ("alice", "GET", f"{cms}/cm-5", {}, {}),  # 200 in alpha, 403 in beta; 403 in t1
                ("alice", "GET", cms, {}, {}),
                ("alice", "GET", f"{cms}/missing", {}, {}),
                ("bob", "GET", f"{cms}/cm-6", {}, {}),  # 403
            ]
        out += [
            ("admin", "GET", t(tenant, "/api/v1/namespaces/alpha"), {}, {}),
            ("admin", "GET", t(tenant, "/api/v1/namespaces"), {}, {}),
            ("admin", "GET", t(tenant, "/api/v1/configmaps"), {"labelSelector": "half=b"}, {}),
            ("admin", "GET", t(tenant, "/apis/rbac.authorization.k8s.io/v1/clusterroles/admin"), {}, {}),
            ("nobody", "GET", t(tenant, "/api/v1/namespaces/alpha/configmaps/cm-0"), {}, {}),  # 401
        ]
    cm = "/api/v1/namespaces/alpha/configmaps/hist"
    out += [
        ("admin", "GET", cm, {"resourceVersion": old_rv, "resourceVersionMatch": "Exact"}, {}),  # 410
        ("admin", "GET", "/api/v1/namespaces/alpha/configmaps", {"resourceVersion": old_rv,
                                                                "resourceVersionMatch": "Exact"}, {}),  # 410
        ("admin", "GET", "/clusters/nope/api/v1/namespaces/alpha/configmaps/cm-0", {}, {}),  # no such tenant
    ]
    return out


#: Requests that must go to the app (each would be answered wrongly if the fast path took it).
APP_ONLY = [
    ("admin", "GET", "/api/v1/namespaces/alpha/configmaps/cm-0", {}, {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}),
    ("admin", "GET", "/api/v1/namespaces/alpha/configmaps/cm-0", {}, {"Accept": "application/vnd.kubernetes.protobuf"}),
    ("admin", "GET", "/api/v1/namespaces/alpha/configmaps", {}, {"Accept": "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"}),
    ("admin", "GET", "/api/v1/namespaces/alpha/configmaps/cm-0", {}, {"Accept": "application/yaml"}),
    ("admin", "GET", "/api/v1/namespaces/alpha/configmaps/cm-0", {}, {"Impersonate-User": "alice"}),
    ("admin", "GET", "/api/v1/namespaces/alpha/configmaps", {"watch": "1", "timeoutSeconds": "1"}, {}),
    ("admin", "GET", "/api/v1/namespaces/alpha/status", {}, {}),  # a subresource
    ("admin", "GET", "/api/v1/configmaps/cm-0", {}, {}),  # a namespaced kind without its namespace: 405
    ("admin", "GET", "/version", {}, {}),
    ("admin", "GET", "/clusters/*/api/v1/configmaps", {}, {}),
    ("admin", "DELETE", "/api/v1/namespaces/alpha/configmaps", {"dryRun": "All"}, {}),  # a deletecollection
    ("admin", "PATCH", "/api/v1/namespaces/alpha/configmaps/cm-0", {}, {"Content-Type": "application/yaml"}),  # 415
]


def fast_answers(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The Audit-Ids of the answers the fast path gives from now on (its ``_serve`` spied on)."""
    fast_ids: set[str] = set()
    real_serve = FastPath._serve

    async def counted(self: FastPath, scope: Any, receive: Any, send: Any, *args: Any) -> None:
        async def spy(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                fast_ids.add(dict(message["headers"])[b"audit-id"].decode())
            await send(message)

        await real_serve(self, scope, receive, spy, *args)

    monkeypatch.setattr(FastPath, "_serve", counted)
    return fast_ids


async def test_fast_reads_are_the_apps(start_server: StartServer, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    fast_ids = fast_answers(monkeypatch)
    lines = Lines()
    http_log = logging.getLogger("jetkube.httplog")
    http_log.addHandler(lines)
    old_level = http_log.level
    http_log.setLevel(logging.INFO)
    tokens = tmp_path / "tokens.csv"
    tokens.write_text("alice-token,alice,u-alice\nbob-token,bob,u-bob\n")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    try:
        gw = await start_server(token_file=str(tokens), audit_policy=load_audit_policy(str(policy)),
                                request_log="all", history_max_revisions=1, history_retention_interval_s=0.2)
        with trio.fail_after(120):
            async with client_for(gw) as admin:
                await _populate(admin)
                old_rv = await _compacted_version(admin)
                await _compare(gw, admin, old_rv, fast_ids, lines, monkeypatch)
    finally:
        http_log.removeHandler(lines)
        http_log.setLevel(old_level)


async def _populate(admin: httpx.AsyncClient) -> None:
    r = await admin.post(LC, json={"apiVersion": "tenancy.jetkube.io/v1alpha1", "kind": "LogicalCluster",
                                   "metadata": {"name": "t1"}})
    assert r.status_code == 201, r.text

    async def ready() -> bool:
        r = await admin.get(f"{LC}/t1")
        return r.status_code == 200 and (r.json().get("status") or {}).get("phase") == "Ready"

    await poll_until(ready)
    for tenant in TENANTS:
        r = await admin.post(t(tenant, "/api/v1/namespaces"), json={"metadata": {"name": "gamma"}})
        assert r.status_code == 201, r.text
        for ns in NAMESPACES:
            r = await admin.post(t(tenant, "/api/v1/namespaces"), json={"metadata": {"name": ns}})
            assert r.status_code == 201, r.text
            for i in range(PER_NS):
                r = await admin.post(t(tenant, f"/api/v1/namespaces/{ns}/configmaps"), json={
                    "metadata": {"name": f"cm-{i}", "labels": {"half": "ab"[i % 2]}}, "data": {"i": str(i) * (i + 1)}})
                assert r.status_code == 201, r.text
            r = await admin.post(t(tenant, f"/api/v1/namespaces/{ns}/secrets"),
                                 json={"metadata": {"name": "s-0"}, "stringData": {"k": "v"}})
            assert r.status_code == 201, r.text
        # alice may read configmaps in alpha (root's only: t1 has no such binding)
        if tenant == "root":
            r = await admin.post(f"{RBAC}/namespaces/alpha/roles", json={
                "metadata": {"name": "read-cm"},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]})
            assert r.status_code == 201, r.text
            r = await admin.post(f"{RBAC}/namespaces/alpha/rolebindings", json={
                "metadata": {"name": "alice-read-cm"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-cm"},
                "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}]})
            assert r.status_code == 201, r.text


async def _compacted_version(admin: httpx.AsyncClient) -> str:
    """A resourceVersion below the compaction point (retention keeps one revision): a 410."""
    cm = "/api/v1/namespaces/alpha/configmaps"
    r = await admin.post(cm, json={"metadata": {"name": "hist"}, "data": {"v": "0"}})
    assert r.status_code == 201, r.text
    old = int(r.json()["metadata"]["resourceVersion"])
    for v in range(1, 4):
        r = await admin.patch(f"{cm}/hist", content=json.dumps({"data": {"v": str(v)}}),
                              headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 200, r.text

    async def compacted() -> bool:
        r = await admin.get(f"{H}/compaction")
        return r.status_code == 200 and int(r.json()["resourceVersion"]) > old

    await poll_until(compacted)
    return str(old)


def _shape(r: httpx.Response, tag: str = "") -> tuple[Any, ...]:
    """Everything the client sees but the Date and Audit-Id values (names and order kept); with a
    ``tag`` (a write phase's), what differs between two writes of the same kind is normalized."""
    volatile = (b"date", b"audit-id") + ((b"content-length",) if tag else ())
    headers = [(k, b"" if k.lower() in volatile else v) for k, v in r.headers.raw]
    body = r.content
    if tag:
        body = re.sub(rb'"(uid|resourceVersion|creationTimestamp|time)":"[^"]*"', rb'"\1":""',
                      body.replace(tag.encode(), b"TAG"))
        body = re.sub(rb"ResourceVersion in object meta: \d+", b"ResourceVersion in object meta: N", body)
    return r.http_version, r.status_code, r.reason_phrase, tuple(headers), body


def _metrics(text: str) -> Counter[str]:
    """The request-counting series (value per sample line; response sizes by count only: a LIST's
    resourceVersion may gain a digit between two runs)."""
    keep = ("apiserver_request_total{", "apiserver_flowcontrol_dispatched_requests_total{",
            "apiserver_flowcontrol_rejected_requests_total{", "apiserver_request_duration_seconds_count{",
            "apiserver_response_sizes_count{", "jetkube_tenant_requests_total{", "apiserver_request_aborts_total{",
            'jetkube_stage_duration_seconds_count{stage="authn"}')
    out: Counter[str] = Counter()
    for ln in text.splitlines():
        if ln.startswith(keep):
            name, value = ln.rsplit(" ", 1)
            out[name] = int(float(value))
    return out


WRITES_AUDITED = 16


async def _writes(c: httpx.AsyncClient, tag: str, tokens: dict[str, str]) -> list[httpx.Response]:
    """Creates, updates, patches and deletes (and their errors), named after the phase's ``tag``, in
    namespace gamma."""
    cms = "/api/v1/namespaces/gamma/configmaps"
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    alice = {"Authorization": f"Bearer {tokens['alice']}"}

    def cm(name: str, **extra: Any) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, **extra}, "data": {"k": tag}}

    out = [await c.post(cms, json=cm(f"w{tag}-a"), headers=admin)]  # 201
    rv = out[0].json()["metadata"]["resourceVersion"]
    out.append(await c.post(cms, json=cm(f"w{tag}-a"), headers=admin))  # 409 AlreadyExists
    out.append(await c.put(f"{cms}/w{tag}-a", json=cm(f"w{tag}-a", resourceVersion=rv, labels={"x": "y"}),
                           headers=admin))  # 200
    out.append(await c.put(f"{cms}/w{tag}-a", json=cm(f"w{tag}-a", resourceVersion=rv), headers=admin))  # 409
    out.append(await c.put(f"{cms}/w{tag}-missing", json=cm(f"w{tag}-missing"), headers=admin))  # 404
    out.append(await c.put(f"{cms}/w{tag}-a", json=cm(f"w{tag}-other"), headers=admin))  # 400: names differ
    out.append(await c.post(cms, json=cm(f"W{tag}-Upper"), headers=admin))  # 422
    out.append(await c.post(cms, content=b'{"metadata": {"name": ', headers={**admin,
                                                                           "Content-Type": "application/json"}))
    dup = b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"w%s-d"},"data":{"k":"1","k":"2"},"bogus":1}'
    out.append(await c.post(cms, params={"fieldValidation": "Warn"}, content=dup % tag.encode(),
                            headers={**admin, "Content-Type": "application/json"}))  # 201, two Warnings
    out.append(await c.post(cms, params={"fieldValidation": "Strict"}, content=dup % tag.encode(),
                            headers={**admin, "Content-Type": "application/json"}))  # 400
    out.append(await c.post(cms, params={"dryRun": "All"}, json=cm(f"w{tag}-dry"), headers=admin))  # 201, not stored
    out.append(await c.post(cms, params={"fieldManager": "mgr"}, json=cm(f"w{tag}-m"), headers=admin))
    out.append(await c.post(cms, json=cm(f"w{tag}-b"), headers=alice))  # 403 (authorized after the body is read)
    out.append(await c.post(cms, json=cm(f"w{tag}-c"), headers={"Authorization": "Bearer nope"}))  # 401 before it
    out.append(await c.post(t("t1", cms), json=cm(f"w{tag}-t"), headers=admin))  # in a tenant
    out.append(await c.post("/api/v1/namespaces/nope/configmaps", json=cm(f"w{tag}-n"), headers=admin))  # 404
    # Patches of each media type, and their errors, then deletes, of objects of their own (written
    # more than once: not among the audit records compared, see ``_compare``).
    out.append(await c.post(cms, json=cm(f"w{tag}-p"), headers=admin))  # 201
    out.append(await c.post(cms, json=cm(f"w{tag}-e"), headers=admin))  # 201
    a = f"{cms}/w{tag}-p"

    async def patch(path: str, ctype: str, body: bytes, who: dict[str, str] = admin,
                    **q: str) -> httpx.Response:
        return await c.patch(path, params=q, content=body, headers={**who, "Content-Type": ctype})

    out.append(await patch(a, "application/merge-patch+json", b'{"data": {"m": "1"}}'))  # 200
    out.append(await patch(a, "application/json-patch+json", b'[{"op": "add", "path": "/data/j", "value": "2"}]'))
    out.append(await patch(a, "application/strategic-merge-patch+json", b'{"metadata": {"labels": {"s": "3"}}}'))
    out.append(await patch(a, "application/apply-patch+yaml", b'apiVersion: v1\nkind: ConfigMap\nmetadata:\n'
                           b'  name: w%s-a\ndata:\n  ap: "4"\n' % tag.encode(), fieldManager="ap", force="true"))
    out.append(await patch(f"{cms}/w{tag}-ap", "application/apply-patch+yaml", b'apiVersion: v1\nkind: ConfigMap\n'
                           b'metadata:\n  name: w%s-ap\n' % tag.encode(), fieldManager="ap"))  # 201
    out.append(await patch(a, "application/merge-patch+json", b'{"metadata": {"resourceVersion": "1"}}'))  # 409
    out.append(await patch(f"{cms}/w{tag}-missing", "application/merge-patch+json", b'{"data": {"m": "1"}}'))  # 404
    out.append(await patch(a, "application/merge-patch+json", b'{"data": '))  # 400
    out.append(await patch(a, "application/json-patch+json", b'{"op": "add"}'))  # 400: not a list
    out.append(await patch(a, "application/merge-patch+json", b'{"data": {"k": 1}}'))  # 400: not a string
    out.append(await patch(a, "application/merge-patch+json", b'{"data": {"m": "1"}}', alice))  # 403
    out.append(await patch(a, "application/merge-patch+json", b'{"data": {"x": "1"}}', dryRun="All"))  # 200
    # Deletes: without a body, with DeleteOptions (preconditions, propagation), dry, missing.
    out.append(await c.request("DELETE", f"{cms}/w{tag}-e", headers=admin, params={"dryRun": "All"}))  # 200, kept
    out.append(await c.request("DELETE", f"{cms}/w{tag}-e", headers=admin))  # 200
    out.append(await c.request("DELETE", a, headers=admin, json={"preconditions": {"resourceVersion": "1"}}))  # 409
    out.append(await c.request("DELETE", a, headers=admin, json={"kind": "DeleteOptions", "apiVersion": "v1",
                                                               "propagationPolicy": "Background"}))  # 200
    out.append(await c.request("DELETE", a, headers=admin))  # 404
    out.append(await c.request("DELETE", f"{cms}/w{tag}-e", headers=alice))  # 403
    out.append(await c.request("DELETE", f"{cms}/w{tag}-e", headers={**admin, "Content-Length": "0"}))  # 404
    return out


async def _compare(gw: Any, admin: httpx.AsyncClient, old_rv: str, fast_ids: set[str], lines: Lines,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = {"admin": gw.admin_token, "alice": "alice-token", "bob": "bob-token", "nobody": "no-such-token"}
    requests = _requests(old_rv)

    async def send(c: httpx.AsyncClient, who: str, method: str, path: str, q: dict[str, str],
                   h: dict[str, str]) -> httpx.Response:
        return await c.request(method, path, params=q, headers={"Authorization": f"Bearer {tokens[who]}", **h})

    async def phase(fast: bool, tag: str = "") -> tuple[list[httpx.Response], Counter[str]]:
        monkeypatch.setattr(FastPath, "enabled", fast)
        async with httpx.AsyncClient(base_url=str(gw.http_url), timeout=30) as c:
            before = _metrics((await admin.get("/metrics")).text)
            out = await _writes(c, tag, tokens) if tag else [await send(c, *req) for req in requests]
            after = _metrics((await admin.get("/metrics")).text)
        after.subtract(before)
        return out, +after

    # Reads: each phase twice, alternated: a controller's write between two runs moves a LIST's
    # version, so each request must match the other path in one of the pairs.
    runs = [await phase(True), await phase(False), await phase(True), await phase(False)]
    fast_runs, app_runs = [runs[0], runs[2]], [runs[1], runs[3]]
    for i, req in enumerate(requests):
        pairs = [(_shape(f[0][i]), _shape(a[0][i])) for f in fast_runs for a in app_runs]
        assert any(x == y for x, y in pairs), (req, pairs[0])
    codes = Counter(r.status_code for r in fast_runs[0][0])
    assert {200, 400, 401, 403, 404, 410} <= set(codes), codes
    # Writes (two tags of the same length), compared but for names, uids, versions and times.
    fast_w, app_w = await phase(True, "zqf"), await phase(False, "zqa")
    for f, a in zip(fast_w[0], app_w[0]):
        assert _shape(f, "zqf") == _shape(a, "zqa"), (f.request.url, _shape(f, "zqf"), _shape(a, "zqa"))
    codes = Counter(r.status_code for r in fast_w[0])
    assert {200, 201, 400, 401, 403, 404, 409, 422} <= set(codes), codes
    methods = Counter((r.request.method, r.status_code) for r in fast_w[0])
    assert {("PATCH", 200), ("PATCH", 201), ("PATCH", 409), ("PATCH", 404), ("PATCH", 400), ("PATCH", 403),
            ("DELETE", 200), ("DELETE", 409), ("DELETE", 404), ("DELETE", 403)} <= set(methods), methods
    assert len(fast_w[0][8].headers.get_list("Warning")) == 2
    assert fast_w[0][13].status_code == 401 and fast_w[0][13].headers["Connection"] == "close"
    assert "Connection" not in fast_w[0][12].headers

    # The fast path served every one of these (counted by Audit-Id), the app none.
    for r in fast_runs[0][0] + fast_runs[1][0] + fast_w[0]:
        assert r.headers["Audit-Id"] in fast_ids, (r.request.url, r.status_code)
    for r in app_runs[0][0] + app_runs[1][0] + app_w[0]:
        assert r.headers["Audit-Id"] not in fast_ids, (r.request.url, r.status_code)
    # ... and none of the requests it must leave to the app.
    monkeypatch.setattr(FastPath, "enabled", True)
    async with httpx.AsyncClient(base_url=str(gw.http_url), timeout=30) as c:
        for req in APP_ONLY:
            r = await send(c, *req)
            assert r.status_code < 500, (req, r.status_code, r.text)
            assert r.headers["Audit-Id"] not in fast_ids, req

    # The same counts: request totals and latencies by labels and code, flow control, tenants, authn.
    for f, a in ((fast_runs[0][1], app_runs[0][1]), (fast_w[1], app_w[1])):
        assert f == a, (f - a, a - f)
        assert f  # (something was counted)

    # The same request-log lines (but the client's port, which each connection has its own of).
    def line(r: httpx.Response, tag: str = "") -> dict[str, Any]:
        d = dict(lines.by_id[r.headers["Audit-Id"]])
        d["srcIP"] = str(d["srcIP"]).rsplit(":", 1)[0]
        if tag:
            d["URI"] = str(d["URI"]).replace(tag, "TAG")
        return d

    for f, a in zip(fast_runs[0][0], app_runs[0][0]):
        assert line(f) == line(a), (f.request.url, line(f), line(a))
    for f, a in zip(fast_w[0], app_w[0]):
        assert line(f, "zqf") == line(a, "zqa"), (f.request.url, line(f, "zqf"), line(a, "zqa"))

    # The same audit records (but IDs, times, and the writes' names). An appended write's record is
    # on its log event: the first create's event is purged once it is updated (retention keeps one
    # revision), so that one is not compared, nor the patches and deletes (each object written many
    # times), which follow the first WRITES_AUDITED writes.
    fast_w_kept, app_w_kept = fast_w[0][1:WRITES_AUDITED], app_w[0][1:WRITES_AUDITED]
    ids = {r.headers["Audit-Id"] for r in fast_runs[0][0] + app_runs[0][0] + fast_w_kept + app_w_kept}

    async def events() -> dict[str, dict[str, Any]]:  # (each tenant's records in its own stream view)
        out = {}
        for tenant in TENANTS:
            r = await admin.get(t(tenant, EVENTS))
            out.update({e["auditID"]: e for e in map(json.loads, r.text.splitlines()) if e["auditID"] in ids})
        return out

    async def recorded() -> bool:
        return len(await events()) == len(ids)

    await poll_until(recorded)
    got = await events()

    def record(r: httpx.Response, tag: str = "") -> Any:
        e = dict(got[r.headers["Audit-Id"]])
        for k in ("auditID", "requestReceivedTimestamp", "stageTimestamp"):
            e.pop(k)
        text = json.dumps(e, sort_keys=True)
        if tag:
            text = re.sub(r'"(resourceVersion|uid|jetkube.io/log-sequence)": "[^"]*"', r'"\1": ""',
                          text.replace(tag, "TAG"))
        return json.loads(text)

    for f, a in zip(fast_runs[0][0], app_runs[0][0]):
        assert record(f) == record(a), (f.request.url, record(f), record(a))
    for f, a in zip(fast_w_kept, app_w_kept):
        assert record(f, "zqf") == record(a, "zqa"), (f.request.url, record(f, "zqf"), record(a, "zqa"))
