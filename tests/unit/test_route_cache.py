"""The route cache (gateway._routes.Routes) is asked before authentication: what it keeps is
bounded whatever paths a client sends (review s7, finding 5)."""

from __future__ import annotations

import tracemalloc

from gateway._routes import Routes, parse
from kinds import Registry

REG = Registry()
LEGIT = "/clusters/t1/api/v1/namespaces/a/configmaps/b"


def _worst(i: int, length: int = 512) -> str:
    """A resource path of exactly ``length`` characters whose route keeps long strings (its
    namespace, name and inner path)."""
    head = f"/clusters/t{i:05d}/api/v1/namespaces/{'n' * 200}/configmaps/{i:06d}"
    return head + "x" * (length - len(head))


def test_unknown_and_non_resource_paths_are_parsed_not_kept() -> None:
    routes = Routes()
    paths = ["/nope", "/version", "/healthz/etcd", "/api/v1", "/apis/example.com/v1/namespaces/a/widgets",
             "/api/v1/namespaces/a/configmaps/b/c/d", "/clusters/t1/api/v1/nodes/n/x/y", "/openapi/v2"]
    for p in paths * 2:
        assert routes(p, REG) == parse(p, REG), p
    assert len(routes._known) == 0


def test_overlong_paths_are_parsed_not_kept() -> None:
    routes = Routes(max_path=512)
    kept, long = _worst(1, 512), _worst(2, 513)
    for p in (kept, long) * 2:
        assert routes(p, REG) == parse(p, REG)
        assert routes(p, REG).kind == "resource"
    assert list(routes._known) == [kept]


def test_bound_holds_under_ten_thousand_distinct_paths() -> None:
    routes = Routes(size=4096, max_path=512)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(10_000):
            for p in (_worst(i), _worst(i, 600), f"/unknown/{i}/" + "u" * 500):
                routes(p, REG)
            assert len(routes._known) <= 4096
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(routes._known) == 4096
    assert all(len(p) <= 512 for p in routes._known)
    assert held < 9 * 2**20, held  # the class docstring's "about 8 MiB" (2.1 KiB an entry)


def test_a_legitimate_entry_survives_a_flood_of_unknown_paths() -> None:
    routes = Routes(size=8)
    first = routes(LEGIT, REG)
    for i in range(10_000):
        routes(f"/api/v1/namespaces/a/nosuchkind/{i}", REG)
        routes(f"/x/{i}", REG)
    assert list(routes._known) == [LEGIT]
    assert routes(LEGIT, REG) is first  # a hit: the very route parsed first


def test_full_cache_evicts_the_least_recently_used_one_at_a_time() -> None:
    routes = Routes(size=4)
    paths = [f"/api/v1/namespaces/a/configmaps/c{i}" for i in range(6)]
    for p in paths[:4]:
        routes(p, REG)
    routes(paths[0], REG)  # used again: now the most recent
    routes(paths[4], REG)
    assert list(routes._known) == [paths[2], paths[3], paths[0], paths[4]]  # c1 went, alone
    routes(paths[5], REG)
    assert list(routes._known) == [paths[3], paths[0], paths[4], paths[5]]


def test_a_route_no_longer_a_resource_is_dropped() -> None:
    from kinds._crd import defs_from_crd
    from tests.unit.test_webhook_versions import _crd

    registry, routes = Registry(), Routes()
    w = "/clusters/t1/apis/example.com/v1/namespaces/a/widgets/w"
    assert routes(w, registry).kind == "unknown" and w not in routes._known
    registry.set_custom("t1", defs_from_crd(_crd(["v1"])))
    assert routes(w, registry).kind == "resource" and w in routes._known
    registry.set_custom("t1", defs_from_crd(_crd(["v2"])))
    assert routes(w, registry).kind == "unknown" and w not in routes._known
