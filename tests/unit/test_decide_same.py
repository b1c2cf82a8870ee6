"""actors._decide.same (a no-op write): the member-by-member comparison answers as the comparison
of copies without resourceVersion it replaced."""

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from actors._decide import same

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(["", "a", "b"]))
_json = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3)), max_leaves=8)
_keys = st.sampled_from(["apiVersion", "kind", "data", "spec", "status"])
_meta_keys = st.sampled_from(["name", "labels", "uid", "resourceVersion", "managedFields", "generation"])


def _previous(old: dict[str, Any], new: dict[str, Any]) -> bool:
    def strip(o: dict[str, Any]) -> dict[str, Any]:
        m = {k: v for k, v in o["metadata"].items() if k != "resourceVersion"}
        return {**o, "metadata": m}

    return strip(old) == strip(new)


_objects = st.builds(lambda top, meta: {**top, "metadata": meta}, st.dictionaries(_keys, _json, max_size=4),
                     st.dictionaries(_meta_keys, _json, max_size=4))


@settings(max_examples=300)
@given(_objects, _objects, st.data())
def test_same_answers_as_the_comparison_of_stripped_copies(old: dict[str, Any], other: dict[str, Any],
                                                           data: st.DataObject) -> None:
    # Half the time a near copy of old (the common case: an update that changes little or nothing).
    if data.draw(st.booleans()):
        new = {**old, "metadata": dict(old["metadata"])}
        for k, v in other.items():
            if k != "metadata" and data.draw(st.booleans()):
                new[k] = v
        for k, v in other["metadata"].items():
            if data.draw(st.booleans()):
                new["metadata"][k] = v
        if data.draw(st.booleans()):
            new["metadata"].pop(data.draw(_meta_keys), None)
    else:
        new = other
    assert same(old, new) == _previous(old, new)
    assert same(new, old) == _previous(new, old)
    assert same(old, old)
