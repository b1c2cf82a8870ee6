"""Bad input, generated (issue 7): hypothesis draws hostile requests and every answer must be
bounded, never a 5xx, and leave the store unchanged; without a token it must be 401.

Shape, and why: pytest-trio runs the test and owns the server (a real nats-server from the
`nats_url` fixture, and `jetkube serve` as its own process with a memory limit, the
`server_process` fixture of `bad_input_support`: a server spinning on hostile input must not block
the loop that bounds it). Hypothesis is synchronous, so each property runs as a `@given` function in one worker thread
(`trio.to_thread.run_sync`), and every example crosses back into the test's trio loop with
`trio.from_thread.run` to send its request under `trio.fail_after`. The server thus starts once per
property, and hypothesis sees a plain sync function with no fixtures.

Reproducible: `derandomize=True` and `database=None` (the same examples on every run and
machine, nothing read from or written to `.hypothesis/`), `deadline=None` (time is bounded by
`fail_after` per request instead), no shrinking and a stop at the first failure (it prints the
example that failed, and a run with failures stays within its time), `max_examples` between 50
and 100 per property.

"Unchanged store": after every example the stream's last sequence is read from the log (nothing
was appended); before and after the whole property, a consistent LIST of every kind, items and
resourceVersions, must match.
"""

from __future__ import annotations

import base64
import collections
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import trio
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bus import Log
from tests.integration.bad_input_support import (
    REQUEST_BOUND_S,
    Server,
    assert_serving,
    assert_unchanged,
    listable_paths,
    open_server_log,
    server_process,
    store_state,
)

pytestmark = pytest.mark.integration

CM = "/api/v1/namespaces/default/configmaps"
EXAMPLES = 60
PROPERTY_BOUND_S = 120  # all of one property's examples

PROPERTY = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    phases=(Phase.explicit, Phase.generate), print_blob=False, report_multiple_bugs=False,
                    suppress_health_check=list(HealthCheck))

# --- strategies -------------------------------------------------------------------------------

# Text of any Unicode scalar value except surrogates and controls (httpx refuses those in headers).
ANY_TEXT = st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=40)
NON_ASCII_DIGITS = st.text(st.characters(categories=("Nd",), exclude_characters="0123456789"), min_size=1, max_size=6)
MIXED_DIGITS = st.tuples(st.text(st.sampled_from("0123456789"), max_size=3), NON_ASCII_DIGITS,
                         st.text(st.sampled_from("0123456789"), max_size=3)).map("".join)
HUGE_NUMBER = st.integers(19, 450).map(lambda n: "9" * n)

PREFIXES = ["", "/api", "/api/v1", "/apis", "/apis/rbac.authorization.k8s.io/v1", "/api/v1/namespaces",
            "/api/v1/namespaces/default", CM, f"{CM}/target", "/api/v1/namespaces/default/secrets",
            "/apis/coordination.k8s.io/v1/namespaces/default/leases", "/api/v1/namespaces/default/serviceaccounts",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "/clusters/x/api/v1/configmaps",
            "/openapi/v2", "/openapi/v3", "/version", "/healthz", "/metrics", "/api/v1/watch/configmaps"]
SEGMENT = st.one_of(ANY_TEXT, st.sampled_from(["..", ".", "", "%", "status", "token", "scale", "watch", "x" * 300]))
PATHS = st.builds(lambda p, segs: p + "".join("/" + quote(s, safe="") for s in segs),
                  st.sampled_from(PREFIXES), st.lists(SEGMENT, max_size=4))
METHODS = st.one_of(st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]),
                    st.from_regex(r"[A-Z]{1,12}", fullmatch=True).filter(lambda m: m != "CONNECT"))
