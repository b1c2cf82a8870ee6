"""The history API's YAML diff (gateway/_history.py ``yaml_diff``): what ``jetkube history --diff``
prints and the /ui/ timeline shows, from one function."""

from __future__ import annotations

import msgspec

from bus import Actor, Event
from gateway._history import revision_json, yaml_diff
from projections import Revision


def _rev(seq: int, obj: dict, previous: dict | None, *, delete: bool = False) -> Revision:
    ev = Event(type="delete" if delete else "put", object=msgspec.Raw(b"{}"), rv_at=0,
               verb="delete" if delete else "update", audit_id=f"a{seq}", time="2026-11-30T00:00:00Z",
               actor=Actor(user="u"))
    return Revision(seq, ev, "", obj, [], previous)


def cm(rv: int, **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "d", "resourceVersion": str(rv),
                         "managedFields": [{"manager": "m"}]}, "data": data}


def test_first_revision_change_and_deletion() -> None:
    first = yaml_diff(_rev(3, cm(3, k="v"), None)).splitlines()
    assert first[:2] == ["--- rv (none)", "+++ rv 3"]
    assert "+data:" in first and "+  k: v" in first and "+  name: a" in first
    change = yaml_diff(_rev(7, cm(7, k="w"), cm(3, k="v"))).splitlines()
    assert change[:2] == ["--- rv 3", "+++ rv 7"]
    assert [x for x in change if x[:1] in "+-" and x[:3] not in ("+++", "---")] == ["-  k: v", "+  k: w"]
    gone = yaml_diff(_rev(9, cm(9, k="w"), cm(7, k="w"), delete=True)).splitlines()
    assert gone[:2] == ["--- rv 7", "+++ rv 9"] and "-  k: w" in gone and not any(
        x.startswith("+") and not x.startswith("+++") for x in gone)
    # resourceVersion and managedFields change on every revision: never part of the diff.
    for d in (first, change, gone):
        assert not any("resourceVersion" in x or "managedFields" in x for x in d)


def test_only_when_asked() -> None:
    rev = _rev(7, cm(7, k="w"), cm(3, k="v"))
    assert "diff" not in revision_json(rev, include_object=False)
    assert revision_json(rev, include_object=False, diff=True)["diff"] == yaml_diff(rev)
