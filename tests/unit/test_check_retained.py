"""projections/_history.py's concurrent reads (``check_retained``: the stream state and the compaction
point at once; an Exact read's direct gets and walks back): a bus error in any of them is still the
client's 503/504 with Retry-After (raised as itself, not wrapped in the nursery's exception group,
which would be a 500)."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from bus import BusError, BusTimeout, NoResponders
from gateway._status import status_for
from projections import ResourceVersionTooLarge, TooOldResourceVersion
from projections._history import _read_seqs, _walk_back, check_retained


class _Log:
    """The two reads ``check_retained`` makes: each answers, or raises its scripted error (after a
    checkpoint, so the other read is in flight meanwhile)."""

    def __init__(self, *, state_error: Exception | None = None, point_error: Exception | None = None,
                 first: int = 1, last: int = 100, point: int = 0) -> None:
        self.state_error, self.point_error = state_error, point_error
        self.first, self.last, self.point = first, last, point

    async def stream_state(self) -> dict[str, Any]:
        await trio.lowlevel.checkpoint()
        if self.state_error is not None:
            raise self.state_error
        return {"first_seq": self.first, "last_seq": self.last}

    async def compaction_point(self) -> tuple[int, int]:
        await trio.lowlevel.checkpoint()
        if self.point_error is not None:
            raise self.point_error
        return self.point, 0


@pytest.mark.parametrize(("error", "code", "reason"), [
    (NoResponders("no responders"), 503, "ServiceUnavailable"),
    (BusError("stream info failed"), 503, "ServiceUnavailable"),
    (BusTimeout("no answer"), 504, "Timeout"),
])
@pytest.mark.parametrize("where", ["state", "point", "both"])
async def test_a_bus_error_is_raised_as_itself(error: Exception, code: int, reason: str, where: str) -> None:
    log = _Log(state_error=error if where in ("state", "both") else None,
               point_error=error if where in ("point", "both") else None)
    with pytest.raises(type(error)) as e:
        await check_retained(log, 50)  # type: ignore[arg-type]
    assert e.value is error
    http, body, headers = status_for(e.value)
    assert http == code and f'"reason":"{reason}"'.encode() in body and headers.get("Retry-After") == "1"


async def test_the_answers() -> None:
    assert await check_retained(_Log(), 50) == 100  # type: ignore[arg-type]
    with pytest.raises(ResourceVersionTooLarge):
        await check_retained(_Log(), 101)  # type: ignore[arg-type]
    with pytest.raises(TooOldResourceVersion):
        await check_retained(_Log(point=60), 50)  # type: ignore[arg-type]
    with pytest.raises(TooOldResourceVersion):
        await check_retained(_Log(first=2), 50)  # type: ignore[arg-type]
    assert await check_retained(_Log(first=40, point=40), 50) == 100  # type: ignore[arg-type]


class _FailingGets:
    """A log whose range read answers and whose direct gets fail (some after others answered)."""

    def __init__(self, error: Exception) -> None:
        self.error, self.calls = error, 0

    async def messages_by_seq(self, _subject: str, seqs: set[int]) -> dict[int, bytes]:
        return dict.fromkeys(seqs, b"x")

    async def message_and_previous(self, seq: int) -> Any:
        self.calls += 1
        n = self.calls
        await trio.lowlevel.checkpoint()
        if n % 3 == 0:
            raise self.error
        return None


@pytest.mark.parametrize("error", [NoResponders("no responders"), BusTimeout("no answer")])
async def test_direct_gets_and_walks_back_raise_a_bus_error_as_itself(error: Exception) -> None:
    log = _FailingGets(error)
    # the lowest of these cost less by direct gets than by widening the range down to them
    with pytest.raises(type(error)) as e:
        await _read_seqs(log, "s.>", [1, 2, 3, 4, 5, 100_000], 1.0)  # type: ignore[arg-type]
    assert e.value is error
    with pytest.raises(type(error)) as e:
        await _walk_back(log, {f"s.{i}": 100 + i for i in range(10)}, 50)  # type: ignore[arg-type]
    assert e.value is error
    assert status_for(e.value)[0] in (503, 504)
