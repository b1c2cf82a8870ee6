"""The CLI's client commands: ``jetkube history``, ``jetkube audit`` and ``jetkube tenant create``,
thin clients of the API (gateway/_client.py reads the kubeconfig)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

import yaml

from ._client import ApiClient, ClientError, add_tenant_context, load_client

HISTORY = "/apis/history.jetkube.io/v1"
AUDIT = "/apis/audit.jetkube.io/v1/events"
LOGICAL_CLUSTERS = "/apis/tenancy.jetkube.io/v1alpha1/logicalclusters"


def add_commands(sub: Any) -> None:
    """Add ``history`` and ``audit`` to the CLI's subcommands."""
    h = sub.add_parser("history", help="every revision of one object: who changed what, when, from where")
    h.add_argument("target", nargs="+", metavar="TYPE/NAME", help="e.g. cm/settings, or: configmap settings")
    h.add_argument("-n", "--namespace", default=None)
    h.add_argument("--diff", action="store_true", help="each revision as a unified diff of YAML")
    h.add_argument("-o", "--output", choices=("json", "yaml"), default=None)
    _client_flags(h)
    g = sub.add_parser("get", help="objects as they were at a past resourceVersion or time, from the log")
    g.add_argument("target", nargs="+", metavar="TYPE[/NAME]", help="e.g. cm, cm/settings, or: configmap settings")
    g.add_argument("--at", required=True, metavar="RV|TIME", help="a resourceVersion, or an RFC 3339 time")
    g.add_argument("-n", "--namespace", default=None)
    g.add_argument("-A", "--all-namespaces", action="store_true")
    g.add_argument("-o", "--output", choices=("json", "yaml"), default=None)
    _client_flags(g)
    a = sub.add_parser("audit", help="audit.k8s.io/v1 events: writes derived from the log, and the audit stream")
    a.add_argument("--user", default=None)
    a.add_argument("--verb", default=None)
    a.add_argument("--resource", default=None, help="a plural resource name, e.g. secrets or deployments")
    a.add_argument("-n", "--namespace", default=None)
    a.add_argument("--since", default=None, help="RFC 3339 time, or a duration ago: 90s, 15m, 2h, 7d")
    a.add_argument("--until", default=None, help="RFC 3339 time, or a duration ago")
    a.add_argument("--limit", type=int, default=None, help="at most this many events (server default 1000)")
    a.add_argument("-o", "--output", choices=("jsonl", "json", "table"), default="table")
    _client_flags(a)
    t = sub.add_parser("tenant", help="tenants (logical clusters): /clusters/<name>/ serves a whole Kubernetes API")
    tsub = t.add_subparsers(dest="tenant_command", required=True)
    tc = tsub.add_parser("create", help="create a LogicalCluster, wait until it is ready, add a kubeconfig context")
    tc.add_argument("name")
    tc.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the tenant to be ready")
    _client_flags(tc)


def _client_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", default=None)
    p.add_argument("--context", default=None)


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    try:
        client = load_client(args.kubeconfig, args.context, getattr(args, "namespace", None))
        if args.command == "history":
            return history(client, args, out)
        if args.command == "get":
            return get_at(client, args, out)
        if args.command == "tenant":
            return tenant_create(client, args, out)
        return audit(client, args, out)
    except ClientError as e:
        print(str(e), file=sys.stderr)
        return 1


