"""serve --workers: what a worker is told by its parent, and the flag's default."""

from __future__ import annotations

import errno
import socket

import msgspec
import pytest

from bus import NatsAuth
from gateway import Settings
from gateway._workers import ENV, CannotListen, WorkerLink, _describe, _listen, _reserve, default_workers


def _link(**kw: object) -> WorkerLink:
    base = {"index": 1, "workers": 3, "ready_fd": 7, "port": 6443,
            "insecure_port": None, "nats_url": None}
    return msgspec.convert({**base, **kw}, WorkerLink)


def test_a_worker_takes_the_parents_ports_and_its_share_of_the_seats() -> None:
    s = Settings(port=0, insecure_port=0, nats_url="nats://other:4222", nats_auth=NatsAuth(user="u"),
                 max_requests_inflight=400, max_mutating_requests_inflight=200)
    got = _link(port=41000, insecure_port=41001).settings(s)
    assert (got.port, got.insecure_port) == (41000, 41001)
    assert (got.max_requests_inflight, got.max_mutating_requests_inflight) == (134, 67)  # rounded up
    assert got.nats_url == "nats://other:4222" and got.nats_auth.user == "u"  # the flags' NATS, unchanged


def test_a_worker_uses_the_parents_embedded_nats_with_its_credentials_in_the_url() -> None:
    got = _link(nats_url="nats://jetkube:pw@127.0.0.1:4222").settings(Settings(nats_auth=NatsAuth(user="u")))
    assert got.nats_url == "nats://jetkube:pw@127.0.0.1:4222" and got.nats_auth == NatsAuth()


def test_the_link_is_read_once_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, msgspec.json.encode(_link()).decode())
    assert WorkerLink.from_env() == _link()
    assert WorkerLink.from_env() is None  # removed: nothing the worker starts inherits it


def test_the_default_is_the_environment_else_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JETKUBE_WORKERS", "3")
    assert default_workers() == 3
    monkeypatch.delenv("JETKUBE_WORKERS")
    assert default_workers() >= 1
    monkeypatch.setenv("JETKUBE_WORKERS", "many")
    with pytest.raises(SystemExit):
        default_workers()


def test_exit_codes_are_described_as_the_shell_would() -> None:
    assert _describe(-9) == "-9 (SIGKILL)"
    assert _describe(2) == "2"


def test_the_reserved_port_takes_the_workers_listeners_and_nothing_else() -> None:
    reserve = _reserve("127.0.0.1", 0)
    port = reserve.getsockname()[1]
    listeners: list[socket.socket] = []
    try:
        for with_workers in (False, True):  # while no worker listens (start, every worker down), then with two
            for opts in ((), ((socket.SOL_SOCKET, socket.SO_REUSEADDR, 1),)):  # a socket outside the group
                other = socket.socket()
                for opt in opts:
                    other.setsockopt(*opt)
                with pytest.raises(OSError) as e:
                    other.bind(("127.0.0.1", port))
                other.close()
                assert e.value.errno == errno.EADDRINUSE, (with_workers, opts)
            if not with_workers:
                listeners += [_listen("127.0.0.1", port, reuse_port=True) for _ in range(2)]  # one per worker
        with pytest.raises(CannotListen, match=f"cannot listen on 127.0.0.1:{port}"):
            _reserve("127.0.0.1", port)  # a second server on the port: refused, not joined to the group
        link = _link(port=port, insecure_port=None)
        https, http = link.listeners("127.0.0.1")
        assert http is None
        with socket.socket(fileno=https) as sock:
            assert sock.getsockname() == ("127.0.0.1", port)
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
    finally:
        for s in (reserve, *listeners):
            s.close()


def test_a_port_held_by_a_listener_is_refused_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CannotListen, match="Address already in use"):
            _reserve("127.0.0.1", port)
        with pytest.raises(CannotListen, match="Address already in use"):
            _link(port=port).listeners("127.0.0.1")
