"""Server-side printing: Accept negotiation, columns, cells, Table documents (gateway._table)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway._table import (
    JSONPathError,
    View,
    acceptable,
    cells_for,
    check_acceptable,
    check_view,
    columns_for,
    columns_from_printer_columns,
    human_duration,
    jsonpath_find,
    list_in_view,
    metadata_api_version,
    metadata_for_list,
    metadata_for_object,
    metadata_watch_line,
    object_in_view,
    parse_accept,
    parse_include_object,
    table_content_type,
    table_for_list,
    table_for_object,
    table_watch_line,
    translate_timestamp_since,
    view_content_type,
    view_for,
    wants_metadata,
    wants_protobuf,
    wants_table,
)
from kinds import NotAcceptable, ResourceDef

NOW = datetime(2024, 1, 10, 12, 0, 0, tzinfo=UTC)
# Columns and cells depend only on (group, kind): the tests define their own kinds.
CM = ResourceDef("", "v1", "ConfigMap", "configmaps", "configmap", True, ("cm",))
SECRET = ResourceDef("", "v1", "Secret", "secrets", "secret", True)
NS = ResourceDef("", "v1", "Namespace", "namespaces", "namespace", False, ("ns",))
SA = ResourceDef("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", True, ("sa",))
EVENT = ResourceDef("", "v1", "Event", "events", "event", True, ("ev",))
LEASE = ResourceDef("coordination.k8s.io", "v1", "Lease", "leases", "lease", True)
RBAC = "rbac.authorization.k8s.io"
ROLE = ResourceDef(RBAC, "v1", "Role", "roles", "role", True)
CLUSTERROLE = ResourceDef(RBAC, "v1", "ClusterRole", "clusterroles", "clusterrole", False)
ROLEBINDING = ResourceDef(RBAC, "v1", "RoleBinding", "rolebindings", "rolebinding", True)
CLUSTERROLEBINDING = ResourceDef(RBAC, "v1", "ClusterRoleBinding", "clusterrolebindings",
                                 "clusterrolebinding", False)
CRD = ResourceDef("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions",
                  "customresourcedefinition", False)
WIDGET = ResourceDef("example.com", "v1", "Widget", "widgets", "widget", True)

KUBECTL_TABLE = ("application/json;as=Table;v=v1;g=meta.k8s.io,"
                 "application/json;as=Table;v=v1beta1;g=meta.k8s.io,"
                 "application/json")


def ago(**kw: float) -> str:
    return (NOW - timedelta(**kw)).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(name: str = "c1", **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": "demo", "uid": "u-1", "resourceVersion": "7",
            "creationTimestamp": ago(seconds=65), **extra}


def raw(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


# --- negotiation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (KUBECTL_TABLE, "meta.k8s.io/v1"),  # kubectl get (all versions 1.27-1.33)
        ("application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json", "meta.k8s.io/v1beta1"),
        ("application/json;as=Table;g=meta.k8s.io;v=v1", "meta.k8s.io/v1"),  # parameter order is free
        ("application/json", None),  # -o json/yaml/name, python client
        ("application/json, */*", None),
        ("application/vnd.kubernetes.protobuf,application/json", None),  # kubectl 1.32+ typed clients
        ("*/*", None),
        ("", None),
        (None, None),
        # protobuf Tables cannot be served (kube does not either): skipped in favour of the next clause
        (("application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,"
          "application/json;as=Table;v=v1beta1;g=meta.k8s.io"), "meta.k8s.io/v1beta1"),
        ("application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json", None),
        ("application/yaml;as=Table;v=v1;g=meta.k8s.io,application/json", "meta.k8s.io/v1"),  # a YAML Table
        ("application/yaml;as=Table;v=v1beta1;g=meta.k8s.io", "meta.k8s.io/v1beta1"),
        ("application/cbor,application/json;as=Table;v=v1;g=meta.k8s.io", "meta.k8s.io/v1"),  # CBOR: off in 1.33
        # not a Table we know: bad group, bad version, missing kind, PartialObjectMetadata
        ("application/json;as=Table;v=v1;g=k8s.io,application/json;as=Table;v=v1;g=meta.k8s.io",
         "meta.k8s.io/v1"),
        ("application/json;as=Table;v=v2;g=meta.k8s.io", None),
        ("application/json;g=meta.k8s.io;v=v1,application/json", None),
        ("application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json", None),
        # q-values beat the client's order; q=0 is "not acceptable"
        ("application/json;q=0.5,application/json;as=Table;v=v1;g=meta.k8s.io", "meta.k8s.io/v1"),
        ("application/json;as=Table;v=v1;g=meta.k8s.io;q=0.5,application/json", None),
        ("application/json;as=Table;v=v1;g=meta.k8s.io;q=0,application/json", None),
        # a concrete type before a wildcard of the same q
        ("*/*,application/json;as=Table;v=v1;g=meta.k8s.io", "meta.k8s.io/v1"),
        # unknown media types are skipped, not taken as "plain"
        ("text/html,application/json;as=Table;v=v1;g=meta.k8s.io", "meta.k8s.io/v1"),
        (" Application/JSON ; as=Table ; v=v1 ; g=meta.k8s.io ", "meta.k8s.io/v1"),
    ],
)
def test_wants_table(accept: str | None, expected: str | None) -> None:
    assert wants_table(accept) == expected


def test_parse_accept_orders_by_q_then_client_order() -> None:
    got = [(m.type, m.subtype, m.params.get("v"), m.q)
           for m in parse_accept("a/b;v=1;q=0.5, c/d;v=2, */*;q=1, e/f;q=0, g/h;v=3;q=0.5")]
    assert got == [("c", "d", "2", 1.0), ("*", "*", None, 1.0), ("a", "b", "1", 0.5), ("g", "h", "3", 0.5)]


@pytest.mark.parametrize(
    ("api_version", "content_type"),
    [
        ("meta.k8s.io/v1", "application/json;as=Table;v=v1;g=meta.k8s.io"),
        ("meta.k8s.io/v1beta1", "application/json;as=Table;v=v1beta1;g=meta.k8s.io"),
    ],
)
def test_table_content_type(api_version: str, content_type: str) -> None:
    assert table_content_type(api_version) == content_type
    assert wants_table(content_type) == api_version


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, "Metadata"), ("", "Metadata"), ("Metadata", "Metadata"), ("Object", "Object"), ("None", "None")],
)
def test_parse_include_object(value: str | None, expected: str) -> None:
    assert parse_include_object(value) == expected


def test_parse_include_object_rejects_unknown() -> None:
    with pytest.raises(ValueError, match=r"""includeObject: Invalid value: "object": must be 'Metadata', """
                                         r"""'Object', 'None', or empty"""):
        parse_include_object("object")


# --- ages ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (-3, "<invalid>"), (-2, "<invalid>"), (-1.5, "0s"), (-1, "0s"), (0, "0s"), (0.9, "0s"), (5, "5s"),
        (119, "119s"), (120, "2m"), (182, "3m2s"), (599, "9m59s"), (600, "10m"), (605, "10m"),
        (3 * 3600 - 1, "179m"), (3 * 3600, "3h"), (7 * 3600, "7h"), (7 * 3600 + 5 * 60 + 9, "7h5m"),
        (8 * 3600, "8h"), (47 * 3600 + 3599, "47h"), (48 * 3600, "2d"), ((3 * 24 + 4) * 3600, "3d4h"),
        (7 * 86400 + 23 * 3600, "7d23h"), (8 * 86400, "8d"), (729 * 86400, "729d"), (730 * 86400, "2y"),
        (731 * 86400, "2y1d"), (8 * 365 * 86400 - 1, "7y364d"), (8 * 365 * 86400, "8y"),
        (20 * 365 * 86400, "20y"),
    ],
)
def test_human_duration(seconds: float, expected: str) -> None:
    assert human_duration(timedelta(seconds=seconds)) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "<unknown>"), ("", "<unknown>"), ("garbage", "<unknown>"), (5, "<unknown>"),
        ("0001-01-01T00:00:00Z", "<unknown>"),
        ("2024-01-10T11:59:55Z", "5s"),
        ("2024-01-10T11:59:55.123456Z", "4s"),  # MicroTime
        ("2024-01-10T11:59:55.123456789Z", "4s"),  # more digits than Python parses
        ("2024-01-10T12:59:55+01:00", "5s"),
        ("2024-01-07T08:00:00Z", "3d4h"),
        ("2024-01-10T12:00:01Z", "0s"),  # clock skew
    ],
)
def test_translate_timestamp_since(value: Any, expected: str) -> None:
    assert translate_timestamp_since(value, NOW) == expected
    assert translate_timestamp_since(value, NOW.replace(tzinfo=None)) == expected  # naive now is UTC


# --- columns ------------------------------------------------------------------------------------


def _shape(cols: list[dict]) -> list[tuple[str, str, str, int]]:
    return [(c["name"], c["type"], c["format"], c["priority"]) for c in cols]


@pytest.mark.parametrize(
    ("rdef", "expected"),
    [
        (CM, [("Name", "string", "name", 0), ("Data", "string", "", 0), ("Age", "string", "", 0)]),
        (SECRET, [("Name", "string", "name", 0), ("Type", "string", "", 0), ("Data", "string", "", 0),
                  ("Age", "string", "", 0)]),
        (NS, [("Name", "string", "name", 0), ("Status", "string", "", 0), ("Age", "string", "", 0)]),
        (SA, [("Name", "string", "name", 0), ("Secrets", "string", "", 0), ("Age", "string", "", 0)]),
        (LEASE, [("Name", "string", "name", 0), ("Holder", "string", "", 0), ("Age", "string", "", 0)]),
        (EVENT, [("Last Seen", "string", "", 0), ("Type", "string", "", 0), ("Reason", "string", "", 0),
                 ("Object", "string", "", 0), ("Subobject", "string", "", 1), ("Source", "string", "", 1),
                 ("Message", "string", "", 0), ("First Seen", "string", "", 1), ("Count", "string", "", 1),
                 ("Name", "string", "name", 1)]),
        (ROLE, [("Name", "string", "name", 0), ("Created At", "date", "", 0)]),
        (CLUSTERROLE, [("Name", "string", "name", 0), ("Created At", "date", "", 0)]),
        (CRD, [("Name", "string", "name", 0), ("Created At", "date", "", 0)]),
        (ROLEBINDING, [("Name", "string", "name", 0), ("Role", "string", "", 0), ("Age", "string", "", 0),
                       ("Users", "string", "", 1), ("Groups", "string", "", 1),
                       ("ServiceAccounts", "string", "", 1)]),
        (CLUSTERROLEBINDING, [("Name", "string", "name", 0), ("Role", "string", "", 0),
                              ("Age", "string", "", 0), ("Users", "string", "", 1),
                              ("Groups", "string", "", 1),
                              ("ServiceAccounts", "string", "", 1)]),
        # no printer: the custom-resource default
        (WIDGET, [("Name", "string", "name", 0), ("Age", "date", "", 0)]),
    ],
)
def test_columns_for(rdef: ResourceDef, expected: list[tuple[str, str, str, int]]) -> None:
    cols = columns_for(rdef)
    assert _shape(cols) == expected
    assert all(list(c) == ["name", "type", "format", "description", "priority"] for c in cols)
    assert all(c["description"] for c in cols)


def test_columns_for_returns_copies() -> None:
    columns_for(CM)[0]["name"] = "changed"
    assert columns_for(CM)[0]["name"] == "Name"


PRINTER_COLUMNS = [
    {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
    {"name": "Size", "type": "integer", "jsonPath": ".spec.size", "description": "how big"},
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Ratio", "type": "number", "jsonPath": ".spec.ratio", "priority": 1},
    {"name": "On", "type": "boolean", "jsonPath": ".spec.on", "format": ""},
    {"name": "Seen", "type": "date", "jsonPath": ".status.seen"},
]


def test_columns_from_printer_columns() -> None:
    assert _shape(columns_from_printer_columns(PRINTER_COLUMNS)) == [
        ("Name", "string", "name", 0), ("Color", "string", "", 0), ("Size", "integer", "", 0),
        ("Ready", "string", "", 0), ("Ratio", "number", "", 1), ("On", "boolean", "", 0),
        ("Seen", "date", "", 0)]
    cols = columns_from_printer_columns(PRINTER_COLUMNS)
    assert cols[1]["description"] == "Custom resource definition column (in JSONPath format): .spec.color"
    assert cols[2]["description"] == "how big"
    assert _shape(columns_from_printer_columns([])) == [("Name", "string", "name", 0), ("Age", "date", "", 0)]


# --- cells --------------------------------------------------------------------------------------

EVENT_BASE = {"metadata": meta("web.17a"),
              "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.x"},
              "reason": "Pulled", "message": "  pulled image \n", "type": "Normal",
              "source": {"component": "kubelet", "host": "node-1"}, "count": 3,
              "firstTimestamp": ago(hours=5), "lastTimestamp": ago(seconds=30)}


@pytest.mark.parametrize(
    ("rdef", "obj", "expected"),
    [
        (CM, {"metadata": meta(), "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}},
         ["c1", 3, "65s"]),
        (CM, {"metadata": meta()}, ["c1", 0, "65s"]),
        (SECRET, {"metadata": meta("s1"), "type": "Opaque", "data": {"a": "MQ==", "b": "Mg=="}},
         ["s1", "Opaque", 2, "65s"]),
        (SECRET, {"metadata": meta("s2"), "type": "kubernetes.io/tls", "data": {"a": "MQ=="},
                  "stringData": {"a": "x", "b": "y"}}, ["s2", "kubernetes.io/tls", 2, "65s"]),
        (NS, {"metadata": meta("demo", creationTimestamp=ago(days=3, hours=4)),
              "status": {"phase": "Active"}},
         ["demo", "Active", "3d4h"]),
        (NS, {"metadata": meta("gone", creationTimestamp=None), "status": {"phase": "Terminating"}},
         ["gone", "Terminating", "<unknown>"]),
        (SA, {"metadata": meta("default"), "secrets": [{"name": "t"}]}, ["default", 1, "65s"]),
        (SA, {"metadata": meta("bare")}, ["bare", 0, "65s"]),
        (LEASE, {"metadata": meta("l1", creationTimestamp=ago(hours=7)), "spec": {"holderIdentity": "pod-a"}},
         ["l1", "pod-a", "7h"]),
        (LEASE, {"metadata": meta("l2"), "spec": {}}, ["l2", "", "65s"]),
        (EVENT, EVENT_BASE,
         ["30s", "Normal", "Pulled", "pod/web", "spec.x", "kubelet, node-1", "pulled image", "5h", 3,
          "web.17a"]),
        # no lastTimestamp: last = first; no firstTimestamp: eventTime; count 0 means 1
        (EVENT, {**EVENT_BASE, "lastTimestamp": None, "firstTimestamp": None, "count": 0,
                 "eventTime": "2024-01-10T11:58:58.000000Z"},
         ["62s", "Normal", "Pulled", "pod/web", "spec.x", "kubelet, node-1", "pulled image", "62s", 1,
          "web.17a"]),
        # series wins for last seen and count; reportingComponent/Instance fill an empty source
        (EVENT, {**EVENT_BASE, "source": {}, "reportingComponent": "ctrl", "reportingInstance": "ctrl-0",
                 "series": {"count": 9, "lastObservedTime": "2024-01-10T11:59:50.000000Z"}},
         ["10s", "Normal", "Pulled", "pod/web", "spec.x", "ctrl, ctrl-0", "pulled image", "5h", 9,
          "web.17a"]),
        # involved object without a name: just the kind; no host: just the component
        (EVENT, {**EVENT_BASE, "involvedObject": {"kind": "Node"}, "source": {"component": "kubelet"}},
         ["30s", "Normal", "Pulled", "node", "", "kubelet", "pulled image", "5h", 3, "web.17a"]),
        (EVENT, {"metadata": {"name": "e"}}, ["<unknown>", "", "", "", "", "", "", "<unknown>", 1, "e"]),
        (ROLE, {"metadata": meta("r1", creationTimestamp="2024-01-01T02:03:04Z")},
         ["r1", "2024-01-01T02:03:04Z"]),
        (ROLE, {"metadata": meta("r2", creationTimestamp="2024-01-01T03:03:04.5+01:00")},
         ["r2", "2024-01-01T02:03:04Z"]),
        (CLUSTERROLE, {"metadata": {"name": "admin"}}, ["admin", "0001-01-01T00:00:00Z"]),
        (ROLEBINDING, {"metadata": meta("rb"), "roleRef": {"kind": "Role", "name": "r1", "apiGroup": RBAC},
                       "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"},
                                    {"kind": "ServiceAccount", "name": "sa", "namespace": "demo"},
                                    {"kind": "User", "name": "bob"}, {"kind": "Other", "name": "x"}]},
         ["rb", "Role/r1", "65s", "alice, bob", "devs", "demo/sa"]),
        (CLUSTERROLEBINDING, {"metadata": meta("crb"), "roleRef": {"kind": "ClusterRole", "name": "view"}},
         ["crb", "ClusterRole/view", "65s", "", "", ""]),
        (WIDGET, {"metadata": meta("w1", creationTimestamp=ago(minutes=3, seconds=2))}, ["w1", "3m2s"]),
    ],
)
def test_cells_for(rdef: ResourceDef, obj: dict[str, Any], expected: list[Any]) -> None:
    cells = cells_for(rdef, obj, now=NOW)
    assert cells == expected
    assert len(cells) == len(columns_for(rdef))


WIDGET_OBJ = {
    "metadata": meta("w1", labels={"b": "2", "a": "<1>"}),
    "spec": {"color": "blue", "size": 3, "ratio": 2, "on": True, "float": 1.5, "big": 1e6},
    "status": {"conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}],
               "seen": ago(hours=5)},
}


def test_cells_from_printer_columns() -> None:
    assert cells_for(WIDGET, WIDGET_OBJ, now=NOW, printer_columns=PRINTER_COLUMNS) == [
        "w1", "blue", 3, "True", 2.0, True, "5h"]
    # empty printer columns: Name + Age (a date cell rendered as an age)
    assert cells_for(WIDGET, WIDGET_OBJ, now=NOW, printer_columns=[]) == ["w1", "65s"]


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        ({"type": "string", "jsonPath": ".spec.missing"}, None),
        ({"type": "string", "jsonPath": ".spec.size"}, "3"),
        ({"type": "string", "jsonPath": ".spec.float"}, "1.5"),
        ({"type": "string", "jsonPath": ".spec.big"}, "1e+06"),  # Go fmt %v
        ({"type": "string", "jsonPath": ".spec.on"}, "true"),
        ({"type": "string", "jsonPath": ".metadata.labels"}, '{"a":"\\u003c1\\u003e","b":"2"}'),
        ({"type": "string", "jsonPath": ".status.conditions[*].type"}, "Synced"),  # first result only
        ({"type": "integer", "jsonPath": ".spec.float"}, 1),
        ({"type": "integer", "jsonPath": ".spec.color"}, None),
        ({"type": "integer", "jsonPath": ".spec.on"}, None),
        ({"type": "number", "jsonPath": ".spec.float"}, 1.5),
        ({"type": "boolean", "jsonPath": ".spec.size"}, None),
        ({"type": "date", "jsonPath": ".spec.color"}, "<invalid>"),
        ({"type": "date", "jsonPath": ".spec.size"}, None),
        ({"type": "date", "jsonPath": ".metadata.creationTimestamp"}, "65s"),
        ({"type": "string", "jsonPath": "..unsupported"}, None),
    ],
)
def test_printer_cell_types(column: dict[str, str], expected: Any) -> None:
    assert cells_for(WIDGET, WIDGET_OBJ, now=NOW, printer_columns=[{"name": "X", **column}])[1] == expected


# --- JSONPath-lite ------------------------------------------------------------------------------

DOC = {
    "metadata": {"name": "n", "labels": {"app.kubernetes.io/name": "web", "tier": "fe"}},
    "spec": {"replicas": 3, "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]},
    "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "False"}]},
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (".spec.replicas", [3]),
        ("{.spec.replicas}", [3]),
        ("$.spec.replicas", [3]),
        (".spec.missing", []),
        (".spec.replicas.deeper", []),
        (".spec.ports[0].port", [80]),
        (".spec.ports[-1].name", ["https"]),
        (".spec.ports[5].name", []),
        (".spec.ports[*].port", [80, 443]),
        (".spec.ports.*.name", ["http", "https"]),
        ('.status.conditions[?(@.type=="Ready")].status', ["True"]),
        (".status.conditions[?(@.type == 'Synced')].status", ["False"]),
        ('.status.conditions[?(@.type!="Ready")].type', ["Synced"]),
        (".spec.ports[?(@.port==443)].name", ["https"]),
        (".spec.ports[?(@.name)].port", [80, 443]),
        (".metadata.labels.app\\.kubernetes\\.io/name", ["web"]),
        (".metadata.labels['app.kubernetes.io/name']", ["web"]),
        ('.metadata["labels"].tier', ["fe"]),
    ],
)
def test_jsonpath_find(path: str, expected: list[Any]) -> None:
    assert jsonpath_find(DOC, path) == expected


@pytest.mark.parametrize("path", ["..name", ".spec.ports[1:2]", ".a[?(@.x > 1)]", ".spec[", "spec"])
def test_jsonpath_unsupported(path: str) -> None:
    with pytest.raises(JSONPathError):
        jsonpath_find(DOC, path)


# --- whole Tables -------------------------------------------------------------------------------

CM1 = {"kind": "ConfigMap", "apiVersion": "v1",
       "metadata": meta("c1", labels={"app": "web"},
                        managedFields=[{"manager": "kubectl", "operation": "Update"}]),
       "data": {"k": "v"}}
CM2 = {"kind": "ConfigMap", "apiVersion": "v1",
       "metadata": {"name": "c2", "namespace": "demo", "resourceVersion": "9",
                    "creationTimestamp": ago(hours=7, minutes=5)}}


def _partial(obj: dict[str, Any], api_version: str = "meta.k8s.io/v1") -> dict[str, Any]:
    m = {k: v for k, v in obj["metadata"].items() if k != "managedFields"}
    return {"kind": "PartialObjectMetadata", "apiVersion": api_version, "metadata": m}


def test_table_for_list_metadata_default() -> None:
    body = table_for_list(CM, [raw(CM1), raw(CM2)], api_version="meta.k8s.io/v1", include_object="Metadata",
                          resource_version="42", now=NOW)
    assert json.loads(body) == {
        "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": "42"},
        "columnDefinitions": columns_for(CM),
        "rows": [{"cells": ["c1", 1, "65s"], "object": _partial(CM1)},
                 {"cells": ["c2", 0, "7h5m"], "object": _partial(CM2)}],
    }
    assert body.startswith(b'{"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":')
    assert b"\n" not in body


def test_table_for_list_v1beta1_paging_and_full_objects() -> None:
    body = table_for_list(CM, [raw(CM1)], api_version="meta.k8s.io/v1beta1", include_object="Object",
                          resource_version="42", continue_token="eyJ2IjoxfQ==", remaining=5, now=NOW)
    doc = json.loads(body)
    assert doc["apiVersion"] == "meta.k8s.io/v1beta1"
    assert doc["metadata"] == {"resourceVersion": "42", "continue": "eyJ2IjoxfQ==", "remainingItemCount": 5}
    assert doc["rows"][0]["object"] == CM1  # the object as stored, managedFields included
    assert raw(CM1) in body  # embedded byte for byte


def test_table_for_list_partial_metadata_follows_table_version() -> None:
    body = table_for_list(CM, [raw(CM1)], api_version="meta.k8s.io/v1beta1", include_object="Metadata",
                          resource_version="1", now=NOW)
    assert json.loads(body)["rows"][0]["object"] == _partial(CM1, "meta.k8s.io/v1beta1")


def test_table_for_list_include_none_and_empty() -> None:
    body = table_for_list(CM, [raw(CM1)], api_version="meta.k8s.io/v1", include_object="None",
                          resource_version="3", now=NOW)
    assert json.loads(body)["rows"] == [{"cells": ["c1", 1, "65s"], "object": None}]
    empty = json.loads(table_for_list(NS, [], api_version="meta.k8s.io/v1", include_object="Metadata",
                                      resource_version="3", now=NOW))
    assert empty["rows"] == [] and empty["columnDefinitions"] == columns_for(NS)


def test_table_for_list_custom_resource_columns() -> None:
    w = {"kind": "Widget", "apiVersion": "example.com/v1", **WIDGET_OBJ}
    doc = json.loads(table_for_list(WIDGET, [raw(w)], api_version="meta.k8s.io/v1", include_object="Metadata",
                                    resource_version="8", now=NOW, printer_columns=PRINTER_COLUMNS))
    assert doc["columnDefinitions"] == columns_from_printer_columns(PRINTER_COLUMNS)
    assert doc["rows"][0]["cells"] == ["w1", "blue", 3, "True", 2.0, True, "5h"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"api_version": "meta.k8s.io/v2", "include_object": "Metadata"}, "no Table exists in group version"),
     ({"api_version": "meta.k8s.io/v1", "include_object": "Everything"}, "includeObject: Invalid value")],
)
def test_table_rejects_bad_options(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        table_for_list(CM, [], resource_version="1", now=NOW, **kwargs)


def test_table_for_object() -> None:
    secret = {"kind": "Secret", "apiVersion": "v1", "metadata": meta("s"), "type": "Opaque",
              "data": {"a": "MQ=="}}
    doc = json.loads(table_for_object(SECRET, raw(secret), api_version="meta.k8s.io/v1",
                                      include_object="Metadata", now=NOW))
    assert doc["metadata"] == {"resourceVersion": "7"}  # the object's resourceVersion
    assert doc["columnDefinitions"] == columns_for(SECRET)
    assert [r["cells"] for r in doc["rows"]] == [["s", "Opaque", 1, "65s"]]
    assert doc["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


@pytest.mark.parametrize(
    ("event_type", "headers", "expect_columns"),
    [("ADDED", True, True), ("MODIFIED", False, False), ("DELETED", False, False)],
)
def test_table_watch_line(event_type: str, headers: bool, expect_columns: bool) -> None:
    line = table_watch_line(CM, event_type, raw(CM1), api_version="meta.k8s.io/v1", include_object="Metadata",
                            now=NOW, headers=headers)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert line.startswith(b'{"type":"%s","object":{"kind":"Table"' % event_type.encode())
    event = json.loads(line)
    assert event["type"] == event_type
    table = event["object"]
    assert table["metadata"] == {"resourceVersion": "7"}
    # the apiserver sends column definitions on the first event only, then null
    assert table["columnDefinitions"] == (columns_for(CM) if expect_columns else None)
    assert table["rows"] == [{"cells": ["c1", 1, "65s"], "object": _partial(CM1)}]


def test_table_watch_line_defaults_to_headers() -> None:
    line = table_watch_line(EVENT, "ADDED", raw(EVENT_BASE), api_version="meta.k8s.io/v1beta1",
                            include_object="None", now=NOW)
    table = json.loads(line)["object"]
    assert table["apiVersion"] == "meta.k8s.io/v1beta1"
    assert len(table["columnDefinitions"]) == len(table["rows"][0]["cells"]) == 10
    assert table["rows"][0]["object"] is None


def test_a_new_kind_prints_with_its_definitions_printer() -> None:
    # The gateway asks the definition: a Deployment definition gets kube's deployment columns at once.
    deploy = ResourceDef("apps", "v1", "Deployment", "deployments", "deployment", True, ("deploy",))
    obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {
        "name": "web", "resourceVersion": "5", "creationTimestamp": "2024-01-10T11:00:00Z"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": {
            "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}}, "status": {"readyReplicas": 1}}
    doc = json.loads(table_for_object(deploy, json.dumps(obj).encode(), api_version="meta.k8s.io/v1",
                                      include_object="None", now=NOW))
    assert [c["name"] for c in doc["columnDefinitions"]] == [
        "Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images", "Selector"]
    assert doc["rows"][0]["cells"] == ["web", "1/2", 0, 0, "60m", "nginx", "nginx", "app=web"]


@pytest.mark.parametrize(("accept", "expected"), [
    ("application/vnd.kubernetes.protobuf, application/json", True),
    ("application/vnd.kubernetes.protobuf;stream=watch", True),
    ("application/json, application/vnd.kubernetes.protobuf", False),
    ("application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io, application/json", False),
    ("application/json;as=Table;v=v1;g=meta.k8s.io, application/vnd.kubernetes.protobuf", False),
    ("*/*", False),
    (None, False),
])
def test_wants_protobuf(accept: str | None, expected: bool) -> None:
    assert wants_protobuf(accept) is expected


# --- across tenants, PartialObjectMetadata ---------------------------------------------------------

CLIENT_GO_METADATA = ("application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,"
                      "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json")


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (CLIENT_GO_METADATA, ("PartialObjectMetadataList", "meta.k8s.io/v1")),  # client-go's metadata informers
        (CLIENT_GO_METADATA.replace("MetadataList", "Metadata"), ("PartialObjectMetadata", "meta.k8s.io/v1")),
        ("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1beta1", ("PartialObjectMetadata",
                                                                               "meta.k8s.io/v1beta1")),
        ("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v2,application/json", None),
        ("application/json;as=PartialObjectMetadata;g=example.com;v=v1", None),
        ("application/yaml;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json",
         ("PartialObjectMetadata", "meta.k8s.io/v1")),  # in YAML
        ("application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;g=meta.k8s.io;v=v1", None),  # kube's, not ours
        (KUBECTL_TABLE, None),
        ("application/json", None),
    ],
)
def test_wants_metadata(accept: str, expected: tuple[str, str] | None) -> None:
    assert wants_metadata(accept) == expected
    if expected is not None:
        assert wants_table(accept) is None and not wants_protobuf(accept)


def test_metadata_kind_must_fit_the_request() -> None:
    assert metadata_api_version(("PartialObjectMetadataList", "meta.k8s.io/v1"), is_list=True) == "meta.k8s.io/v1"
    assert metadata_api_version(("PartialObjectMetadata", "meta.k8s.io/v1beta1"), is_list=False) == "meta.k8s.io/v1beta1"
    with pytest.raises(NotAcceptable, match="you requested PartialObjectMetadata, but the requested object is a list"):
        metadata_api_version(("PartialObjectMetadata", "meta.k8s.io/v1"), is_list=True)
    with pytest.raises(NotAcceptable, match="PartialObjectMetadataList, but the requested object is not a list"):
        metadata_api_version(("PartialObjectMetadataList", "meta.k8s.io/v1"), is_list=False)


def test_partial_object_metadata_documents() -> None:
    objs = [{"apiVersion": "v1", "kind": "ConfigMap", "data": {"big": "x" * 100},
             "metadata": meta(f"c{i}", managedFields=[{"manager": "m"}])} for i in range(3)]
    one = json.loads(metadata_for_object(raw(objs[0]), api_version="meta.k8s.io/v1"))
    assert one == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": objs[0]["metadata"]}
    listed = json.loads(metadata_for_list([raw(o) for o in objs], api_version="meta.k8s.io/v1beta1",
                                          resource_version="9", continue_token="tok", remaining=4))
    assert listed["kind"] == "PartialObjectMetadataList" and listed["apiVersion"] == "meta.k8s.io/v1beta1"
    assert listed["metadata"] == {"resourceVersion": "9", "continue": "tok", "remainingItemCount": 4}
    assert [i["metadata"]["name"] for i in listed["items"]] == ["c0", "c1", "c2"]
    assert all(i["kind"] == "PartialObjectMetadata" and set(i) == {"kind", "apiVersion", "metadata"}
               for i in listed["items"])
    empty = json.loads(metadata_for_list([], api_version="meta.k8s.io/v1", resource_version="3"))
    assert empty["items"] == [] and empty["metadata"] == {"resourceVersion": "3"}
    line = metadata_watch_line("DELETED", raw(objs[1]), api_version="meta.k8s.io/v1")
    assert line.endswith(b"\n") and json.loads(line)["object"]["metadata"]["name"] == "c1"
    assert json.loads(line)["type"] == "DELETED"


def test_tables_across_tenants_have_a_cluster_column() -> None:
    objs = [{"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "1"},
             "metadata": meta(f"c{i}", annotations={"tenancy.jetkube.io/cluster": f"t{i}"})} for i in range(2)]
    doc = json.loads(table_for_list(CM, [raw(o) for o in objs], api_version="meta.k8s.io/v1",
                                    include_object="Metadata", resource_version="5", now=NOW, tenant_column=True))
    assert [c["name"] for c in doc["columnDefinitions"]] == ["Name", "Cluster", "Data", "Age"]
    assert [r["cells"][:3] for r in doc["rows"]] == [["c0", "t0", 1], ["c1", "t1", 1]]
    line = json.loads(table_watch_line(WIDGET, "ADDED", raw(objs[1]), api_version="meta.k8s.io/v1",
                                       include_object="None", now=NOW, tenant_column=True))
    assert [c["name"] for c in line["object"]["columnDefinitions"]][:2] == ["Name", "Cluster"]
    assert line["object"]["rows"][0]["cells"][:2] == ["c1", "t1"]
    plain = json.loads(table_for_list(CM, [raw(o) for o in objs], api_version="meta.k8s.io/v1",
                                      include_object="Metadata", resource_version="5", now=NOW))
    assert [c["name"] for c in plain["columnDefinitions"]] == ["Name", "Data", "Age"]


@pytest.mark.parametrize(("accept", "include", "expected"), [
    (None, None, None),
    ("application/json", "Object", None),
    ("application/vnd.kubernetes.protobuf,application/json", None, None),
    ("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1", "junk",
     View("PartialObjectMetadata", "meta.k8s.io/v1")),  # includeObject is a Table's only
    (("application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,"
      "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1beta1"), None,
     View("PartialObjectMetadata", "meta.k8s.io/v1beta1")),
    ("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1", None,
     View("PartialObjectMetadataList", "meta.k8s.io/v1")),
    ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json", None, View("Table", "meta.k8s.io/v1", "Metadata")),
    ("application/json;as=Table;v=v1beta1;g=meta.k8s.io", "None", View("Table", "meta.k8s.io/v1beta1", "None")),
    ("application/json;as=Table;v=v2;g=meta.k8s.io,application/json", None, None),  # skipped: not served
])
def test_view_for(accept: str | None, include: str | None, expected: View | None) -> None:
    assert view_for(accept, include) == expected


def test_view_for_rejects_a_tables_bad_include_object() -> None:
    with pytest.raises(ValueError, match="Unable to convert to Table as requested: includeObject"):
        view_for("application/json;as=Table;v=v1;g=meta.k8s.io", "Everything")


def test_objects_and_lists_in_views() -> None:
    objs = [{"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": {"password": "aHVudGVyMg=="},
             "metadata": meta(f"s{i}", managedFields=[{"manager": "m"}])} for i in range(3)]
    pom, poml = View("PartialObjectMetadata", "meta.k8s.io/v1"), View("PartialObjectMetadataList", "meta.k8s.io/v1")
    table = View("Table", "meta.k8s.io/v1beta1", "Metadata")
    one = json.loads(object_in_view(pom, SECRET, raw(objs[0]), now=NOW))
    assert one == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": objs[0]["metadata"]}
    row = json.loads(object_in_view(table, SECRET, raw(objs[1]), now=NOW))
    assert row["kind"] == "Table" and row["apiVersion"] == "meta.k8s.io/v1beta1"
    assert [r["cells"][:3] for r in row["rows"]] == [["s1", "Opaque", 1]]
    assert row["metadata"] == {"resourceVersion": objs[1]["metadata"]["resourceVersion"]}
    listed = json.loads(list_in_view(poml, SECRET, [raw(o) for o in objs], resource_version="77", now=NOW))
    assert listed["kind"] == "PartialObjectMetadataList" and listed["metadata"] == {"resourceVersion": "77"}
    assert [i["metadata"]["name"] for i in listed["items"]] == ["s0", "s1", "s2"]
    rows = json.loads(list_in_view(table, SECRET, [raw(o) for o in objs], resource_version="77", now=NOW))
    assert [r["cells"][0] for r in rows["rows"]] == ["s0", "s1", "s2"] and rows["metadata"]["resourceVersion"] == "77"
    for view, is_list in ((pom, True), (poml, False)):
        with pytest.raises(NotAcceptable):
            check_view(view, is_list=is_list)
    with pytest.raises(NotAcceptable, match="is not a list"):
        object_in_view(poml, SECRET, raw(objs[0]), now=NOW)
    with pytest.raises(NotAcceptable, match="is a list"):
        list_in_view(pom, SECRET, [], resource_version="1", now=NOW)
    check_view(table, is_list=True)
    check_view(table, is_list=False)
    assert view_content_type(pom) == "application/json"
    assert view_content_type(table) == "application/json;as=Table;v=v1beta1;g=meta.k8s.io"


@pytest.mark.parametrize(("accept", "ok"), [
    (None, True), ("", True), ("  ", True), ("*", True),
    ("application/json", True), ("*/*", True), ("application/*", True), ("application/yaml", True),
    ("application/json;foo=bar", True),  # unknown parameters are kube's "Unrecognized": still served
    ("application/json;stream=watch", True), ("application/json;sv=v1", True),
    ("application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;g=meta.k8s.io;v=v1", True),
    ("application/yaml;as=Table;g=meta.k8s.io;v=v1", True),
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", True),  # a browser's
    ("application/xml", False), ("text/html", False), ("text/*", False), ("foo", False),
    ("application/json;q=0", False), ("application/json;sv=v2", False), ("application/json;stream=sse", False),
    ("application/json;as=Table;g=meta.k8s.io;v=v2", False), ("application/json;as=Foo;g=meta.k8s.io;v=v1", False),
    ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList", False),
    ("application/json;g=meta.k8s.io;v=v1", False),  # a conversion to no kind
    ("application/vnd.kubernetes.protobuf;as=Table;g=meta.k8s.io;v=v1", False),  # Tables: JSON or YAML
    ("application/xml, application/json;as=Table;v=v1;g=meta.k8s.io", True),
])
def test_check_acceptable(accept: str | None, ok: bool) -> None:
    if ok:
        check_acceptable(accept)
    else:
        with pytest.raises(NotAcceptable, match="^only the following media types are accepted: application/json, "
                                                "application/yaml, application/vnd.kubernetes.protobuf$"):
            check_acceptable(accept)


@pytest.mark.parametrize(("accept", "expected"), [
    ("application/yaml", True),
    ("application/yaml;charset=utf-8", True),
    ("application/yaml, application/json", True),
    ("application/json, application/yaml", False),
    ("application/yaml;q=0.5, application/json", False),
    ("*/*", False),
    (None, False),
    ("", False),
    ("text/yaml", False),  # not one of kube's types
    ("application/yaml;stream=watch, application/json", False),
    ("application/yaml;foo=bar", True),  # an unknown parameter: kube's "Unrecognized", still served
    ("application/cbor, application/yaml", True),  # CBOR is off in 1.33: skipped
    # views in YAML: a Table, PartialObjectMetadata(List)
    ("application/yaml;as=Table;g=meta.k8s.io;v=v1, application/json", True),
    ("application/yaml;as=Table;g=meta.k8s.io;v=v1beta1", True),
    ("application/json;as=Table;g=meta.k8s.io;v=v1, application/yaml", False),
    ("application/yaml;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1", True),
    ("application/yaml;as=Table;g=meta.k8s.io;v=v2, application/json", False),  # no such Table: skipped
    ("application/yaml;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList, application/json", False),
])
def test_wants_yaml(accept: str | None, expected: bool) -> None:
    from gateway._table import wants_yaml

    assert wants_yaml(accept) is expected


@pytest.mark.parametrize(("accept", "expected"), [
    # kube's DefaultEndpointRestrictions (discovery documents, every error Status): no view is taken
    ("application/yaml", True),
    ("application/yaml, application/json", True),
    ("application/json, application/yaml", False),
    ("application/yaml;as=Table;g=meta.k8s.io;v=v1", False),
    ("application/yaml;as=Table;g=meta.k8s.io;v=v1, application/json", False),
    ("application/json;as=Table;g=meta.k8s.io;v=v1, application/yaml", True),
    ("application/yaml;as=PartialObjectMetadata;g=meta.k8s.io;v=v1, application/yaml", True),
    ("application/yaml;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList", False),
    ("application/yaml;sv=v1, application/json", False),  # no server version outside resources
    ("application/yaml;stream=watch", False),
    ("*/*", False), (None, False), ("", False),
])
def test_plain_yaml(accept: str | None, expected: bool) -> None:
    from gateway._table import plain_yaml

    assert plain_yaml(accept) is expected


@pytest.mark.parametrize(("accept", "ok"), [
    (None, True), ("", True), ("*/*", True), ("application/yaml", True), ("application/vnd.kubernetes.protobuf", True),
    ("application/json;foo=bar", True), ("application/json;stream=watch", True),
    ("text/html, application/yaml", True),
    ("text/html", False), ("application/yaml;stream=watch", False), ("application/json;sv=v1", False),
    ("application/json;as=Table;g=meta.k8s.io;v=v1", False),
    ("application/yaml;as=PartialObjectMetadata;g=meta.k8s.io;v=v1", False),
])
def test_acceptable_without_views(accept: str | None, ok: bool) -> None:
    """A discovery document's negotiation (kube's ``DefaultEndpointRestrictions``)."""
    assert acceptable(accept, views=False) is ok


def test_yaml_answers_are_kubes_yaml() -> None:
    """gateway._codec.encode_yaml: keys sorted, block style, sequences not indented under their key,
    a multi-line string as a literal block, a long line not folded; it reads back as the JSON."""
    import yaml

    from gateway._codec import encode_yaml

    obj = {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "a", "labels": {"n": "123"}},
           "data": {"f": "line one\nline two", "long": "x" * 300, "t": "true", "u": "\u00e9"},
           "list": [{"b": 1, "a": [1, 2]}], "empty": {}, "none": None}
    out = encode_yaml(json.dumps(obj).encode())
    assert yaml.safe_load(out) == obj
    text = out.decode()
    assert text.startswith("apiVersion: v1\ndata:\n  f: |-\n    line one\n    line two\n")
    assert "\nlist:\n- a:\n  - 1\n  - 2\n  b: 1\n" in text and "\nempty: {}\n" in text and "u: \u00e9" in text
    assert f"  long: {'x' * 300}\n" in text  # one line


@pytest.mark.parametrize(("accept", "expected"), [
    # kube-openapi (handler.go, handler3): JSON or its protobuf types, wildcards; parameters not looked at
    (None, "json"), ("", "json"), ("*/*", "json"), ("*", "json"), ("application/*", "json"),
    ("application/json", "json"), ("application/json;as=Table;g=meta.k8s.io;v=v1", "json"),
    ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf", "com.github.proto-openapi.spec.v2@v1.0+protobuf"),
    ("application/com.github.proto-openapi.spec.v2.v1.0+protobuf, application/json",
     "com.github.proto-openapi.spec.v2.v1.0+protobuf"),
    ("application/json, application/com.github.proto-openapi.spec.v2@v1.0+protobuf", "json"),
    ("application/yaml, application/json", "json"),
    ("text/html, */*;q=0.1", "json"),
    # nothing kube-openapi serves: 406 (YAML is never served)
    ("application/yaml", None), ("text/yaml", None), ("application/vnd.kubernetes.protobuf", None),
    ("text/html", None), ("application/com.github.proto-openapi.spec.v3.v1.0+protobuf", None),
])
def test_openapi_media_v2(accept: str | None, expected: str | None) -> None:
    from gateway._table import OPENAPI_V2_PROTOBUF, openapi_media

    assert openapi_media(accept, OPENAPI_V2_PROTOBUF) == expected


def test_openapi_media_v3() -> None:
    from gateway._table import OPENAPI_V3_PROTOBUF, openapi_media

    assert openapi_media("application/com.github.proto-openapi.spec.v3.v1.0+protobuf", OPENAPI_V3_PROTOBUF) == \
        "com.github.proto-openapi.spec.v3.v1.0+protobuf"
    assert openapi_media("application/yaml", OPENAPI_V3_PROTOBUF) is None
    assert openapi_media("application/yaml, application/json", OPENAPI_V3_PROTOBUF) == "json"