def tenant_create(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    """POST the LogicalCluster to root (the kubeconfig's server without any /clusters/ suffix),
    wait for ``status.phase: Ready`` (its namespaces, service accounts and RBAC exist), then add
    the context ``<context>@<name>`` to the kubeconfig."""
    root = client.server[:client.server.index("/clusters/")] if "/clusters/" in client.server else client.server
    root_client = ApiClient(root, client.namespace, client.context, client.token, client.timeout_s)
    root_client.post_json(LOGICAL_CLUSTERS, {"apiVersion": "tenancy.jetkube.io/v1alpha1", "kind": "LogicalCluster",
                                             "metadata": {"name": args.name}})
    deadline = time.monotonic() + args.timeout
    while True:  # a CLI waiting on a server: polled, bounded by --timeout
        lc = root_client.get_json(f"{LOGICAL_CLUSTERS}/{args.name}")
        if (lc.get("status") or {}).get("phase") == "Ready":
            break
        if time.monotonic() > deadline:
            raise ClientError(f"logical cluster {args.name} not ready after {args.timeout:g}s")
        time.sleep(0.2)
    context = add_tenant_context(args.kubeconfig, args.context, args.name)
    out.write(f"logicalcluster.tenancy.jetkube.io/{args.name} created; kubeconfig context {context}\n")
    return 0


def _target(parts: list[str]) -> tuple[str, str]:
    if len(parts) == 1 and "/" in parts[0]:
        res, _, name = parts[0].partition("/")
        return res, name
    if len(parts) == 2:
        return parts[0], parts[1]
    raise ClientError("error: give the object as TYPE/NAME or TYPE NAME")


def history(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    resource, name = _target(args.target)
    path = f"{HISTORY}/namespaces/{client.namespace}/{resource}/{name}"
    items: list[dict[str, Any]] = []
    body: dict[str, Any] = {}
    cont = ""
    while True:
        body = client.get_json(path, {"limit": "500", "continue": cont, "includeObject": "true" if args.output else "",
                                      "diff": "yaml" if args.diff else ""})
        items += body["items"]
        cont = body.get("metadata", {}).get("continue", "")
        if not cont:
            break
    body = {**body, "metadata": {}, "items": items}
    if args.output == "json":
        out.write(json.dumps(body, indent=2) + "\n")
    elif args.output == "yaml":
        out.write(yaml.safe_dump(body, sort_keys=False))
    elif args.diff:
        for it in items:  # the server's diff (gateway/_history.py yaml_diff), as the /ui/ timeline shows it
            out.write(f"# {_summary(it)}\n")
            out.write(it["diff"])
    else:
        rows = [("REVISION", "TIME", "TYPE", "VERB", "USER", "USER-AGENT", "SOURCE", "AUDIT-ID")]
        for it in items:
            rows.append((it["resourceVersion"], it["time"], it["type"], it["verb"], it["user"]["username"],
                         it.get("userAgent", ""), ",".join(it.get("sourceIPs", [])), it["auditID"]))
        _table(rows, out)
    return 0


def _summary(it: dict[str, Any]) -> str:
    return (f"resourceVersion {it['resourceVersion']} {it['time']} {it['verb']} by {it['user']['username']}"
            f" ({it.get('userAgent', '')}, {','.join(it.get('sourceIPs', []))}) audit {it['auditID']}")


def _table(rows: list[tuple[str, ...]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out.writelines("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n" for r in rows)


def audit(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    params = {"user": args.user or "", "verb": args.verb or "", "resource": args.resource or "",
              "namespace": args.namespace or "", "since": args.since or "", "until": args.until or "",
              "limit": str(args.limit) if args.limit else ""}
    data = client.get(AUDIT, params)
    lines = [ln for ln in data.decode().splitlines() if ln.strip()]
    if args.output == "jsonl":
        out.write("".join(ln + "\n" for ln in lines))
        return 0
    events = [json.loads(ln) for ln in lines]
    if args.output == "json":
        out.write(json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": events}, indent=2)
                  + "\n")
        return 0
    rows = [("TIME", "USER", "VERB", "RESOURCE", "NAMESPACE", "NAME", "CODE", "LEVEL", "AUDIT-ID")]
    for e in events:
        ref = e.get("objectRef") or {}
        res = ref.get("resource", e.get("requestURI", ""))
        if ref.get("subresource"):
            res += "/" + ref["subresource"]
        rows.append((e.get("stageTimestamp", ""), e.get("user", {}).get("username", ""), e.get("verb", ""), res,
                     ref.get("namespace", ""), ref.get("name", ""),
                     str(e.get("responseStatus", {}).get("code", "")), e.get("level", ""), e.get("auditID", "")))
    _table(rows, out)
    return 0


_AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"


def _resolve(client: ApiClient, name: str) -> tuple[str, str, str, bool]:
    """(group, version, plural, namespaced) of a type as kubectl takes it (plural, singular, short
    name or kind; ``.group`` optional), from the server's aggregated discovery."""
    wanted, _, group = name.lower().partition(".")
    for path in ("/api", "/apis"):
        for item in client.get_json(path, accept=_AGGREGATED).get("items", []):
            g = item.get("metadata", {}).get("name", "")
            if group and g != group:
                continue
            for v in item.get("versions", [])[:1]:  # the preferred version
                for r in v.get("resources", []):
                    names = {r["resource"], r.get("singularResource", ""), r.get("responseKind", {}).get("kind", "").lower(),
                             *r.get("shortNames", [])}
                    if wanted in names:
                        return g, v["version"], r["resource"], r.get("scope") == "Namespaced"
    raise ClientError(f'error: the server doesn\'t have a resource type "{name}"')


def get_at(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    """``jetkube get TYPE[/NAME] --at RV|TIME``: a GET or LIST with resourceVersionMatch=Exact."""
    parts = args.target
    if len(parts) == 1 and "/" in parts[0]:
        kind, _, name = parts[0].partition("/")
    elif len(parts) in (1, 2):
        kind, name = parts[0], parts[1] if len(parts) == 2 else ""
    else:
        raise ClientError("error: give TYPE, TYPE/NAME or TYPE NAME")
    rv = args.at
    if not rv.isdigit():
        rv = client.get_json(f"{HISTORY}/resourceversion", {"time": rv})["resourceVersion"]
    group, version, plural, namespaced = _resolve(client, kind)
    base = f"/apis/{group}/{version}" if group else f"/api/{version}"
    if namespaced and not args.all_namespaces:
        base += f"/namespaces/{client.namespace}"
    path = f"{base}/{plural}" + (f"/{name}" if name else "")
    params = {"resourceVersion": rv, "resourceVersionMatch": "Exact"}
    if name:
        body = client.get_json(path, params)
    else:
        items: list[dict[str, Any]] = []
        cont = ""
        while True:
            page = client.get_json(path, {"limit": "500", "continue": cont} if cont else {**params, "limit": "500"})
            items += page.get("items", [])
            cont = page.get("metadata", {}).get("continue", "")
            if not cont:
                break
        body = {**page, "metadata": {"resourceVersion": rv}, "items": items}
    if args.output == "json":
        out.write(json.dumps(body, indent=2) + "\n")
    elif args.output == "yaml":
        out.write(yaml.safe_dump(body, sort_keys=False))
    else:
        objs = [body] if name else body["items"]
        rows = [("NAMESPACE", "NAME", "RESOURCEVERSION")] if namespaced else [("NAME", "RESOURCEVERSION")]
        for o in objs:
            m = o.get("metadata", {})
            row = (m.get("name", ""), m.get("resourceVersion", ""))
            rows.append((m.get("namespace", ""), *row) if namespaced else row)
        _table(rows, out)
    return 0
