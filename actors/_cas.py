"""The append of a new object with compare-and-swap, shared by every writer that creates.

A create expects the subject's last sequence: 0 when it never held anything, or its tombstone's
(ARCHITECTURE.md, decision 4). When the log answers "wrong last sequence", the subject has
history: either a live object (the name is taken) or a tombstone to create over. The updates'
loop (decide against the current state, CAS, decide again on conflict) is
``ResourceCore.guaranteed_update``; this is its counterpart for what must not exist yet.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from bus import Key, WrongLastSequence
from projections import Projection

T = TypeVar("T")


async def append_new(projection: Projection, key: Key, append: Callable[[int, int], Awaitable[T]], *,
                     tries: int, taken: Callable[[], BaseException],
                     exhausted: Callable[[], BaseException] | None = None) -> T:
    """``append(expected_seq, attempt)`` until it sticks: first over nothing, then over the
    subject's tombstone. Raises ``taken()`` when the subject holds a live object (as the
    projection shows it once it has applied the sequence the log reported), ``exhausted()``
    (default: ``taken()``) when ``tries`` attempts all lost races. ``projection.wait_for``'s ``ResourceVersionTooLarge``
    (this replica is too far behind the log) propagates: the caller says what it means."""
    expected = 0
    for attempt in range(tries):
        try:
            return await append(expected, attempt)
        except WrongLastSequence as e:
            await projection.wait_for(e.current)
            if projection.get(key) is not None:
                raise taken() from None
            expected = e.current
    raise (exhausted or taken)()
