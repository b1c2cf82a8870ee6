"""Log.append while the connection to NATS is down: fail fast, and say whether the write may have
been applied (503 nothing was applied; 504 the outcome is unknown), as kube's timeout does."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from bus import BusDisconnected, BusTimeout, BusUnavailable, Log, NoResponders, StreamConfig
from gateway._status import status_for


class _Bridge:
    """Answers each request with the next scripted error, the last one for ever (the Log's only
    dependency)."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def request(self, *_a: Any, **_k: Any) -> Any:
        self.calls += 1
        raise self.errors.pop(0) if len(self.errors) > 1 else self.errors[0]


@pytest.mark.parametrize(("script", "raised", "code", "reason"), [
    ([BusUnavailable("down")], BusUnavailable, 503, "ServiceUnavailable"),
    ([BusDisconnected("dropped")], BusDisconnected, 504, "Timeout"),
    ([BusTimeout("slow"), BusUnavailable("down")], BusTimeout, 504, "Timeout"),
])
async def test_append_fails_fast_when_disconnected(script: list[Exception], raised: type[Exception],
                                                   code: int, reason: str,
                                                   autojump_clock: trio.abc.Clock) -> None:
    bridge = _Bridge(*script)
    log = Log(bridge, StreamConfig(), append_timeout_s=10.0)  # type: ignore[arg-type]
    t0 = trio.current_time()
    with pytest.raises(raised) as e:
        await log.append("jk.t._.configmaps.ns.a", b"x", msg_id="m", expected_seq=0)
    assert type(e.value) is raised
    assert trio.current_time() - t0 < 1.0  # not the 10 s append deadline
    assert bridge.calls == len(script)
    _assert_status(e.value, code, reason)


def _assert_status(exc: Exception, code: int, reason: str) -> None:
    http, body, headers = status_for(exc)
    assert http == code and f'"reason":"{reason}"'.encode() in body and headers.get("Retry-After")
    if code == 504:
        assert b"may have been applied" in body


async def test_append_refused_until_its_deadline_is_a_503(autojump_clock: trio.abc.Clock) -> None:
    # No stream leader (an election, a restarting server): retried until the deadline, never applied.
    bridge = _Bridge(NoResponders("no leader"))
    log = Log(bridge, StreamConfig(), append_timeout_s=10.0)  # type: ignore[arg-type]
    with pytest.raises(NoResponders) as e:
        await log.append("jk.t._.configmaps.ns.a", b"x", msg_id="m", expected_seq=0)
    _assert_status(e.value, 503, "ServiceUnavailable")
