"""free_port: a listening port the machine's outgoing connections cannot take first."""

from __future__ import annotations

import socket

from bus import free_port
from bus._embedded import _LISTEN_PORTS_LOW, _ephemeral_low


def test_ports_are_below_the_ephemeral_range_and_bindable() -> None:
    low = _ephemeral_low()
    ports = [free_port() for _ in range(50)]
    assert all(_LISTEN_PORTS_LOW <= p < low for p in ports), ports
    assert len(set(ports)) > 40  # random, not one port handed out again and again
    for p in ports[:10]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))  # still free: nothing else was told about it


def test_a_taken_port_is_never_returned(monkeypatch) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        seq = iter([taken, taken, _LISTEN_PORTS_LOW + 7])
        monkeypatch.setattr("bus._embedded._ephemeral_low", lambda: taken + 1)
        monkeypatch.setattr("secrets.SystemRandom.randint", lambda self, a, b: next(seq))
        assert free_port() == _LISTEN_PORTS_LOW + 7

