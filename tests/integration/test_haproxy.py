"""Traffic through a real HAProxy running compose/haproxy.cfg (no container engine: haproxy, the
gateways and nats-server run as processes on loopback).

The config is the compose file itself with only its addresses moved: the frontend binds a loopback
port and Docker's DNS slots (``server-template gw 10 gateway:6443``) become one ``server`` line per
gateway process; the mode, TLS passthrough, the ``/readyz`` check with its probe token, the
timeouts and ``on-marked-down shutdown-sessions`` are the file's. kubectl and the official Python
client talk to HAProxy with the kubeconfig of ``jetkube pki init``, verifying TLS against its CA."""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import resource
import shutil
import signal
import ssl
import subprocess
import threading
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import kubernetes
import pytest
import trio
import urllib3
import yaml
from cryptography import x509

from bus import free_port
from gateway._cli import main as jetkube_main
from tests.conftest import poll_until, spawn_serve
from tests.integration.cluster_support import GatewayProcess
from tests.integration.test_compose import COMPOSE, _compose_env, tools  # noqa: F401 (tools: a fixture)
from tests.integration.test_lb_faults import _open_watches

pytestmark = pytest.mark.integration

SERVERS = "server-template gw 10 gateway:6443"


def render_haproxy_cfg(lb_port: int, stats_port: int, gateways: list[int]) -> str:
    """compose/haproxy.cfg for loopback: the two binds and the server slots replaced, nothing else."""
    text = (COMPOSE / "haproxy.cfg").read_text()
    servers = "\n  ".join(f"server gw{i} 127.0.0.1:{p}" for i, p in enumerate(gateways))
    for old, new in (("bind :6443", f"bind 127.0.0.1:{lb_port}"), ("bind :8404", f"bind 127.0.0.1:{stats_port}"),
                     (SERVERS, servers)):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def _maxconn_for_fd_limit() -> list[str]:
    """``-n N`` when this machine's hard limit of open files is below what the config's ``maxconn``
    needs (HAProxy refuses to start: "Cannot raise FD limit"; about 2 per connection): the config
    file stays as it is, only the connection limit of this run is lowered."""
    wanted = int(next(line.split()[1] for line in (COMPOSE / "haproxy.cfg").read_text().splitlines()
                      if line.split()[:1] == ["maxconn"]))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard >= 2 * wanted + 100:
        return []
    return ["-n", str((hard - 100) // 2)]


async def haproxy_servers(stats_port: int) -> dict[str, dict[str, str]]:
    """HAProxy's view of the backend's servers (its stats page as CSV): name -> row."""
    async with httpx.AsyncClient(timeout=5) as c:
        r = await c.get(f"http://127.0.0.1:{stats_port}/stats;csv")
    r.raise_for_status()
    rows = csv.DictReader(io.StringIO(r.text.removeprefix("# ")))
    return {row["svname"]: row for row in rows if row["pxname"] == "gateways" and row["svname"].startswith("gw")}


async def kubectl(kubeconfig: Path, *args: str) -> str:
    r = await trio.run_process(["kubectl", "--kubeconfig", str(kubeconfig), "--request-timeout", "20s", *args],
                               capture_stdout=True, capture_stderr=True, check=False)
    assert r.returncode == 0, (args, r.stderr.decode())
    return r.stdout.decode()


@pytest.mark.parametrize("fault", ["kill-9", "frozen"])
async def test_kubectl_and_a_watch_through_haproxy_outlive_the_watchs_gateway(
        tools: dict[str, str], tmp_path: Path, nats_url: str, fault: str) -> None:  # noqa: F811 (the imported fixture)
    """Three gateway processes on one nats-server, sharing the files of ``jetkube pki init``, behind
    HAProxy running the compose config. kubectl creates and lists through it; the official Python
    client watches through it. ``kill -9`` of the gateway holding the watch: HAProxy's /readyz check
    marks it DOWN, the watch resumes (client-go style: from its last resourceVersion) on a survivor
    with no gap and no repeat, and new requests through HAProxy succeed.

    ``kill-9``: on loopback the kernel closes the dead process's sockets, so the watch ends at once
    and HAProxy redispatches new connections that meet a refusal; its check marks the replica DOWN
    after 2 failures (about 4 s). ``frozen``: SIGSTOP first (no FIN, no RST, as a lost container or
    host), so only the check (each waits ``timeout check 3s``) notices, and ``on-marked-down
    shutdown-sessions`` is what ends the watch (about 8 s); the frozen replica is then killed -9."""
    lb_port, stats_port = free_port(), free_port()
    shared = tmp_path / "shared"
    probe_file = tmp_path / "probe" / "token"
    server = f"https://127.0.0.1:{lb_port}"
    assert jetkube_main(["pki", "init", "--data-dir", str(shared), "--san", "127.0.0.1", "--server", server,
                         "--probe-token-file", str(probe_file)]) == 0
    kubeconfig = shared / "pki" / "kubeconfig"
    ca = shared / "pki" / "ca.crt"
    admin = yaml_token(kubeconfig)
    gws: list[GatewayProcess] = []
    https_ports: list[int] = []
    haproxy: trio.Process | None = None
    try:
        with trio.fail_after(90):
            for i in range(3):
                shutil.copytree(shared / "pki", tmp_path / f"gw{i}" / "pki")  # one CA, certificate, tokens
                proc, line = await spawn_serve(tmp_path / f"gw{i}", "--nats-url", nats_url)
                gws.append(GatewayProcess(proc, line.split("http=")[1].split()[0], admin))
                https_ports.append(int(line.split("https=")[1].split()[0].rsplit(":", 1)[1]))
            cfg = tmp_path / "haproxy.cfg"
            cfg.write_text(render_haproxy_cfg(lb_port, stats_port, https_ports))
            env = {**_compose_env(), "JETKUBE_PROBE_TOKEN": probe_file.read_text().strip()}
            r = await trio.run_process([tools["haproxy"], "-c", "-f", str(cfg)], env=env, capture_stdout=True,
                                       stderr=subprocess.STDOUT, check=False)
            assert r.returncode == 0, r.stdout.decode()
            with (tmp_path / "haproxy.log").open("wb") as log:  # HAProxy logs each connection to stdout
                haproxy = await trio.lowlevel.open_process(
                    [tools["haproxy"], "-f", str(cfg), "-db", *_maxconn_for_fd_limit()], env=env, stdout=log,
                    stderr=subprocess.STDOUT)
            running = haproxy

            # The check passes on every replica: HTTP 200 from /readyz over TLS with the probe token.
            async def all_up() -> bool:
                assert running.returncode is None, (tmp_path / "haproxy.log").read_text()
                try:
                    rows = await haproxy_servers(stats_port)
                except httpx.TransportError:
                    return False
                return len(rows) == 3 and all(
                    (row["status"], row["check_status"], row["check_code"]) == ("UP", "L7OK", "200")
                    for row in rows.values())

            await poll_until(all_up)
            await _through_haproxy(kubeconfig, ca, lb_port, stats_port, gws, fault)
    finally:
        with trio.CancelScope(shield=True):
            if haproxy is not None:
                haproxy.kill()
                await haproxy.wait()
            for g in gws:
                await g.stop()


def yaml_token(kubeconfig: Path) -> str:
    doc = yaml.safe_load(kubeconfig.read_text())
    return str(doc["users"][0]["user"]["token"])


async def _through_haproxy(kubeconfig: Path, ca: Path, lb_port: int, stats_port: int,
                           gws: list[GatewayProcess], fault: str) -> None:
    # TLS passes through: the certificate HAProxy's port serves is the gateways', with the IP used.
    served = await trio.to_thread.run_sync(partial(ssl.get_server_certificate, ("127.0.0.1", lb_port), timeout=5))
    pem = (ca.parent / "apiserver.crt").read_text()
    assert ssl.PEM_cert_to_DER_cert(served) == ssl.PEM_cert_to_DER_cert(pem)
    sans = x509.load_pem_x509_certificate(served.encode()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert "127.0.0.1" in {str(a) for a in sans.get_values_for_type(x509.IPAddress)}

    # kubectl: creates and lists, each invocation a new TLS connection through HAProxy.
    for i in range(6):
        await kubectl(kubeconfig, "create", "configmap", f"hp-k{i}", f"--from-literal=i={i}")
    listed = json.loads(await kubectl(kubeconfig, "get", "configmaps", "-o", "json"))
    assert {f"hp-k{i}" for i in range(6)} <= {o["metadata"]["name"] for o in listed["items"]}
    # The list's own resourceVersion (kubectl's table of items drops it): where the watch starts.
    listed = json.loads(await kubectl(kubeconfig, "get", "--raw", "/api/v1/namespaces/default/configmaps"))
    rv0 = int(listed["metadata"]["resourceVersion"])
    before = await haproxy_servers(stats_port)
    assert sum(int(row["stot"]) for row in before.values()) >= 7
    assert sum(1 for row in before.values() if int(row["stot"]) > 0) >= 2, before  # leastconn spreads them

    # The official Python client on the same kubeconfig (TLS verified against its CA).
    api_client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
    core = kubernetes.client.CoreV1Api(api_client)
    token = trio.lowlevel.current_trio_token()
    seen: list[tuple[str, str, int]] = []  # (type, name, resourceVersion)
    calls: list[str] = []  # the resourceVersion each watch connection asked from
    breaks: list[str] = []
    changed = trio.Event()
    stop = threading.Event()

    def notify() -> None:
        nonlocal changed
        ev, changed = changed, trio.Event()
        ev.set()

    @functools.wraps(core.list_namespaced_config_map)
    def list_cms(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["resource_version"])
        return core.list_namespaced_config_map(*args, **kwargs)

    def watch() -> None:
        """The Python client's Watch, resumed as client-go's RetryWatcher does when its connection
        breaks: from the last resourceVersion received, never re-listing (bounded)."""
        rv = str(rv0)
        for _ in range(4):
            try:
                # _request_timeout bounds the connect and every read (a quiet watch is resumed too).
                for ev in kubernetes.watch.Watch().stream(list_cms, "default", resource_version=rv,
                                                          _request_timeout=(5, 30)):
                    md = ev["object"].metadata
                    rv = md.resource_version
                    seen.append((ev["type"], md.name, int(rv)))
                    trio.from_thread.run_sync(notify, trio_token=token)
                    if stop.is_set():
                        return
            except (urllib3.exceptions.HTTPError, kubernetes.client.ApiException) as e:
                breaks.append(type(e).__name__)
        raise AssertionError(f"the watch broke 4 times: {breaks}")

    async def wait_seen(name: str) -> None:
        while name not in {n for _, n, _ in seen}:
            await changed.wait()

    acked: list[int] = []

    async def create(name: str) -> None:
        body = kubernetes.client.V1ConfigMap(metadata=kubernetes.client.V1ObjectMeta(name=name), data={"n": name})
        obj = await trio.to_thread.run_sync(partial(core.create_namespaced_config_map, "default", body,
                                                    _request_timeout=(5, 20)))
        acked.append(int(obj.metadata.resource_version))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(trio.to_thread.run_sync, watch, abandon_on_cancel=True))
        for i in range(20):
            await create(f"hp-a{i}")
        await wait_seen("hp-a19")
        open_watches = [await _open_watches(g) for g in gws]
        assert sorted(open_watches) == [0, 0, 1], open_watches
        victim_i = open_watches.index(1)
        victim, survivors = gws[victim_i], [g for g in gws if g is not gws[victim_i]]
        # The watch stays open across HAProxy's health checks (two more on its replica).
        checked = await _readyz_requests(victim)
        await poll_until(lambda: _readyz_requests_reach(victim, checked + 2))
        assert breaks == [] and len(calls) == 1

        # The health check takes it out (2 failed checks, 2 s apart); the others stay up.
        async def victim_down() -> bool:
            rows = await haproxy_servers(stats_port)
            return rows[f"gw{victim_i}"]["status"].startswith("DOWN")

        t_kill = trio.current_time()
        if fault == "kill-9":
            victim.proc.kill()
            await victim.proc.wait()
            # Requests made right away succeed: a connection HAProxy sends to the dead replica is
            # refused and redispatched (`option redispatch`, `retries 3`).
            for i in range(10):
                await create(f"hp-b{i}")
            await poll_until(victim_down)
            t_down = trio.current_time() - t_kill
            t_break = math.nan  # the kernel closed the dead process's sockets: the watch ended at once
        else:
            # Frozen (SIGSTOP): no FIN, no RST, as a lost container or host. Only HAProxy's check can
            # notice; `on-marked-down shutdown-sessions` then cuts the watch, which resumes elsewhere.
            victim.proc.send_signal(signal.SIGSTOP)
            await poll_until(victim_down)
            t_down = trio.current_time() - t_kill
            await poll_until(lambda: len(breaks) == 1)
            t_break = trio.current_time() - t_kill
            victim.proc.kill()  # kill -9 the frozen replica (it never answers again)
            await victim.proc.wait()
            for i in range(10):
                await create(f"hp-b{i}")
        rows = await haproxy_servers(stats_port)
        assert [rows[f"gw{i}"]["status"] for i in range(3) if i != victim_i] == ["UP", "UP"], rows
        for i in range(10):
            await create(f"hp-c{i}")
        await kubectl(kubeconfig, "create", "configmap", "hp-k-after", "--from-literal=after=1")
        await wait_seen("hp-k-after")
        on_survivors = [await _open_watches(g) for g in survivors]
        stop.set()
        await create("hp-last")
        await wait_seen("hp-last")
        nursery.cancel_scope.cancel()
    api_client.close()

    listed = json.loads(await kubectl(kubeconfig, "get", "configmaps", "-o", "json"))
    names = {o["metadata"]["name"] for o in listed["items"]}
    want_names = {*(f"hp-a{i}" for i in range(20)), *(f"hp-b{i}" for i in range(10)),
                  *(f"hp-c{i}" for i in range(10)), "hp-k-after", "hp-last"}
    assert want_names <= names
    # The watch: every change after rv0, in order, once (kubectl's create included, by its version).
    kubectl_rv = next(int(o["metadata"]["resourceVersion"]) for o in listed["items"]
                      if o["metadata"]["name"] == "hp-k-after")
    want = sorted([*acked, kubectl_rv])
    got = [rv for _, _, rv in seen]
    assert got == want, f"missing {sorted(set(want) - set(got))}, extra or repeated {sorted(Counter(got) - Counter(want))}"
    assert len(breaks) == 1 and len(calls) == 2, (breaks, calls)
    assert int(calls[1]) == max(rv for rv in got if rv <= int(calls[1]))  # resumed from its last version
    assert sum(on_survivors) == 1, on_survivors  # the resumed watch is on a survivor
    print(f"\nthrough HAProxy, {fault} of the watch's gateway gw{victim_i}: marked DOWN {t_down:.2f}s after, "
          f"watch cut {'at once (the kernel closed its sockets)' if math.isnan(t_break) else f'{t_break:.2f}s after'}; "
          f"watch broke with {breaks[0]}, resumed from rv {calls[1]}; {len(got)} changes seen, "
          f"{len(acked) + 1} writes after rv {rv0}")


async def _readyz_requests(gw: GatewayProcess) -> int:
    """How many /readyz requests the gateway has answered (HAProxy's checks: nothing else asks)."""
    async with gw.client() as c:
        text = (await c.get("/metrics")).text
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith("apiserver_request_total{") and 'subresource="/readyz"' in line)


async def _readyz_requests_reach(gw: GatewayProcess, n: int) -> bool:
    return await _readyz_requests(gw) >= n