CONTENT_TYPES = st.one_of(
    st.sampled_from(["application/json", "application/yaml", "application/merge-patch+json",
                     "application/strategic-merge-patch+json", "application/json-patch+json",
                     "application/apply-patch+yaml", "application/vnd.kubernetes.protobuf", "text/plain",
                     "application/json; charset=utf-16", "multipart/form-data; boundary=x", ""]),
    ANY_TEXT)
HEADER_NAMES = st.one_of(
    st.sampled_from(["Content-Type", "Accept", "User-Agent", "Impersonate-User", "Impersonate-Group",
                     "Impersonate-Uid", "Impersonate-Extra-x", "Audit-Id", "X-Remote-User", "Accept-Encoding",
                     "If-None-Match", "Cookie"]),
    st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True).filter(
        lambda n: n.lower() not in {"content-length", "transfer-encoding", "host", "connection", "expect",
                                    "upgrade", "te", "trailer", "authorization", "keep-alive",
                                    "proxy-connection"}))
HEADER_VALUES = ANY_TEXT.map(lambda s: s.strip().encode())
HEADERS = st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=4)

QUERY_KEYS = ["resourceVersion", "limit", "continue", "timeoutSeconds", "labelSelector", "fieldSelector",
              "fieldValidation", "dryRun", "resourceVersionMatch", "watch", "allowWatchBookmarks",
              "sendInitialEvents", "fieldManager", "propagationPolicy", "gracePeriodSeconds", "pretty", "force"]
NUMERIC_KEYS = ("resourceVersion", "limit", "timeoutSeconds")


def _continue_like(doc: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")


JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), ANY_TEXT)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                                st.dictionaries(ANY_TEXT, kids, max_size=4)),
                           max_leaves=12)
QUERY_VALUES = st.one_of(
    ANY_TEXT, NON_ASCII_DIGITS, MIXED_DIGITS, HUGE_NUMBER, st.integers(-10**6, 10**6).map(str),
    st.sampled_from(["", "0", "-1", "1e400", "0x10", "+1", " 1", "1 ", "1.5", "NaN", "a in (", "a,,b", "!", "=",
                     "metadata.name=", "x=y", "spec.nothing=x", "All", "Strict", "Warn", "Ignore", "Exact",
                     "NotOlderThan", "true", "false", "²", "①", "١", "٣٤"]),
    st.fixed_dictionaries({"v": st.sampled_from(["jk1", "meta.k8s.io/v1"]), "rv": JSON_VALUES,
                           "start": JSON_VALUES}).map(_continue_like),
    JSON_VALUES.map(_continue_like))
QUERIES = st.lists(st.tuples(st.one_of(st.sampled_from(QUERY_KEYS), ANY_TEXT), QUERY_VALUES), max_size=5)

# Bodies: random bytes, deep nesting, YAML alias bombs, huge strings.
DEEP_JSON = st.builds(lambda d, open_: (open_ * d + ("]" if open_ == "[" else "}") * d
                                        if open_ == "[" else '{"a":' * d + "1" + "}" * d).encode(),
                      st.integers(100, 5000), st.sampled_from(["[", "{"]))
DEEP_YAML = st.builds(lambda d: b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: d}\ndata: " + b"[" * d + b"]" * d,
                      st.integers(100, 3000))


def _alias_bomb(levels: int, width: int) -> bytes:
    out = ['a0: &a0 ["lol"]']
    for i in range(1, levels):
        out.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]")
    return ("\n".join(out) + f"\ndata: {{k: *a{levels - 1}}}\n").encode()


ALIAS_BOMBS = st.builds(_alias_bomb, st.integers(2, 10), st.integers(2, 12))
RANDOM_BODIES = st.one_of(st.binary(max_size=2048), DEEP_JSON, DEEP_YAML, ALIAS_BOMBS,
                          JSON_VALUES.map(lambda v: json.dumps(v).encode()),
                          st.integers(1, 3 * 1024 * 1024).map(lambda n: b'{"a":"' + b"x" * n + b'"}'))

