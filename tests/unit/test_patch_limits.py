"""JSON patch bounds as kube-apiserver's (issue 7, items 9 and 11): operations, copied bytes, depth."""

from __future__ import annotations

import time

import pytest

from actors import MAX_COPY_BYTES, MAX_DEPTH, MAX_JSON_PATCH_OPERATIONS, RequestEntityTooLarge
from actors._patch import PatchError, apply_json_patch


def test_more_operations_than_kube_allows_is_413() -> None:
    doc = {"a": 1}
    ops = [{"op": "test", "path": "/a", "value": 1}] * (MAX_JSON_PATCH_OPERATIONS + 1)
    with pytest.raises(RequestEntityTooLarge) as e:
        apply_json_patch(doc, ops)
    assert e.value.message == "The allowed maximum operations in a JSON patch is 10000, got 10001"
    assert apply_json_patch(doc, ops[:-1]) == doc


def test_copy_into_itself_is_bounded_by_the_accumulated_copy_size() -> None:
    doc = {"metadata": {"name": "x"}, "data": {"k": "v" * 1000}}
    ops = [{"op": "copy", "from": "/data", "path": f"/data/c{i}"} for i in range(21)]
    t0 = time.perf_counter()
    with pytest.raises(PatchError, match="accumulated size increase of copy is .* exceeding the limit 3145728"):
        apply_json_patch(doc, ops)
    assert time.perf_counter() - t0 < 1.0
    assert MAX_COPY_BYTES == 3 * 1024 * 1024
    # A few copies are fine.
    assert apply_json_patch(doc, ops[:3])["data"]["c2"]["c1"]["c0"]["k"] == "v" * 1000


def test_operations_cannot_nest_deeper_than_the_limit() -> None:
    deep: dict = {}
    node = deep
    for _ in range(MAX_DEPTH - 2):
        node["a"] = {}
        node = node["a"]
    doc = {"x": deep}  # MAX_DEPTH - 1 levels of objects
    with pytest.raises(PatchError, match="deeper than"):
        apply_json_patch(doc, [{"op": "add", "path": "/y", "value": {"z": doc}}])
    with pytest.raises(PatchError, match="deeper than"):
        apply_json_patch(doc, [{"op": "copy", "from": "/x", "path": "/x/b"}])
    # Repeated copies of a subtree into itself grow it one level each: refused at the limit.
    small = {"a": {"b": 1}}
    ops = [{"op": "copy", "from": "/a", "path": "/a/c"}] * (MAX_DEPTH + 5)
    with pytest.raises(PatchError, match="deeper than"):
        apply_json_patch(small, ops)
    assert apply_json_patch(doc, [{"op": "add", "path": "/y", "value": {"z": 1}}])["y"] == {"z": 1}
