"""BR: B1 (create) and B2 (consistent GET) for a user authorized through RBAC, beside the same load
as ``system:masters`` (which the authorizer lets through before looking at RBAC), with 50
ClusterRoles and 200 bindings in the projection.

The bench user (``bench-rbac``, in groups ``bench-g0`` .. ``bench-g4``) gets its configmaps rights
from the last of its groups' RoleBindings in ``b1`` and ``b2``, after a dozen bindings of its
other groups there that grant something else, and after the bootstrap ClusterRoleBindings of
``system:authenticated``: every request walks those bindings' rules before it is allowed.

Authz's share of a request is reported two ways: the decision alone, timed in this process on an
index built from the server's own RBAC objects, over the server's CPU per request; and the authz
actor's stage time (the gateway's histogram) over the same.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._runner import Bench

USER, TOKEN = "bench-rbac", "bench-rbac-token"
GROUPS = tuple(f"bench-g{i}" for i in range(5))
ROLES, BINDINGS, CLUSTER_BINDINGS = 50, 200, 40
EXTRA_NAMESPACES = tuple(f"br{i}" for i in range(8))
RBAC = "/apis/rbac.authorization.k8s.io/v1"
_RESOURCES = ("secrets", "leases", "events", "serviceaccounts", "pods", "services", "deployments", "jobs")


def token_line() -> str:
    return f'{TOKEN},{USER},{USER},"{",".join(GROUPS)}"\n'


def write_token_file(path: Path) -> Path:
    path.write_text(token_line())
    path.chmod(0o600)
    return path


def policy() -> tuple[list[dict[str, Any]], list[tuple[str, dict[str, Any]]]]:
    """(ClusterRoles, [(namespace or "", binding)]): 50 roles, 200 bindings."""
    roles = []
    for i in range(ROLES):
        rules: list[dict[str, Any]] = [
            {"apiGroups": [""], "resources": [_RESOURCES[i % len(_RESOURCES)], _RESOURCES[(i + 3) % len(_RESOURCES)]],
             "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["apps", "batch"], "resources": ["deployments", "jobs", "*/scale"], "verbs": ["update"]},
            {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [f"only-{i}"], "verbs": ["get", "update"]},
        ]
        if i == ROLES - 1:
            rules.append({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "create"]})
        roles.append({"metadata": {"name": f"bench-role-{i:02d}"}, "rules": rules})
    bindings: list[tuple[str, dict[str, Any]]] = []
    for i in range(CLUSTER_BINDINGS):
        bindings.append(("", _binding(f"bench-crb-{i:03d}", f"bench-role-{i % (ROLES - 1):02d}",
                                      [("Group", f"bench-other-{i}"), ("User", f"someone-{i}")])))
    namespaces = ("b1", "b2", *EXTRA_NAMESPACES)
    for i in range(BINDINGS - CLUSTER_BINDINGS - 2):
        ns = namespaces[i % len(namespaces)]
        subjects = [("User", f"user-{i}"), ("Group", GROUPS[i % (len(GROUPS) - 1)] if ns in ("b1", "b2")
                                           else f"team-{i}")]
        bindings.append((ns, _binding(f"bench-rb-{i:03d}", f"bench-role-{i % (ROLES - 1):02d}", subjects)))
    for ns in ("b1", "b2"):  # the user's grant: the last group's binding to the last role
        bindings.append((ns, _binding("bench-rbac-configmaps", f"bench-role-{ROLES - 1:02d}",
                                      [("Group", GROUPS[-1])])))
    assert len(roles) == ROLES and len(bindings) == BINDINGS
    return roles, bindings


def _binding(name: str, role: str, subjects: list[tuple[str, str]]) -> dict[str, Any]:
    return {"metadata": {"name": name}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                                    "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": k, "name": n} for k, n in subjects]}


async def install(bench: Bench) -> None:
    gw = bench.g1
    assert gw is not None
    for ns in EXTRA_NAMESPACES:
        code, body = await bench.api(gw, "POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
        if code not in (201, 409):
            raise RuntimeError(f"cannot create namespace {ns}: {code} {body}")
    roles, bindings = policy()
    for r in roles:
        code, body = await bench.api(gw, "POST", f"{RBAC}/clusterroles", r)
        if code not in (201, 409):
            raise RuntimeError(f"cannot create ClusterRole: {code} {body}")
    for ns, b in bindings:
        path = f"{RBAC}/namespaces/{ns}/rolebindings" if ns else f"{RBAC}/clusterrolebindings"
        code, body = await bench.api(gw, "POST", path, b)
        if code not in (201, 409):
            raise RuntimeError(f"cannot create a binding: {code} {body}")


async def decision_us(bench: Bench) -> dict[str, float]:
    """The authorizer's decision alone, in this process, on the server's RBAC objects (µs/call)."""
    import msgspec

    from actors import Attributes, Authorizer, UserInfo
    from bus import ROOT_TENANT
    from projections import RbacIndex

    gw = bench.g1
    assert gw is not None
    idx = RbacIndex()
    for resource in ("clusterroles", "clusterrolebindings", "roles", "rolebindings"):
        code, body = await bench.api(gw, "GET", f"{RBAC}/{resource}")
        if code != 200:
            raise RuntimeError(f"cannot list {resource}: {code}")
        for item in body["items"]:
            meta = item["metadata"]
            idx.apply(ROOT_TENANT, resource, meta.get("namespace", ""), meta["name"], msgspec.json.encode(item))
    az = Authorizer(idx)
    user = UserInfo(name=USER, groups=(*GROUPS, "system:authenticated"))
    out = {}
    # The decision as each request makes it: its own Attributes (a GET names another object each
    # time), the cache hit that a repeated request costs, and the walk of the bindings (no cache).
    uncached = Authorizer(idx)
    uncached._cache_gen = -2  # never equal to the index's generation: every call decides afresh
    for label, a in (("create-uncached", Attributes(verb="create", resource="configmaps", namespace="b1")),):
        n = 5_000
        t0 = time.perf_counter()
        for _ in range(n):
            uncached._rbac_decide(user, a)
        out[label] = (time.perf_counter() - t0) / n * 1e6
    for label, a in (("create", Attributes(verb="create", resource="configmaps", namespace="b1")),
                     ("get", Attributes(verb="get", resource="configmaps", namespace="b2", name="g-1"))):
        assert az.authorize(user, a).allowed, label
        n = 20_000
        t0 = time.perf_counter()
        for i in range(n):  # a fresh Attributes per call, as each request builds its own
            az.authorize(user, Attributes(verb=a.verb, resource=a.resource, namespace=a.namespace,
                                          name=f"g-{i % 1000}" if a.name else ""))
        out[label] = (time.perf_counter() - t0) / n * 1e6
    masters = UserInfo(name="admin", groups=("system:masters", "system:authenticated"))
    t0 = time.perf_counter()
    for _ in range(20_000):
        az.authorize(masters, Attributes(verb="create", resource="configmaps", namespace="b1"))
    out["masters"] = (time.perf_counter() - t0) / 20_000 * 1e6
    return out


async def run(bench: Bench) -> list[dict[str, Any]]:
    gw = bench.g1
    assert gw is not None
    p = bench.p
    await install(bench)
    await bench.ensure_b2_objects()
    await bench.wait_applied(gw, await bench.log_api.head())
    rows: list[dict[str, Any]] = []
    decisions = await decision_us(bench)
    results: dict[str, dict[str, Any]] = {}
    for base, op, extra in (("B1", "create", {"prefix": "brc"}), ("B2", "get", {"names": ("g-", p.b2_names)})):
        ns = "b1" if op == "create" else "b2"
        for who, token in (("masters", gw.token), ("rbac", TOKEN)):
            prefix = {"prefix": f"{extra['prefix']}-{who}"} if "prefix" in extra else {}
            names = {"names": extra["names"]} if "names" in extra else {}
            r = await bench.measured([gw], lambda op=op, ns=ns, token=token, prefix=prefix, names=names, who=who,  # type: ignore[misc]
                                     base=base: bench.load(ports=[gw.port], token=token, op=op, ns=ns,
                                                           duration_s=p.http_s, name=f"BR-{base}-{who}",
                                                           **prefix, **names))
            results[f"{base}/{who}"] = r
            if r.get("errors"):
                bench.log(f"BR {base} as {who}: {r['errors']} errors")
        m, rb = results[f"{base}/masters"], results[f"{base}/rbac"]
        cpu_req = (rb.get("server") or {}).get("server_cpu_us_per_request")
        stage = ((rb.get("server") or {}).get("stages") or {}).get("authz") or {}
        stage_m = ((m.get("server") or {}).get("stages") or {}).get("authz") or {}
        dec = decisions[op]
        share = dec / cpu_req if cpu_req else None
        note = (f"as system:masters {m['rps']:,.0f}/s, through RBAC {rb['rps']:,.0f}/s "
                f"({rb['rps'] / m['rps'] if m['rps'] else 0:.2f}x); p99 {m['lat_ms']['p99_ms']:.1f} vs "
                f"{rb['lat_ms']['p99_ms']:.1f}ms; RBAC decision {dec:.1f}us (masters {decisions['masters']:.2f}us; "
                f"uncached walk of the bindings {decisions['create-uncached']:.1f}us) "
                f"of {cpu_req or 0:.0f}us server CPU per request = {share * 100 if share else 0:.1f}%; authz stage "
                f"mean {stage.get('mean_us')}us (masters {stage_m.get('mean_us')}us)")
        row = bench.http_row(f"{base}/rbac", rb, "C1-write" if op == "create" else "C1-get",
                             0.60 if op == "create" else 0.85)
        row["note"] = note + "; " + row["note"]
        row["masters_rps"] = m["rps"]
        row["decision_us"] = dec
        row["authz_share"] = share
        row["details"] = {**rb, "masters": m, "decision_us": decisions}
        rows.append(row)
        rows.append({"id": f"{base}/rbac/authz-share", "value": (share or 0) * 100, "unit": "%",
                     "target": "RBAC decision < 5% of a request's server CPU", "met": share is not None and share < 0.05,
                     "note": f"{dec:.1f}us decision / {cpu_req}us server CPU per request ({ROLES} ClusterRoles, "
                             f"{BINDINGS} bindings)"})
    return rows


def header(bench: Bench) -> str:
    p = bench.p
    return (f"B1 and B2 as system:masters, then as {USER} through RBAC ({ROLES} ClusterRoles, {BINDINGS} bindings), "
            f"{p.conns} connections, {p.http_s:.0f}s each")
