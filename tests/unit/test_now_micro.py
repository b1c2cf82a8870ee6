"""projections._audit.now_micro: the audit timestamp, formatted once a second, as datetime's."""

import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from projections._audit import micro_of_ns, now_micro

_2000, _2100 = 946_684_800 * 10**9, 4_102_444_800 * 10**9


def _previous(ns: int) -> str:  # datetime.now(UTC) of that instant (rounded down to the microsecond)
    t = datetime.datetime.fromtimestamp(ns // 10**9, datetime.UTC).replace(microsecond=ns % 10**9 // 1000)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@settings(max_examples=400)
@given(st.integers(_2000, _2100), st.lists(st.integers(0, 3 * 10**9), max_size=4))
def test_micro_of_ns_is_datetimes_format(ns: int, steps: list[int]) -> None:
    for step in [0, *steps]:  # the same second again, and the next ones (the cache)
        ns += step
        assert micro_of_ns(ns) == _previous(ns)


def test_now_micro_is_now() -> None:
    before = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    now = now_micro()
    after = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert before <= now <= after and len(now) == len(before)
