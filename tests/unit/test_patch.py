"""JSON patch, JSON merge patch and strategic merge patch (actors._patch)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from actors._patch import (
    EMPTY_SCHEMA,
    DictPatchSchema,
    MalformedPatch,
    PatchError,
    PatchSchema,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
)

# --- RFC 6902 JSON patch -------------------------------------------------------------------

DOC: dict[str, Any] = {
    "metadata": {"name": "c1", "labels": {"app": "web"}, "annotations": {"a/b": "slash", "m~n": "tilde"}},
    "data": {"k": "v"},
    "list": [1, 2, 3],
}


@pytest.mark.parametrize(
    ("ops", "expected"),
    [
        ([], DOC),
        ([{"op": "add", "path": "/data/new", "value": "x"}], {**DOC, "data": {"k": "v", "new": "x"}}),
        ([{"op": "add", "path": "/data/k", "value": "over"}], {**DOC, "data": {"k": "over"}}),
        ([{"op": "add", "path": "/list/0", "value": 0}], {**DOC, "list": [0, 1, 2, 3]}),
        ([{"op": "add", "path": "/list/3", "value": 4}], {**DOC, "list": [1, 2, 3, 4]}),
        ([{"op": "add", "path": "/list/-", "value": 4}], {**DOC, "list": [1, 2, 3, 4]}),
        ([{"op": "add", "path": "", "value": {"x": 1}}], {"x": 1}),
        ([{"op": "add", "path": "/data", "value": None}], {**DOC, "data": None}),
        ([{"op": "add", "path": "/metadata/annotations/a~1b", "value": "s2"}],
         {**DOC, "metadata": {**DOC["metadata"], "annotations": {"a/b": "s2", "m~n": "tilde"}}}),
        ([{"op": "add", "path": "/metadata/annotations/m~0n", "value": "t2"}],
         {**DOC, "metadata": {**DOC["metadata"], "annotations": {"a/b": "slash", "m~n": "t2"}}}),
        ([{"op": "add", "path": "/", "value": "empty key"}], {**DOC, "": "empty key"}),
        ([{"op": "remove", "path": "/data/k"}], {**DOC, "data": {}}),
        ([{"op": "remove", "path": "/list/1"}], {**DOC, "list": [1, 3]}),
        ([{"op": "remove", "path": "/metadata/annotations/a~1b"}],
         {**DOC, "metadata": {**DOC["metadata"], "annotations": {"m~n": "tilde"}}}),
        ([{"op": "replace", "path": "/data/k", "value": "j"}], {**DOC, "data": {"k": "j"}}),
        ([{"op": "replace", "path": "/list/2", "value": 30}], {**DOC, "list": [1, 2, 30]}),
        ([{"op": "replace", "path": "", "value": [1]}], [1]),
        ([{"op": "move", "from": "/data/k", "path": "/data/k2"}], {**DOC, "data": {"k2": "v"}}),
        ([{"op": "move", "from": "/list/0", "path": "/list/-"}], {**DOC, "list": [2, 3, 1]}),
        ([{"op": "move", "from": "/data", "path": "/metadata/data"}],
         {"metadata": {**DOC["metadata"], "data": {"k": "v"}}, "list": [1, 2, 3]}),
        ([{"op": "move", "from": "/data", "path": "/data"}], DOC),
        ([{"op": "copy", "from": "/data", "path": "/data2"}], {**DOC, "data2": {"k": "v"}}),
        ([{"op": "copy", "from": "/list/0", "path": "/list/0"}], {**DOC, "list": [1, 1, 2, 3]}),
        ([{"op": "test", "path": "/data/k", "value": "v"}], DOC),
        ([{"op": "test", "path": "/list", "value": [1, 2, 3]}], DOC),
        ([{"op": "test", "path": "/list/0", "value": 1.0}], DOC),
        ([{"op": "test", "path": "", "value": DOC}], DOC),
        # ops run in order, each on the result of the one before
        ([{"op": "add", "path": "/data/a", "value": {}},
          {"op": "add", "path": "/data/a/b", "value": [1]},
          {"op": "add", "path": "/data/a/b/-", "value": 2},
          {"op": "test", "path": "/data/a/b/1", "value": 2},
          {"op": "remove", "path": "/data/k"}],
         {**DOC, "data": {"a": {"b": [1, 2]}}}),
        # extra members of an operation are ignored
        ([{"op": "replace", "path": "/data/k", "value": "j", "comment": "x"}], {**DOC, "data": {"k": "j"}}),
    ],
)
def test_json_patch(ops: list[dict[str, Any]], expected: Any) -> None:
    before = copy.deepcopy(DOC)
    assert apply_json_patch(DOC, ops) == expected
    assert before == DOC


@pytest.mark.parametrize(
    ("ops", "message"),
    [
        ([{"op": "test", "path": "/data/k", "value": "w"}], "testing value /data/k failed"),
        ([{"op": "test", "path": "/list/0", "value": True}], "testing value /list/0 failed"),
        ([{"op": "test", "path": "/data", "value": {"k": "v", "x": None}}], "testing value /data failed"),
        ([{"op": "test", "path": "/data/k", "value": None}], "testing value /data/k failed"),
        ([{"op": "test", "path": "/nope", "value": None}],
         "test operation does not apply: doc is missing path: /nope"),
        ([{"op": "add", "path": "/nope/x", "value": 1}],
         "add operation does not apply: doc is missing path: /nope/x"),
        ([{"op": "add", "path": "/data/k/x", "value": 1}], "doc is missing path: /data/k/x"),
        ([{"op": "add", "path": "/list/4", "value": 1}], "array index 4 out of bounds"),
        ([{"op": "add", "path": "/list/01", "value": 1}], "invalid array index '01'"),
        ([{"op": "add", "path": "/list/-1", "value": 1}], "invalid array index '-1'"),
        ([{"op": "add", "path": "/list/x", "value": 1}], "invalid array index 'x'"),
        ([{"op": "remove", "path": "/data/nope"}],
         "remove operation does not apply: doc is missing path: /data/nope"),
        ([{"op": "remove", "path": "/list/3"}], "array index 3 out of bounds"),
        ([{"op": "remove", "path": "/list/-"}], "invalid array index '-'"),
        ([{"op": "remove", "path": ""}], "cannot remove the whole document"),
        ([{"op": "replace", "path": "/data/nope", "value": 1}],
         "replace operation does not apply: doc is missing path"),
        ([{"op": "replace", "path": "/list/3", "value": 1}], "array index 3 out of bounds"),
        ([{"op": "move", "from": "/data/nope", "path": "/x"}],
         "move operation does not apply: doc is missing path: /data/nope"),
        ([{"op": "move", "from": "/data", "path": "/data/inner"}],
         "cannot move /data into its child /data/inner"),
        ([{"op": "copy", "from": "/nope", "path": "/x"}],
         "copy operation does not apply: doc is missing path: /nope"),
        # a later failure leaves nothing applied
        ([{"op": "add", "path": "/data/new", "value": 1}, {"op": "test", "path": "/data/k", "value": "x"}],
         "testing value /data/k failed"),
    ],
)
def test_json_patch_cannot_apply(ops: list[dict[str, Any]], message: str) -> None:
    before = copy.deepcopy(DOC)
    with pytest.raises(PatchError) as info:
        apply_json_patch(DOC, ops)
    assert message in str(info.value)
    assert before == DOC


@pytest.mark.parametrize(
    ("ops", "message"),
    [
        ({"op": "add", "path": "/a", "value": 1}, "json patch must be a list of operations"),
        ("[]", "json patch must be a list of operations"),
        (None, "json patch must be a list of operations"),
        (["add"], "json patch operation 0 must be an object"),
        ([{"op": "frobnicate", "path": "/a"}], "Unexpected kind: frobnicate"),
        ([{"path": "/a"}], 'json patch operation 0 has no valid "op"'),
        ([{"op": 1, "path": "/a"}], 'json patch operation 0 has no valid "op"'),
        ([{"op": "remove"}], 'remove operation 0 is missing "path"'),
        ([{"op": "add", "path": "/a"}], 'add operation 0 is missing "value"'),
        ([{"op": "replace", "path": "/a"}], 'replace operation 0 is missing "value"'),
        ([{"op": "test", "path": "/a"}], 'test operation 0 is missing "value"'),
        ([{"op": "move", "path": "/a"}], 'move operation 0 is missing "from"'),
        ([{"op": "copy", "path": "/a"}], 'copy operation 0 is missing "from"'),
        ([{"op": "remove", "path": "a"}], 'invalid JSON pointer "a"'),
        ([{"op": "remove", "path": 3}], "path must be a string"),
        ([{"op": "remove", "path": "/a~2"}], 'invalid JSON pointer "/a~2"'),
        ([{"op": "remove", "path": "/a~"}], 'invalid JSON pointer "/a~"'),
        ([{"op": "move", "path": "/a", "from": "b"}], 'invalid JSON pointer "b"'),
        # the shape of the whole patch is checked before anything runs
        ([{"op": "test", "path": "/nope", "value": 1}, {"op": "nope", "path": "/"}], "Unexpected kind: nope"),
    ],
)
def test_json_patch_malformed(ops: Any, message: str) -> None:
    with pytest.raises(MalformedPatch) as info:
        apply_json_patch(DOC, ops)
    assert message in str(info.value)


def test_json_patch_result_shares_nothing_with_inputs() -> None:
    value = {"deep": [1]}
    ops = [{"op": "add", "path": "/v", "value": value}, {"op": "copy", "from": "/v", "path": "/w"}]
    doc = {"keep": {"x": [1]}}
    result = apply_json_patch(doc, ops)
    result["v"]["deep"].append(2)
    result["keep"]["x"].append(2)
    assert value == {"deep": [1]}
    assert result["w"] == {"deep": [1]}
    assert doc == {"keep": {"x": [1]}}


def test_json_patch_errors_are_value_errors() -> None:
    assert issubclass(PatchError, ValueError) and issubclass(MalformedPatch, ValueError)
    assert not issubclass(PatchError, MalformedPatch) and not issubclass(MalformedPatch, PatchError)


# --- RFC 7386 merge patch -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "patch", "expected"),
    [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
        ({"a": {"x": 1}}, {"a": {}}, {"a": {"x": 1}}),
        ({"a": "b"}, {}, {"a": "b"}),
        ({"metadata": {"labels": {"app": "web"}}}, {"metadata": {"labels": {"tier": "fe"}}},
         {"metadata": {"labels": {"app": "web", "tier": "fe"}}}),
        ({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}},
         {"spec": {"containers": [{"name": "c", "x": None}]}},
         {"spec": {"containers": [{"name": "c", "x": None}]}}),  # lists replace, nulls inside lists stay
    ],
)
def test_merge_patch(doc: Any, patch: Any, expected: Any) -> None:
    doc_before, patch_before = copy.deepcopy(doc), copy.deepcopy(patch)
    assert apply_merge_patch(doc, patch) == expected
    assert doc == doc_before and patch == patch_before


def test_merge_patch_result_shares_nothing_with_inputs() -> None:
    doc = {"untouched": {"x": [1]}, "touched": {"y": {"z": 1}}}
    patch = {"touched": {"n": {"m": [1]}}}
    result = apply_merge_patch(doc, patch)
    result["untouched"]["x"].append(2)
    result["touched"]["y"]["z"] = 2
    result["touched"]["n"]["m"].append(2)
    assert doc == {"untouched": {"x": [1]}, "touched": {"y": {"z": 1}}}
    assert patch == {"touched": {"n": {"m": [1]}}}


# --- strategic merge patch ----------------------------------------------------------------

SCHEMA = DictPatchSchema({
    "metadata": {"finalizers": {"$strategy": "merge"},
     "ownerReferences": {"$strategy": "merge", "$key": "uid"}},
    "spec": {
        "containers": {"$strategy": "merge", "$key": "name", "$items": {
            "env": {"$strategy": "merge", "$key": "name"},
            "ports": {"$strategy": "merge", "$key": "containerPort"},
            "args": {},
        }},
        "strategy": {"$strategy": "retainKeys"},
        "volumes": {"$strategy": "merge,retainKeys", "$key": "name"},
        "replaced": {"$strategy": "replace"},
    },
    # generic fields in the shape of the apiserver's own SMP test types
    "mergingList": {"$strategy": "merge", "$key": "name", "$items": {
        "mergingList": {"$strategy": "merge", "$key": "name"},
        "mergingIntList": {"$strategy": "merge"},
    }},
    "mergingIntList": {"$strategy": "merge"},
    "nonMergingList": {},
    "nonMergingIntList": {},
})


def _ml(*names: Any, **extra: Any) -> list[dict[str, Any]]:
    return [{"name": n, **extra} for n in names]


@pytest.mark.parametrize(
    ("doc", "patch", "expected"),
    [
        # maps
        ({"name": 1}, {}, {"name": 1}),
        ({"name": 1}, {"value": 1}, {"name": 1, "value": 1}),
        ({"name": 1}, {"name": None, "value": 1}, {"value": 1}),
        ({"name": 1}, {"other": None}, {"name": 1}),  # null for a missing key is dropped
        ({"simpleMap": {"key1": 1, "key2": 1}}, {"simpleMap": {"key2": None}}, {"simpleMap": {"key1": 1}}),
        ({"a": 1}, {"a": {"b": 1, "c": None}}, {"a": {"b": 1}}),  # type change: the patch wins
        ({"a": {"b": 1}}, {"a": "x"}, {"a": "x"}),
        ({}, {"new": {"x": 1, "gone": None, "deeper": {"y": None}}}, {"new": {"x": 1, "deeper": {}}}),
        # lists without a strategy are replaced
        ({"nonMergingIntList": [1, 2]}, {"nonMergingIntList": [2, 3]}, {"nonMergingIntList": [2, 3]}),
        ({"nonMergingList": _ml(1, 2)}, {"nonMergingList": _ml(3)}, {"nonMergingList": _ml(3)}),
        ({"unknown": [1, 2]}, {"unknown": [3]}, {"unknown": [3]}),
        # primitive merge lists are sets; the patch's items lead unless the live order says otherwise
        ({"mergingIntList": [1, 2]}, {"mergingIntList": [2, 3]}, {"mergingIntList": [1, 2, 3]}),
        ({"mergingIntList": [1, 2, 3]}, {"mergingIntList": [3, 1, 2]}, {"mergingIntList": [3, 1, 2]}),
        ({"mergingIntList": [1, 2, 3]}, {"mergingIntList": [3, 1]}, {"mergingIntList": [2, 3, 1]}),
        ({"mergingIntList": [1, 2]}, {"mergingIntList": [3]}, {"mergingIntList": [3, 1, 2]}),
        ({"mergingIntList": [1, 1, 2]}, {"mergingIntList": [2, 2]}, {"mergingIntList": [1, 2]}),
        ({"mergingIntList": []}, {"mergingIntList": []}, {"mergingIntList": []}),
        ({}, {"mergingIntList": [1, 1]}, {"mergingIntList": [1]}),
        ({"mergingIntList": ["a"]}, {"mergingIntList": None}, {}),
        # keyed lists merge by key
        ({"mergingList": _ml(1, 2)}, {"mergingList": [{"name": 2, "value": "b"}]},
         {"mergingList": [{"name": 1}, {"name": 2, "value": "b"}]}),
        ({"mergingList": [{"name": 1, "value": "a", "other": "x"}]},
         {"mergingList": [{"name": 1, "value": None}]},
         {"mergingList": [{"name": 1, "other": "x"}]}),
        ({"mergingList": [{"name": 1}, {"name": 2, "value": "b"}, {"name": 3}]},
         {"mergingList": [{"name": 3, "value": "c"}, {"name": 1, "value": "a"}, {"name": 2, "other": "x"}]},
         {"mergingList": [{"name": 3, "value": "c"}, {"name": 1, "value": "a"},
                          {"name": 2, "value": "b", "other": "x"}]}),
        ({"mergingList": [{"name": 1}, {"name": 2, "value": "b"}, {"name": 3}]},
         {"mergingList": [{"name": 3, "value": "c"}, {"name": 1, "value": "a"}]},
         {"mergingList": [{"name": 2, "value": "b"}, {"name": 3, "value": "c"}, {"name": 1, "value": "a"}]}),
        ({"mergingList": _ml(1, 2)}, {"mergingList": _ml(3)}, {"mergingList": _ml(3, 1, 2)}),
        ({"mergingList": []}, {"mergingList": []}, {"mergingList": []}),
        ({}, {"mergingList": [{"name": 1, "x": None}]}, {"mergingList": [{"name": 1}]}),
        # nested keyed lists
        ({"mergingList": [{"name": 1, "mergingList": [{"name": "a", "value": 1}, {"name": "b"}]}]},
         {"mergingList": [{"name": 1, "mergingList": [{"name": "a", "value": 2}]}]},
         {"mergingList": [{"name": 1, "mergingList": [{"name": "a", "value": 2}, {"name": "b"}]}]}),
        ({"mergingList": [{"name": 1, "mergingIntList": [1]}]},
         {"mergingList": [{"name": 1, "mergingIntList": [2]}]},
         {"mergingList": [{"name": 1, "mergingIntList": [2, 1]}]}),
        # the merge key may be a number
        ({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80, "name": "http"}]}]}},
         {"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}},
         {"spec": {"containers": [
             {"name": "a", "ports": [{"containerPort": 80, "name": "http", "protocol": "TCP"}]}]}}),
        # a list of an item schema without a strategy is replaced inside a merged item
        ({"spec": {"containers": [{"name": "a", "args": ["x", "y"]}]}},
         {"spec": {"containers": [{"name": "a", "args": ["z"]}]}},
         {"spec": {"containers": [{"name": "a", "args": ["z"]}]}}),
    ],
)
def test_strategic_merge(doc: dict[str, Any], patch: dict[str, Any], expected: dict[str, Any]) -> None:
    doc_before, patch_before = copy.deepcopy(doc), copy.deepcopy(patch)
    assert apply_strategic_merge_patch(doc, patch, SCHEMA) == expected
    assert doc == doc_before and patch == patch_before


@pytest.mark.parametrize(
    ("doc", "patch", "expected"),
    [
        # $patch in a map
        ({"name": 1, "value": 1}, {"$patch": "replace"}, {}),
        ({"name": 1, "value": 1}, {"other": "a", "$patch": "replace"}, {"other": "a"}),
        ({"name": 1, "value": 1}, {"$patch": "delete"}, {}),
        ({"simpleMap": {"key1": 1, "key2": 1}}, {"simpleMap": {"$patch": "delete"}}, {"simpleMap": {}}),
        ({"simpleMap": {"key1": 1}}, {"simpleMap": {"key2": 2, "$patch": "replace"}},
         {"simpleMap": {"key2": 2}}),
        ({"simpleMap": {"key1": 1}}, {"simpleMap": {"key2": 2, "$patch": "merge"}},
         {"simpleMap": {"key1": 1, "key2": 2}}),
        ({}, {"simpleMap": {"key2": 2, "gone": None, "$patch": "replace"}}, {"simpleMap": {"key2": 2}}),
        ({"x": 1}, {"simpleMap": {"$patch": "delete"}}, {"x": 1, "simpleMap": {}}),
        # $patch: delete items in keyed lists
        ({"mergingList": _ml(1, 2)},
         {"mergingList": [{"name": 1, "$patch": "delete"}, {"name": 2, "$patch": "delete"}]},
         {"mergingList": []}),
        ({"mergingList": [{"name": 1}, {"name": 1}, {"name": 2, "value": "a"}, {"name": 3}, {"name": 3}]},
         {"mergingList": [{"name": 1, "$patch": "delete"}, {"name": 3, "$patch": "delete"}]},
         {"mergingList": [{"name": 2, "value": "a"}]}),
        ({"mergingList": _ml(1)}, {"mergingList": [{"name": 9, "$patch": "delete"}]},
         {"mergingList": _ml(1)}),
        ({"name": "hi"}, {"mergingList": [{"name": "hello"}, {"$patch": "delete", "name": "doesntexist"}]},
         {"name": "hi", "mergingList": [{"name": "hello"}]}),
        ({"mergingList": _ml(1, 2)}, {"mergingList": [{"name": 1, "$patch": "delete"}, {"name": 3}]},
         {"mergingList": _ml(3, 2)}),
        # {"$patch": "replace"} as a list item replaces the whole list
        ({"mergingList": _ml(1, 2)}, {"mergingList": [{"$patch": "replace"}]}, {"mergingList": []}),
        ({"mergingList": _ml(1, 2)},
         {"mergingList": [{"name": 3, "x": None}, {"$patch": "replace"}, {"name": 4}]},
         {"mergingList": _ml(3, 4)}),
        ({"mergingList": _ml(1, 2)},
         {"mergingList": [{"$patch": "replace"}, {"name": 2, "$patch": "delete"}]},
         {"mergingList": []}),
        ({}, {"mergingList": [{"$patch": "replace"}, {"name": 1}]}, {"mergingList": _ml(1)}),
        # $deleteFromPrimitiveList
        ({"mergingIntList": [1, 2, 3]}, {"$deleteFromPrimitiveList/mergingIntList": [2]},
         {"mergingIntList": [1, 3]}),
        ({"mergingIntList": [1, 2, 3, 3]}, {"$deleteFromPrimitiveList/mergingIntList": [3]},
         {"mergingIntList": [1, 2]}),
        ({"mergingIntList": [1, 2]}, {"$deleteFromPrimitiveList/mergingIntList": [3]},
         {"mergingIntList": [1, 2]}),
        ({"mergingIntList": []}, {"$deleteFromPrimitiveList/mergingIntList": [3]}, {"mergingIntList": []}),
        ({"foo": ["bar"]}, {"$deleteFromPrimitiveList/mergingIntList": [3]}, {"foo": ["bar"]}),
        ({"nonMergingIntList": [1, 2, 3]}, {"$deleteFromPrimitiveList/nonMergingIntList": [2]},
         {"nonMergingIntList": [1, 3]}),
        ({"mergingIntList": [1, 2]}, {"$deleteFromPrimitiveList/mergingIntList": [1], "mergingIntList": [3]},
         {"mergingIntList": [3, 2]}),
        ({"metadata": {"finalizers": ["a", "b"]}},
         {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["c"]}},
         {"metadata": {"finalizers": ["c", "b"]}}),
        # $setElementOrder
        ({"mergingList": [{"name": 1}, {"name": 2, "value": 2}]},
         {"$setElementOrder/mergingList": _ml(4, 1, 2, 3),
          "mergingList": [{"name": 4, "value": 4}, {"name": 3, "value": 3}]},
         {"mergingList": [{"name": 4, "value": 4}, {"name": 1}, {"name": 2, "value": 2},
                          {"name": 3, "value": 3}]}),
        ({"mergingList": [{"name": 1, "other": "a"}, {"name": 2, "value": 3, "other": "b"}]},
         {"$setElementOrder/mergingList": _ml(1, 2, 3),
          "mergingList": [{"name": 2, "value": 2}, {"name": 3, "value": 3}]},
         {"mergingList": [{"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"},
                          {"name": 3, "value": 3}]}),
        ({"mergingList": _ml(1, 3)},
         {"$setElementOrder/mergingList": _ml(3, 2, 1),
          "mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}]},
         {"mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}]}),
        ({"mergingList": _ml(1, 2, 3)}, {"$setElementOrder/mergingList": _ml(3, 1)},
         {"mergingList": _ml(2, 3, 1)}),
        ({"mergingList": _ml(1, 2, 3)}, {"$setElementOrder/mergingList": _ml(3, 2, 1)},
         {"mergingList": _ml(3, 2, 1)}),
        ({"mergingList": _ml("hello2")},
         {"$setElementOrder/mergingList": _ml("hello", "doesntexist"),
          "mergingList": [{"name": "hello"}, {"$patch": "delete", "name": "doesntexist"}]},
         {"mergingList": _ml("hello", "hello2")}),
        ({}, {"$setElementOrder/mergingList": _ml(2, 1), "mergingList": _ml(2, 1)},
         {"mergingList": _ml(2, 1)}),
        ({"x": 1}, {"$setElementOrder/mergingList": _ml(1)}, {"x": 1}),
        ({"mergingList": _ml(1)}, {"$setElementOrder/mergingList": _ml(1), "mergingList": None}, {}),
        ({"mergingIntList": [1, 3]}, {"$setElementOrder/mergingIntList": [3, 2, 1]},
         {"mergingIntList": [3, 1]}),
        ({"mergingIntList": [1, 2, 3]},
         {"$setElementOrder/mergingIntList": [1, 2], "$deleteFromPrimitiveList/mergingIntList": [3]},
         {"mergingIntList": [1, 2]}),
        ({"mergingIntList": [1, 2, 3, 4]},
         {"$setElementOrder/mergingIntList": [1, 2, 4], "$deleteFromPrimitiveList/mergingIntList": [3],
          "mergingIntList": [4]},
         {"mergingIntList": [1, 2, 4]}),
        ({"mergingIntList": [1, 2, 3, 4]},
         {"$setElementOrder/mergingIntList": [1, 2, 5], "mergingIntList": [5]},
         {"mergingIntList": [1, 2, 5, 3, 4]}),
        ({"nonMergingIntList": [1, 2]},
         {"$setElementOrder/nonMergingIntList": [3, 4], "nonMergingIntList": [3, 4]},
         {"nonMergingIntList": [3, 4]}),
        # $retainKeys
        ({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}},
         {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
         {"spec": {"strategy": {"type": "Recreate"}}}),
        ({"spec": {"strategy": {"type": "A", "other": 1}}},
         {"spec": {"strategy": {"$retainKeys": ["type", "other"], "other": None}}},
         {"spec": {"strategy": {"type": "A"}}}),
        ({"spec": {"strategy": {"type": "A"}}}, {"spec": {"strategy": {"value": "b"}}},
         {"spec": {"strategy": {"type": "A", "value": "b"}}}),
        ({"spec": {"strategy": {"type": "A"}}}, {"spec": {"strategy": {}}},
         {"spec": {"strategy": {"type": "A"}}}),
        ({"spec": {"volumes": [{"name": "v", "emptyDir": {}, "extra": 1}]}},
         {"spec": {"volumes": [
             {"name": "v", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/x"}}]}},
         {"spec": {"volumes": [{"name": "v", "hostPath": {"path": "/x"}}]}}),
        ({"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}},
         {"spec": {"$setElementOrder/volumes": [{"name": "v"}],
                   "volumes": [{"name": "v", "$retainKeys": ["name", "emptyDir"],
                                "emptyDir": {"medium": "Memory"}}]}},
         {"spec": {"volumes": [{"name": "v", "emptyDir": {"medium": "Memory"}}]}}),
        # map field with strategy replace
        ({"spec": {"replaced": {"a": 1, "b": 2}}}, {"spec": {"replaced": {"c": 3}}},
         {"spec": {"replaced": {"c": 3}}}),
    ],
)
def test_strategic_merge_directives(
    doc: dict[str, Any], patch: dict[str, Any], expected: dict[str, Any]
) -> None:
    doc_before, patch_before = copy.deepcopy(doc), copy.deepcopy(patch)
    assert apply_strategic_merge_patch(doc, patch, SCHEMA) == expected
    assert doc == doc_before and patch == patch_before


def test_client_side_apply_example() -> None:
    live: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "labels": {"app": "x"}},
        "spec": {"containers": [
            {"name": "a", "image": "nginx:1", "env": [{"name": "E", "value": "1"}]},
            {"name": "b", "image": "busybox"},
        ]},
    }
    patch = {"spec": {
        "$setElementOrder/containers": [{"name": "a"}],
        "containers": [{"image": "nginx:2", "name": "a"}, {"$patch": "delete", "name": "b"}],
    }}
    result = apply_strategic_merge_patch(live, patch, SCHEMA)
    assert result["spec"]["containers"] == [
        {"name": "a", "image": "nginx:2", "env": [{"name": "E", "value": "1"}]}
    ]
    assert result["metadata"] == live["metadata"]
    assert [c["name"] for c in live["spec"]["containers"]] == ["a", "b"]  # input untouched


def test_client_side_apply_adds_container_in_declared_order() -> None:
    live = {"spec": {"containers": [{"name": "a", "image": "i"}, {"name": "sidecar", "image": "s"}]}}
    patch = {"spec": {
        "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
        "containers": [{"name": "b", "image": "j", "env": [{"name": "E", "value": "1"}]}],
    }}
    result = apply_strategic_merge_patch(live, patch, SCHEMA)
    assert [c["name"] for c in result["spec"]["containers"]] == ["a", "b", "sidecar"]


def test_env_merges_inside_container() -> None:
    live = {"spec": {"containers": [
        {"name": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}]}}
    patch = {"spec": {"containers": [
        {"name": "a", "env": [{"name": "Y", "value": "3"}, {"name": "X", "$patch": "delete"}]}]}}
    result = apply_strategic_merge_patch(live, patch, SCHEMA)
    assert result == {"spec": {"containers": [{"name": "a", "env": [{"name": "Y", "value": "3"}]}]}}


def test_owner_references_merge_by_uid() -> None:
    live = {"metadata": {"ownerReferences": [{"uid": "1", "name": "rs1"}, {"uid": "2", "name": "rs2"}]}}
    patch = {"metadata": {"ownerReferences": [{"uid": "2", "controller": True}]}}
    result = apply_strategic_merge_patch(live, patch, SCHEMA)
    assert result["metadata"]["ownerReferences"] == [
        {"uid": "1", "name": "rs1"}, {"uid": "2", "name": "rs2", "controller": True}]


def test_empty_schema_replaces_lists() -> None:
    live = {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}, "metadata": {"labels": {"a": "1"}}}
    patch = {"spec": {"containers": [{"name": "c"}]}, "metadata": {"labels": {"b": "2", "a": None}}}
    assert apply_strategic_merge_patch(live, patch, EMPTY_SCHEMA) == {
        "spec": {"containers": [{"name": "c"}]}, "metadata": {"labels": {"b": "2"}}}


def test_result_shares_nothing_with_inputs() -> None:
    live = {"keep": {"x": [1]}, "mergingList": [{"name": 1, "v": {"a": 1}}]}
    patch = {"added": {"y": [1]}, "mergingList": [{"name": 2, "w": [1]}]}
    result = apply_strategic_merge_patch(live, patch, SCHEMA)
    result["keep"]["x"].append(2)
    result["added"]["y"].append(2)
    for item in result["mergingList"]:
        item["mutated"] = True
    assert live == {"keep": {"x": [1]}, "mergingList": [{"name": 1, "v": {"a": 1}}]}
    assert patch == {"added": {"y": [1]}, "mergingList": [{"name": 2, "w": [1]}]}


@pytest.mark.parametrize(
    ("doc", "patch", "message"),
    [
        ({}, [], "strategic merge patch must be a JSON object"),
        ({}, {"$patch": "frob"}, "unknown patch type: frob in map"),
        ({"mergingList": _ml(1)}, {"mergingList": [{"name": 1, "$patch": "frob"}]},
         "unknown patch type: frob"),
        ({"mergingList": _ml(1)}, {"mergingList": [{"name": 1, "$patch": "merge"}]},
         "merging lists cannot yet be specified in the patch"),
        ({"mergingList": [{"name": 1, "value": "a"}]}, {"mergingList": [{"value": "b"}]},
         'map: {"value":"b"} does not contain declared merge key: name'),
        ({"mergingList": _ml(1)}, {"mergingList": [{"$patch": "delete"}]},
         "does not contain declared merge key: name"),
        ({"mergingList": _ml(1)}, {"mergingList": [{"$patch": "replace"}, {"value": 1}]},
         "does not contain declared merge key: name"),
        ({}, {"$retainKeys": "name"}, "invalid patch format of retainKeys"),
        ({}, {"$setElementOrder/mergingList": {"name": 1}}, "invalid patch format of setElementOrder list"),
        ({}, {"$setElementOrderX": [1]}, "invalid patch format of setElementOrder list"),
        ({"mergingList": _ml(1)}, {"$setElementOrder/mergingList": [{"value": 1}]},
         "does not contain declared merge key: name"),
        ({"mergingList": _ml(1)}, {"$setElementOrder/mergingList": _ml(1), "mergingList": {"name": 1}},
         "invalid patch format of setElementOrder list"),
        ({"mergingList": _ml(1, 3, 2)},
         {"$setElementOrder/mergingList": _ml(1, 2, 3),
          "mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}]},
         "doesn't match $setElementOrder list"),
        ({"mergingIntList": [1, 3, 2]},
         {"$setElementOrder/mergingIntList": [1, 2, 3], "mergingIntList": [3, 1]},
         "doesn't match $setElementOrder list"),
        ({"mergingList": _ml(1)}, {"$setElementOrder/mergingList": _ml(1), "mergingList": _ml(2)},
         "doesn't match $setElementOrder list"),
        ({}, {"$deleteFromPrimitiveList": [1]}, "invalid patch format of primitive list"),
        ({"mergingIntList": [1]}, {"$deleteFromPrimitiveList/mergingIntList": 1},
         "invalid patch format of primitive list"),
    ],
)
def test_strategic_merge_malformed(doc: dict[str, Any], patch: Any, message: str) -> None:
    with pytest.raises(MalformedPatch) as info:
        apply_strategic_merge_patch(doc, patch, SCHEMA)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("doc", "patch", "message"),
    [
        ({"spec": {"strategy": {"type": "A"}}}, {"spec": {"strategy": {"$retainKeys": ["type"], "other": 1}}},
         "patch content doesn't match retainKeys list"),
        ({"mergingIntList": [[1]]}, {"mergingIntList": [[2]]}, "lists of lists are not supported"),
        ({"mergingIntList": [1]}, {"mergingIntList": ["a"]}, "list element types are not identical"),
        ({"mergingIntList": [1]}, {"mergingIntList": [{"name": 1}]}, "list element types are not identical"),
        ({"mergingIntList": [{"name": 1}]}, {"mergingIntList": [{"name": 2}]},
         "cannot merge lists without merge key for type map"),
        ({"mergingList": [{"value": 1}]}, {"mergingList": [{"name": 2}]},
         "does not contain declared merge key: name"),
        ({"mergingIntList": 1}, {"$deleteFromPrimitiveList/mergingIntList": [1]}, "is not a list"),
        ({"mergingList": {"name": 1}}, {"$setElementOrder/mergingList": _ml(1)}, "is not a list"),
    ],
)
def test_strategic_merge_cannot_apply(doc: dict[str, Any], patch: dict[str, Any], message: str) -> None:
    with pytest.raises(PatchError) as info:
        apply_strategic_merge_patch(doc, patch, SCHEMA)
    assert message in str(info.value)


def test_strategic_merge_needs_an_object() -> None:
    with pytest.raises(PatchError):
        apply_strategic_merge_patch([], {}, SCHEMA)  # type: ignore[arg-type]


# --- schemas ------------------------------------------------------------------------------


def test_dict_patch_schema_lookup() -> None:
    containers = SCHEMA.child("spec").child("containers")
    assert containers.list_strategy() == ("merge", "name")
    assert containers.child("env").list_strategy() == ("merge", "name")
    assert containers.child("image").list_strategy() == (None, None)
    assert SCHEMA.child("metadata").child("finalizers").list_strategy() == ("merge", None)
    assert SCHEMA.child("nope").child("deeper").list_strategy() == (None, None)
    assert SCHEMA.child("nope") is EMPTY_SCHEMA
    assert EMPTY_SCHEMA.child("x") is EMPTY_SCHEMA and EMPTY_SCHEMA.list_strategy() == (None, None)
    assert DictPatchSchema().child("x").list_strategy() == (None, None)


def test_any_object_with_the_two_methods_is_a_schema() -> None:
    class Everything:
        """Every field is a list merged by "id"."""

        def child(self, field: str) -> PatchSchema:
            return self

        def list_strategy(self) -> tuple[str | None, str | None]:
            return "merge", "id"

    doc = {"items": [{"id": 1, "tags": [{"id": "x"}]}]}
    patch = {"items": [{"id": 1, "tags": [{"id": "y"}]}, {"id": 2}]}
    assert apply_strategic_merge_patch(doc, patch, Everything()) == {
        "items": [{"id": 1, "tags": [{"id": "y"}, {"id": "x"}]}, {"id": 2}]
    }