# Valid objects with one value of a wrong type (or a huge string where a length limit applies)
# at a schema position: each must be refused with a 4xx and change nothing.
TEMPLATES: dict[str, tuple[str, dict[str, Any]]] = {
    "configmap": (CM, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "t-cm", "labels": {"a": "b"}},
                       "data": {"k": "v"}, "binaryData": {"b": "aGk="}, "immutable": False}),
    "secret": ("/api/v1/namespaces/default/secrets",
               {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "t-s"}, "type": "Opaque",
                "data": {"k": "aGk="}, "stringData": {"s": "v"}}),
    "lease": ("/apis/coordination.k8s.io/v1/namespaces/default/leases",
              {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "t-l"},
               "spec": {"holderIdentity": "h", "leaseDurationSeconds": 10, "leaseTransitions": 1}}),
    "role": ("/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles",
             {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "t-r"},
              "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}),
    "namespace": ("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "t-ns"}}),
}
# (template, path in the object, the type the schema wants)
POSITIONS: list[tuple[str, tuple[Any, ...], str]] = [
    *[(t, ("metadata",), "object") for t in TEMPLATES],
    *[(t, ("metadata", "name"), "string") for t in TEMPLATES],
    ("configmap", ("metadata", "labels"), "object"), ("configmap", ("metadata", "labels", "a"), "string"),
    ("configmap", ("metadata", "annotations"), "object"), ("configmap", ("metadata", "generation"), "int64"),
    ("configmap", ("metadata", "ownerReferences"), "array"), ("configmap", ("metadata", "finalizers"), "array"),
    ("configmap", ("data",), "object"), ("configmap", ("data", "k"), "string"),
    ("configmap", ("binaryData", "b"), "bytes"), ("configmap", ("immutable",), "boolean"),
    ("secret", ("data", "k"), "bytes"), ("secret", ("stringData", "s"), "string"), ("secret", ("type",), "string"),
    ("lease", ("spec",), "object"), ("lease", ("spec", "leaseDurationSeconds"), "int32"),
    ("lease", ("spec", "leaseTransitions"), "int32"), ("lease", ("spec", "holderIdentity"), "string"),
    ("role", ("rules",), "array"), ("role", ("rules", 0), "object"), ("role", ("rules", 0, "verbs"), "array"),
    ("role", ("rules", 0, "verbs", 0), "string"), ("role", ("rules", 0, "apiGroups"), "array"),
    ("namespace", ("spec",), "object"), ("namespace", ("spec", "finalizers"), "array"),
]
_NOT_STRING = st.one_of(st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                        st.lists(JSON_SCALARS, max_size=3), st.dictionaries(ANY_TEXT, JSON_SCALARS, max_size=3))
WRONG: dict[str, st.SearchStrategy[Any]] = {
    "string": _NOT_STRING,
    "object": st.one_of(st.booleans(), st.integers(), ANY_TEXT, st.lists(JSON_SCALARS, max_size=3)),
    "array": st.one_of(st.booleans(), st.integers(), ANY_TEXT, st.dictionaries(ANY_TEXT, JSON_SCALARS, min_size=1,
                                                                               max_size=3)),
    "boolean": st.one_of(st.integers(), ANY_TEXT, st.lists(JSON_SCALARS, max_size=3)),
    "int64": st.one_of(st.integers(min_value=2**63), st.integers(max_value=-(2**63) - 1), ANY_TEXT, st.booleans(),
                       st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f != int(f))),
    "int32": st.one_of(st.integers(min_value=2**31), st.integers(max_value=-(2**31) - 1), ANY_TEXT, st.booleans(),
                       st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f != int(f))),
    "bytes": st.one_of(_NOT_STRING, st.sampled_from(["!!!", "a", "ab=c", "####", "é", "aGk"])),
}
HUGE = st.integers(300, 2 * 1024 * 1024).map(lambda n: "x" * n)
# Role names have no length limit in kube (path-segment validation only): not a bad input.
HUGE_POSITIONS = [(t, ("metadata", "name")) for t in TEMPLATES if t != "role"] + [
    ("configmap", ("metadata", "labels", "a")), ("configmap", ("metadata", "annotations"))]
