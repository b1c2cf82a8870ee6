"""projections/_history.py ``check_retained`` reads the stream state and the compaction point at once;
a bus error in either is still the client's 503/504 with Retry-After (raised as itself, not wrapped in
the nursery's exception group, which would be a 500)."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from bus import BusError, BusTimeout, NoResponders
from gateway._status import status_for
from projections import ResourceVersionTooLarge, TooOldResourceVersion
from projections._history import check_retained


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
