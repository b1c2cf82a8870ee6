"""kube's router (go-restful's ``Route.matchesAccept``, ``jsr311.go`` ``detectRoute``) choosing a route by the
Accept header before any handler negotiates, and its refusal as kube writes it (``server/handler.go``
``serviceErrorHandler``: ``NewGenericServerResponse``, so ``details: {}``)."""

from __future__ import annotations

import json

import pytest

from gateway._status import status_for
from gateway._table import (
    ROUTE_MEDIA_TYPES,
    ROUTE_STREAM_MEDIA_TYPES,
    VERSION_MEDIA_TYPES,
    check_route,
    route_accepts,
)
from kinds import NotAcceptable, UnsupportedMediaType

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
AVAILABLE = "application/json, application/yaml, application/vnd.kubernetes.protobuf"


@pytest.mark.parametrize(("accept", "ok"), [
    (None, True), ("", True), ("  ", True),  # absent or empty: */*
    ("application/json", True), ("application/json, */*", True),  # kubectl, client-go
    ("application/vnd.kubernetes.protobuf,application/json", True),
    (TABLE, True),  # parameters are cut off: a handler decides on them
    ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList", True),
    ("application/yaml", True), ("text/html, */*;q=0.1", True), ("*/*;q=0", True),  # (q is not looked at)
    ("application/json;stream=watch", True),
    ("application/*", False), ("*", False), ("text/html", False), ("text/*", False),
    ("Application/JSON", False), ("application/json ", True), (" application/json", True),
    ("application/cbor", False),
])
def test_route_accepts(accept: str | None, ok: bool) -> None:
    assert route_accepts(accept, ROUTE_MEDIA_TYPES) is ok


def test_version_produces_json_alone() -> None:
    assert route_accepts("application/json", VERSION_MEDIA_TYPES)
    assert route_accepts("application/yaml, */*", VERSION_MEDIA_TYPES)
    assert not route_accepts("application/yaml", VERSION_MEDIA_TYPES)
    assert not route_accepts("application/vnd.kubernetes.protobuf", VERSION_MEDIA_TYPES)


def test_a_refusal_is_kubes_generic_status() -> None:
    with pytest.raises(NotAcceptable) as e:
        check_route("application/yaml", VERSION_MEDIA_TYPES)
    code, body, headers = status_for(e.value)
    assert code == 406 and headers == {}
    assert json.loads(body) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "406: Not Acceptable\n\nAvailable representations: application/json",
        "reason": "NotAcceptable", "details": {}, "code": 406}
    with pytest.raises(NotAcceptable) as e:
        check_route("application/*", ROUTE_STREAM_MEDIA_TYPES)
    assert e.value.message == ("406: Not Acceptable\n\nAvailable representations: " + AVAILABLE
                               + ", application/json;stream=watch, application/vnd.kubernetes.protobuf;stream=watch")


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_a_write_without_a_body_is_415(method: str) -> None:
    with pytest.raises(UnsupportedMediaType) as e:
        check_route("text/html", ROUTE_MEDIA_TYPES, method=method, bodiless=True)
    code, body, _ = status_for(e.value)
    assert code == 415 and json.loads(body)["reason"] == "UnsupportedMediaType" and json.loads(body)["details"] == {}
    assert e.value.message == f"415: Unsupported Media Type\n\nAvailable representations: {AVAILABLE}"
    with pytest.raises(NotAcceptable):  # with a body: 406
        check_route("text/html", ROUTE_MEDIA_TYPES, method=method, bodiless=False)
    with pytest.raises(NotAcceptable):
        check_route("text/html", ROUTE_MEDIA_TYPES, method="DELETE", bodiless=True)
