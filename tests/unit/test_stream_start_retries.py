"""``Log.ensure_stream`` at a gateway's start: what it waits out (a cluster electing or still forming)
and what it refuses at once. The integration side (a real 3-node cluster) is tests/integration/
test_dev_cluster.py, whose gateways start while the cluster forms."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from bus import BusTimeout, JetStreamError, StreamConfig
from bus._log import Log


def _log(errors: list[Exception], *, replicas: int = 3, startup_timeout_s: float = 30.0) -> tuple[Log, list[float]]:
    """A log whose stream create/get raises ``errors`` in turn, then answers; the times it was tried."""
    log = Log(None, StreamConfig(replicas=replicas), startup_timeout_s=startup_timeout_s)  # type: ignore[arg-type]
    tried: list[float] = []

    async def create_or_get() -> dict[str, Any]:
        tried.append(trio.current_time())
        if errors:
            raise errors.pop(0)
        return {"config": {"num_replicas": replicas}}

    log._create_or_get_stream = create_or_get  # type: ignore[method-assign]
    return log, tried


def _no_peers() -> JetStreamError:
    return JetStreamError(400, 10005, "no suitable peers for placement, peer offline")


async def test_a_forming_cluster_is_waited_for(autojump_clock: trio.testing.MockClock) -> None:
    """Three "no suitable peers" answers (the meta leader has not heard from every peer yet), a 503
    and a timeout: retried until the stream is made."""
    log, tried = _log([_no_peers(), _no_peers(), JetStreamError(503, 10008, "JetStream system temporarily "
                                                                           "unavailable"),
                       BusTimeout("no answer"), _no_peers()])
    info = await log.ensure_stream()
    assert info["config"]["num_replicas"] == 3
    assert len(tried) == 6


async def test_no_peers_past_the_start_deadline_is_raised(autojump_clock: trio.testing.MockClock) -> None:
    """A cluster that never has the peers (an R3 stream on two nodes): the error, once the start's
    bound has passed, not a wait without end."""
    log, tried = _log([_no_peers() for _ in range(1000)], startup_timeout_s=5.0)
    t0 = trio.current_time()
    with pytest.raises(JetStreamError) as e:
        await log.ensure_stream()
    assert e.value.err_code == 10005
    assert 5.0 <= trio.current_time() - t0 < 6.0
    assert 2 < len(tried) < 1000


@pytest.mark.parametrize("err", [JetStreamError(400, 10052, "invalid stream config"),
                                 JetStreamError(400, 10074, "replicas > 1 not supported in non-clustered mode")])
async def test_a_refused_config_is_raised_at_once(err: JetStreamError, autojump_clock: trio.testing.MockClock) -> None:
    log, tried = _log([err])
    with pytest.raises(JetStreamError) as e:
        await log.ensure_stream()
    assert e.value is err and len(tried) == 1