# (A Lease's holderIdentity has no length limit in kube either: only the stored object's size bounds it.)


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    doc = json.loads(json.dumps(doc))
    cur = doc
    for p in path[:-1]:
        cur = cur.setdefault(p, {}) if isinstance(cur, dict) else cur[p]
    cur[path[-1]] = value
    return doc


@st.composite
def wrong_typed(draw: st.DrawFn) -> tuple[str, bytes]:
    """(collection path, body) of an object with one schema position given a wrong type, or a
    huge string where the schema limits length (annotations: one value over 256 KiB)."""
    if draw(st.integers(0, 4)) == 0:
        t, path = draw(st.sampled_from(HUGE_POSITIONS))
        value: Any = draw(HUGE)
        if path[-1] == "annotations":
            value = {"a": "x" * (256 * 1024 + draw(st.integers(1, 1024)))}
    else:
        t, path, want = draw(st.sampled_from(POSITIONS))
        value = draw(WRONG[want])
    collection, doc = TEMPLATES[t]
    return collection, json.dumps(_set(doc, path, value)).encode()


TOKENS = st.one_of(
    ANY_TEXT, st.text(st.characters(min_codepoint=128, exclude_categories=("Cs", "Cc")), min_size=1, max_size=30),
    st.tuples(JSON_VALUES, JSON_VALUES, st.binary(max_size=40)).map(
        lambda t: ".".join(base64.urlsafe_b64encode(p if isinstance(p, bytes) else json.dumps(p).encode())
                           .decode().rstrip("=") for p in t)))
AUTH_HEADERS = st.one_of(st.none(), TOKENS.map(lambda t: ("Bearer " + t).strip().encode()),
                         st.sampled_from([b"Bearer", b"Bearer ", b"Basic YWRtaW46YWRtaW4=", b"bearer\xc3\xbc",
                                          b"Bearer \xff\xfe"]),
                         HEADER_VALUES)


# --- running properties against the live server ------------------------------------------------

class Live:
    """The server a property runs against, and one request sent from the hypothesis thread."""

    def __init__(self, running: Server, api: httpx.AsyncClient, anon: httpx.AsyncClient, log: Log) -> None:
        self.running, self.api, self.anon, self.log = running, api, anon, log
        self.head = 0
        # The last few requests and how long each took: a server still busy with an earlier one
        # shows up as the next one's timeout, so a failure names them all.
        self.history: collections.deque[str] = collections.deque(maxlen=4)

    async def send(self, method: str, path: str, *, query: list[tuple[str, str]] | None = None,
                   headers: dict[str, bytes] | None = None, body: bytes | None = None,
                   token: bool = True) -> tuple[int, bytes]:
        """Status and the first 64 KiB of the body, bounded; then the log head must not have moved."""
        client = self.api if token else self.anon
        url = httpx.URL(path, params=query or [])
        shown = f"{method} {str(url)[:200]} body={(body or b'')[:80]!r}({len(body or b'')} bytes) token={token}"
        started = trio.current_time()
        try:
            with trio.fail_after(REQUEST_BOUND_S):
                async with client.stream(method, url, headers=headers or {}, content=body) as r:
                    head = b""
                    if r.status_code != 200 or "watch" not in str(url):  # a live watch never ends: status only
                        async for chunk in r.aiter_raw():
                            head += chunk
                            if len(head) >= 65536:
                                break
                now = await self.log.head()
        except (trio.TooSlowError, httpx.TransportError) as e:
            raise AssertionError(f"{shown}: no complete answer within {REQUEST_BOUND_S} s ({e!r}); "
                                 f"the requests before it: {list(self.history)}") from None
        finally:
            self.history.append(f"{shown} took {trio.current_time() - started:.2f}s")
        assert now == self.head, f"{method} {url}: the log grew from {self.head} to {now}"
        return r.status_code, head

    def run(self, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        trio.from_thread.run(fn, *args)


async def run_property(server: Server, prop: Callable[[Live], Callable[[], None]]) -> None:
    """Seed, snapshot, run the property's examples from a worker thread, compare the store."""
    async with open_server_log(server.nats_url) as log, server.client() as api, server.client(token=False) as anon:
        with trio.fail_after(30):
            assert (await api.post(CM, json={"metadata": {"name": "target"}, "data": {"a": "x"}})).status_code == 201
            assert (await api.post(CM, json={"metadata": {"name": "other"}})).status_code == 201
            paths = await listable_paths(api)
            before = await store_state(api, log, paths)
        live = Live(server, api, anon, log)
        live.head = before.head
        with trio.fail_after(PROPERTY_BOUND_S):
            await trio.to_thread.run_sync(prop(live), abandon_on_cancel=True)
        with trio.fail_after(30):
            assert_unchanged(before, await store_state(api, log, paths), prop.__name__)
            await assert_serving(api, prop.__name__, server)


def _no_5xx(method: str, path: str, code: int, body: bytes) -> None:
    assert code < 500, f"{method} {path} -> {code}: {body[:500]!r}"


# --- the properties --------------------------------------------------------------------------

def without_a_token_everything_is_401(live: Live) -> Callable[[], None]:
    @PROPERTY
    @given(method=METHODS, path=PATHS, query=QUERIES, headers=HEADERS, auth=AUTH_HEADERS,
           body=st.one_of(st.none(), RANDOM_BODIES), signed_claims=st.one_of(st.none(), JSON_VALUES))
    def prop(method: str, path: str, query: list[tuple[str, str]], headers: dict[str, bytes], auth: bytes | None,
             body: bytes | None, signed_claims: Any) -> None:
        async def one() -> None:
            h = dict(headers)
            if signed_claims is not None:  # a token signed with the fleet's own key, claims of any shape
                claims = signed_claims if isinstance(signed_claims, dict) else {"exp": signed_claims}
                h["Authorization"] = b"Bearer " + live.running.signing_key.sign(claims).encode()
            elif auth is not None:
                h["Authorization"] = auth
            code, got = await live.send(method, path, query=query, headers=h, body=body, token=False)
            assert code == 401, f"{method} {path} {query} {h}: {code} {got[:300]!r}"
        live.run(one)
    return prop


def malformed_bodies_are_refused(live: Live) -> Callable[[], None]:
    @PROPERTY
    @given(target=st.one_of(wrong_typed(), st.tuples(st.sampled_from([CM, f"{CM}/target", "/api/v1/namespaces",
                                                                        ("/apis/authorization.k8s.io/v1/"
                                                                        "selfsubjectaccessreviews")]),
                                                       RANDOM_BODIES)),
           method=st.sampled_from(["POST", "PUT", "PATCH"]), ctype=CONTENT_TYPES, wrong_typed_body=st.booleans())
    def prop(target: tuple[str, bytes], method: str, ctype: str, wrong_typed_body: bool) -> None:
        path, body = target

        async def one() -> None:
            code, got = await live.send(method, path, headers={"Content-Type": ctype.encode()}, body=body)
            _no_5xx(method, path, code, got)
        live.run(one)
    return prop


def wrong_types_at_schema_positions_are_4xx(live: Live) -> Callable[[], None]:
    @PROPERTY
    @given(target=wrong_typed(), ctype=st.sampled_from(["application/json", "application/yaml"]))
    def prop(target: tuple[str, bytes], ctype: str) -> None:
        path, body = target

        async def one() -> None:
            code, got = await live.send("POST", path, headers={"Content-Type": ctype.encode()}, body=body)
            assert 400 <= code < 500, f"POST {path} {body[:300]!r} -> {code}: {got[:500]!r}"
            if len(got) < 65536:
                doc = json.loads(got)
                assert doc["kind"] == "Status" and doc["code"] == code, doc
            else:  # a Status that echoes a huge value (as kube's field errors do) is read in part
                assert got.startswith(b'{"kind":"Status"'), got[:300]
        live.run(one)
    return prop


def query_parameters_never_5xx(live: Live) -> Callable[[], None]:
    @PROPERTY
    @given(path=st.sampled_from([CM, f"{CM}/target", "/api/v1/configmaps", "/api/v1/namespaces",
                                 "/apis/rbac.authorization.k8s.io/v1/roles", "/api/v1/watch/configmaps"]),
           query=QUERIES.filter(lambda q: not any(
               k == "resourceVersion" and v.isascii() and v.isdigit() and int(v) > 0 for k, v in q)),
           watch=st.booleans())
    def prop(path: str, query: list[tuple[str, str]], watch: bool) -> None:
        # Positive ASCII resourceVersions are left out: one beyond the head is kube's 504 "Too
        # large resource version" after a wait, a defined answer, not bad input.
        q = query + ([("watch", "1")] if watch else [])

        async def one() -> None:
            code, got = await live.send("GET", path, query=q)
            _no_5xx("GET", f"{path}?{q}", code, got)
        live.run(one)
    return prop


def unicode_digits_are_not_numbers(live: Live) -> Callable[[], None]:
    @PROPERTY
    @given(path=st.sampled_from([CM, f"{CM}/target", "/api/v1/configmaps"]), key=st.sampled_from(NUMERIC_KEYS),
           value=st.one_of(NON_ASCII_DIGITS, MIXED_DIGITS), watch=st.booleans())
    def prop(path: str, key: str, value: str, watch: bool) -> None:
        # kube parses these with strconv (ASCII only): "١" is not 1, it is a 400.
        if key != "resourceVersion" and path.endswith("/target"):
            key = "resourceVersion"  # a GET of one object reads only resourceVersion
        q = [(key, value)] + ([("watch", "1")] if watch and not path.endswith("/target") else [])

        async def one() -> None:
            code, got = await live.send("GET", path, query=q)
            assert code == 400, f"GET {path}?{q} -> {code}: {got[:300]!r}"
        live.run(one)
    return prop


def random_requests_with_a_token_never_5xx(live: Live) -> Callable[[], None]:
    @PROPERTY
    @given(method=METHODS.filter(lambda m: m != "DELETE"), path=PATHS, query=QUERIES, headers=HEADERS,
           body=st.one_of(st.none(), st.binary(max_size=512), RANDOM_BODIES))
    def prop(method: str, path: str, query: list[tuple[str, str]], headers: dict[str, bytes],
             body: bytes | None) -> None:
        # DELETE is left out: on a collection with a valid selector it is a legitimate
        # deletecollection (the table suite covers bad selectors there).
        q = [(k, v) for k, v in query if not (k == "resourceVersion" and v.isascii() and v.isdigit() and int(v) > 0)]

        async def one() -> None:
            code, got = await live.send(method, path, query=q, headers=headers, body=body)
            _no_5xx(method, f"{path}?{q} {headers}", code, got)
        live.run(one)
    return prop


@pytest.mark.parametrize("prop", [without_a_token_everything_is_401, malformed_bodies_are_refused,
                                  wrong_types_at_schema_positions_are_4xx, query_parameters_never_5xx,
                                  unicode_digits_are_not_numbers, random_requests_with_a_token_never_5xx],
                         ids=lambda f: f.__name__)
async def test_property(prop: Callable[[Live], Callable[[], None]], server_process: Server) -> None:
    await run_property(server_process, prop)


__all__ = ["server_process"]  # the fixture, imported for pytest
