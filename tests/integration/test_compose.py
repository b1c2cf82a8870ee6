"""compose/: checked offline, with no container runtime.

- ``docker-compose config`` (Debian's docker-compose 1.29, which validates without a daemon) renders
  the file; the tests read that rendering as YAML and check the topology it claims: 3 NATS nodes
  routed to each other with credentials, N gateways on the same files, the balancer in TCP mode
  targeting every gateway with /readyz checks, one init step writing what they share.
- ``nats-server -t`` checks each node's config with the environment compose gives it;
  ``haproxy -c`` checks the balancer's.
- The same node configs (listen addresses moved to loopback) run as a real 3-node cluster, and two
  gateways started on the files of ``jetkube pki init`` serve through it: what compose would run,
  without the containers.
- Monitoring: ``promtool check config`` accepts prometheus.yml (with the files init writes), its
  scrape job targets every gateway as a user in ``system:monitoring``, and every PromQL expression
  of the Grafana dashboard names only series a running jetkube serves.

The tools are installed here when missing (apt-get, as root), not skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import yaml

from bus import NatsAuth, free_port, nats_server_binary
from gateway import Running, Settings, serve
from gateway._cli import MONITORING_USER, PROBE_USER
from gateway._cli import main as jetkube_main
from tests.integration.test_metrics import promtool

pytestmark = pytest.mark.integration

COMPOSE = Path(__file__).resolve().parents[2] / "compose"
NODES = ("n1", "n2", "n3")
SECRETS = {"JETKUBE_NATS_PASSWORD": "client-secret-1", "JETKUBE_NATS_ROUTE_PASSWORD": "0a1b2c3d4e5f",
           "JETKUBE_GRAFANA_PASSWORD": "grafana-secret"}
TOOLS = {"haproxy": "haproxy", "docker-compose": "docker-compose"}  # executable: Debian package


def _which(name: str) -> str | None:
    return shutil.which(name, path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/usr/bin")


def _run(argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 60,
         cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd, check=False)


@pytest.fixture(scope="session")
def tools() -> dict[str, str]:
    """haproxy and docker-compose, installed from Debian when missing (one apt-get update, bounded)."""
    missing = sorted({pkg for exe, pkg in TOOLS.items() if _which(exe) is None})
    if missing:
        if os.geteuid() != 0:
            pytest.fail(f"compose validation needs {missing}: install them (apt-get install {' '.join(missing)})")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv, limit in ((["apt-get", "update", "-qq"], 300),
                            (["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], 600)):
            try:
                r = _run(argv, env=env, timeout=limit)
            except subprocess.TimeoutExpired:
                pytest.fail(f"`{' '.join(argv)}` took more than {limit} s: cannot install {missing}")
            if r.returncode != 0:
                pytest.fail(f"`{' '.join(argv)}` failed ({r.returncode}), cannot install {missing}:\n{r.stderr[-3000:]}")
    found = {exe: _which(exe) for exe in TOOLS}
    if None in found.values():
        pytest.fail(f"installed, yet not on PATH: {[e for e, p in found.items() if p is None]}")
    return {exe: str(p) for exe, p in found.items()}


def _compose_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any JETKUBE_* (a developer's shell must not change the result)."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("JETKUBE_", "COMPOSE_"))}, **extra}


def _compose_config(tools: dict[str, str], compose_dir: Path, env: dict[str, str],
                    tmp: Path) -> subprocess.CompletedProcess[str]:
    empty = tmp / "empty.env"  # not compose/.env: a developer's secrets must not change the result
    empty.write_text("")
    return _run([tools["docker-compose"], "--env-file", str(empty), "-f", str(compose_dir / "compose.yaml"),
                 "config"], env=env, cwd=compose_dir)


@pytest.fixture(scope="module")
def rendered(tools: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    r = _compose_config(tools, COMPOSE, _compose_env(**SECRETS), tmp_path_factory.mktemp("compose"))
    assert r.returncode == 0, r.stderr
    doc = yaml.safe_load(r.stdout)
    assert isinstance(doc, dict) and "services" in doc
    return doc


def _flags(command: list[str]) -> dict[str, str]:
    """``--name=value`` arguments (the gateway's command uses that form only)."""
    out = {}
    for arg in command:
        if arg.startswith("--"):
            name, _, value = arg.partition("=")
            out[name] = value
    return out


def _mounts(service: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """container path -> (source, mode) of a rendered service's volumes."""
    out = {}
    for v in service.get("volumes", []):
        source, target, *mode = v.split(":")
        out[target] = (source, mode[0] if mode else "rw")
    return out


def _ports(service: dict[str, Any]) -> dict[int, tuple[str, int]]:
    """container port -> (host address, host port); docker-compose v1 renders ``ip:host:container/tcp``."""
    out = {}
    for p in service.get("ports", []):
        host_ip, published, target = p.rsplit("/", 1)[0].split(":")
        out[int(target)] = (host_ip, int(published))
    return out


def _haproxy_sections(text: str) -> dict[str, list[list[str]]]:
    sections: dict[str, list[list[str]]] = {}
    current: list[list[str]] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not line[0].isspace():
            current = sections.setdefault(" ".join(line.split()[:2]), [])
        else:
            current.append(line.split())
    return sections


# --- the validators accept the files and refuse broken ones ---------------------------------------


def test_compose_config_validates_and_refuses_mistakes(tools: dict[str, str], tmp_path: Path,
                                                       rendered: dict[str, Any]) -> None:
    assert set(rendered["services"]) == {*NODES, "init", "gateway", "lb", "prometheus", "grafana"}
    # Without its secrets compose refuses to start at all: NATS is never left open.
    r = _compose_config(tools, COMPOSE, _compose_env(JETKUBE_NATS_ROUTE_PASSWORD="x"), tmp_path)
    assert r.returncode != 0 and "set JETKUBE_NATS_PASSWORD in compose/.env" in r.stderr
    # The validator catches a misspelled key (it is not accepting anything).
    broken = tmp_path / "broken"
    shutil.copytree(COMPOSE, broken, ignore=shutil.ignore_patterns(".env"))
    text = (broken / "compose.yaml").read_text()
    assert "stop_grace_period: 30s" in text
    (broken / "compose.yaml").write_text(text.replace("stop_grace_period: 30s", "stop_grace_perod: 30s"))
    r = _compose_config(tools, broken, _compose_env(**SECRETS), tmp_path)
    assert r.returncode != 0 and "stop_grace_perod" in r.stderr


def test_each_nats_node_config_is_valid_with_the_environment_compose_gives_it(
        rendered: dict[str, Any]) -> None:
    binary = nats_server_binary()
    for node in NODES:
        svc = rendered["services"][node]
        conf = COMPOSE / "nats" / f"{node}.conf"
        env = {**_compose_env(), **svc["environment"]}
        r = _run([binary, "-t", "-c", str(conf)], env=env, timeout=30)
        assert r.returncode == 0 and "is valid" in r.stdout + r.stderr, r.stderr
        # A missing secret fails the check (and the start): no node runs without its credentials.
        for missing in ("JETKUBE_NATS_PASSWORD", "NATS_ROUTE_PASSWORD", "NATS_ROUTE_N2"):
            r = _run([binary, "-t", "-c", str(conf)], env={k: v for k, v in env.items() if k != missing},
                     timeout=30)
            assert r.returncode != 0 and missing in r.stdout + r.stderr


def test_haproxy_config_is_valid(tools: dict[str, str], tmp_path: Path) -> None:
    env = {**_compose_env(), "JETKUBE_PROBE_TOKEN": "probe"}
    r = _run([tools["haproxy"], "-c", "-f", str(COMPOSE / "haproxy.cfg")], env=env, timeout=30)
    assert r.returncode == 0 and "Configuration file is valid" in r.stdout + r.stderr, r.stdout + r.stderr
    broken = tmp_path / "haproxy.cfg"
    broken.write_text((COMPOSE / "haproxy.cfg").read_text().replace("check-ssl", "check-sl"))
    r = _run([tools["haproxy"], "-c", "-f", str(broken)], env=env, timeout=30)
    assert r.returncode != 0


# --- the rendered file has what it claims ---------------------------------------------------------


def test_three_nats_nodes_routed_to_each_other_with_credentials(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    cluster_conf = (COMPOSE / "nats" / "cluster.conf").read_text()
    assert "routes: [ $NATS_ROUTE_N1, $NATS_ROUTE_N2, $NATS_ROUTE_N3 ]" in cluster_conf
    assert "authorization { user: route, password: $NATS_ROUTE_PASSWORD }" in cluster_conf
    assert "{ user: jetkube, password: $JETKUBE_NATS_PASSWORD }" in cluster_conf
    data_volumes = set()
    for node in NODES:
        svc = services[node]
        assert svc["image"].startswith("nats:")
        assert svc["command"] == ["nats-server", "--config", f"/etc/nats/{node}.conf"]
        assert f"server_name: {node}" in (COMPOSE / "nats" / f"{node}.conf").read_text()
        mounts = _mounts(svc)
        assert mounts[f"/etc/nats/{node}.conf"] == (str(COMPOSE / "nats" / f"{node}.conf"), "ro")
        assert mounts["/etc/nats/cluster.conf"] == (str(COMPOSE / "nats" / "cluster.conf"), "ro")
        data_volumes.add(mounts["/data"][0])
        env = svc["environment"]
        assert env["JETKUBE_NATS_PASSWORD"] == SECRETS["JETKUBE_NATS_PASSWORD"]
        assert env["NATS_ROUTE_PASSWORD"] == SECRETS["JETKUBE_NATS_ROUTE_PASSWORD"]
        pw = SECRETS["JETKUBE_NATS_ROUTE_PASSWORD"]
        assert [env[f"NATS_ROUTE_N{i}"] for i in (1, 2, 3)] == [f"nats-route://route:{pw}@{n}:6222" for n in NODES]
        # Monitoring is published, on loopback only.
        assert _ports(svc)[8222][0] == "127.0.0.1"
        assert "8222/healthz" in " ".join(svc["healthcheck"]["test"])
        assert svc["stop_grace_period"] == "45s" and "lame_duck_duration: 30s" in cluster_conf
    assert len(data_volumes) == 3 and data_volumes <= set(rendered["volumes"])


def test_gateways_share_the_init_files_and_the_r3_stream(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    gw, init = services["gateway"], services["init"]
    assert gw["deploy"]["replicas"] >= 2
    assert gw["image"] == init["image"] and gw["build"] == init["build"]
    assert gw["build"]["dockerfile"] == "Dockerfile" and (Path(gw["build"]["context"]) / "Dockerfile").is_file()
    flags = _flags(gw["command"])
    assert gw["command"][0] == "serve"
    assert flags["--nats-url"] == ",".join(f"nats://{n}:4222" for n in NODES)
    assert flags["--stream-replicas"] == "3" and flags["--host"] == "0.0.0.0"
    data_dir = flags["--data-dir"]
    # Every replica mounts the one pki volume, read-only, where serve looks for it (DATA_DIR/pki),
    # and its key and password files come from there.
    pki_volume, mode = _mounts(gw)[f"{data_dir}/pki"]
    assert mode == "ro" and pki_volume in rendered["volumes"]
    assert flags["--service-account-key-file"] == f"{data_dir}/pki/sa.key"
    assert flags["--nats-password-file"] == f"{data_dir}/pki/nats-password" and flags["--nats-user"] == "jetkube"
    assert gw["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert {n: gw["depends_on"][n]["condition"] for n in NODES} == dict.fromkeys(NODES, "service_healthy")
    # The one init step writes that volume: pki init on the same data dir, the NATS password file.
    script = init["command"][0]
    assert init["entrypoint"] == ["/bin/sh", "-ec"] and init["restart"] == "no"
    assert f"jetkube pki init --data-dir {data_dir} --san " in script
    assert f"> {data_dir}/pki/nats-password" in script
    assert _mounts(init)[f"{data_dir}/pki"] == (pki_volume, "rw")
    assert init["environment"]["JETKUBE_NATS_PASSWORD"] == SECRETS["JETKUBE_NATS_PASSWORD"]
    assert init["environment"]["JETKUBE_LB_HOST"] == "localhost"
    assert "ports" not in gw  # reached through the balancer only


def test_the_balancer_targets_every_gateway_with_readyz_checks(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    lb, gw, init = services["lb"], services["gateway"], services["init"]
    cfg_path = Path(_mounts(lb)["/usr/local/etc/haproxy/haproxy.cfg"][0])
    assert cfg_path == COMPOSE / "haproxy.cfg"
    sections = _haproxy_sections(cfg_path.read_text())
    defaults = {" ".join(line[:2]) if line[0] == "timeout" else line[0]: line[2:] if line[0] == "timeout" else line[1:]
                for line in sections["defaults"]}
    assert defaults["mode"] == ["tcp"]
    assert defaults["timeout client"] == ["1h"] and defaults["timeout server"] == ["1h"]
    frontend = sections["frontend kube-apiserver"]
    assert ["bind", ":6443"] in frontend  # no `ssl crt`: TLS passes through to the gateways
    backend = sections["backend gateways"]
    assert ["balance", "leastconn"] in backend and ["option", "httpchk"] in backend
    send = next(line for line in backend if line[:2] == ["http-check", "send"])
    assert send[2:6] == ["meth", "GET", "uri", "/readyz"]
    assert ["hdr", "Authorization", '"Bearer', '${JETKUBE_PROBE_TOKEN}"'] == send[-4:]
    assert ["http-check", "expect", "status", "200"] in backend
    default_server = next(line for line in backend if line[0] == "default-server")
    assert {"check", "check-ssl", "on-marked-down", "shutdown-sessions"} <= set(default_server)
    # Every replica: the template has a slot for each, on the gateway service and its port.
    template = next(line for line in backend if line[0] == "server-template")
    slots, target = int(template[2]), template[3]
    assert slots >= gw["deploy"]["replicas"]
    assert target == f"gateway:{_flags(gw['command'])['--port']}"
    # The check's token: the file init writes, on a volume only init and the balancer mount.
    script = lb["command"][0]
    assert 'JETKUBE_PROBE_TOKEN="$$(cat /run/jetkube-probe/token)"' in script and "export JETKUBE_PROBE_TOKEN" in script
    probe_volume = _mounts(lb)["/run/jetkube-probe"]
    assert probe_volume[1] == "ro"
    assert _mounts(init)["/var/lib/jetkube/probe"] == (probe_volume[0], "rw")
    assert "--probe-token-file /var/lib/jetkube/probe/token" in init["command"][0]
    assert not any(probe_volume[0] == src for src, _ in _mounts(gw).values())
    assert _ports(lb) == {6443: ("127.0.0.1", 6443), 8404: ("127.0.0.1", 8404)}
    assert lb["depends_on"]["gateway"]["condition"] == "service_started"


def test_the_image_installs_what_the_project_packages() -> None:
    """The Dockerfile copies every package pyproject installs (`pip install .` would miss one quietly)."""
    import tomllib

    root = COMPOSE.parent
    packages = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    lines = (root / "Dockerfile").read_text().splitlines()
    assert lines[next(i for i, line in enumerate(lines) if line.startswith("FROM"))] == "FROM python:3.11-slim"
    copied = {line.split()[1] for line in lines if line.startswith("COPY ")}
    assert copied == {"pyproject.toml", *packages}
    assert "RUN pip install . && rm -rf /src" in lines
    assert 'ENTRYPOINT ["jetkube"]' in lines
    assert "mkdir -p /var/lib/jetkube/pki /var/lib/jetkube/probe" in (root / "Dockerfile").read_text()


# --- the same configs, run: a 3-node cluster and two gateways on the init files --------------------


@contextmanager
def _nats_cluster(tmp: Path, rendered: dict[str, Any]) -> Iterator[list[tuple[str, int]]]:
    """The compose node configs as processes on loopback: only the listen addresses, the store
    directory and the route hosts are changed. Yields (client URL, monitoring port) per node."""
    ports = {n: (free_port(), free_port(), free_port()) for n in NODES}  # client, monitoring, route
    common = (COMPOSE / "nats" / "cluster.conf").read_text()
    with ExitStack() as stack:
        nodes = []
        for node in NODES:
            client, http, route = ports[node]
            d = tmp / node
            d.mkdir()
            text = common
            for old, new in (("0.0.0.0:4222", f"127.0.0.1:{client}"), ("0.0.0.0:8222", f"127.0.0.1:{http}"),
                             ("0.0.0.0:6222", f"127.0.0.1:{route}"), ("store_dir: /data", f'store_dir: "{d}/data"')):
                assert text.count(old) == 1, old
                text = text.replace(old, new)
            (d / "cluster.conf").write_text(text)
            shutil.copy(COMPOSE / "nats" / f"{node}.conf", d)
            env = {**_compose_env(), **rendered["services"][node]["environment"]}
            for peer in NODES:
                key = f"NATS_ROUTE_N{peer[1]}"
                env[key] = env[key].replace(f"@{peer}:6222", f"@127.0.0.1:{ports[peer][2]}")
            log = stack.enter_context((d / "log").open("wb"))
            proc = stack.enter_context(subprocess.Popen([nats_server_binary(), "-c", f"{node}.conf"], cwd=d, env=env,
                                                        stdout=log, stderr=subprocess.STDOUT))
            stack.callback(proc.wait, timeout=10)
            stack.callback(proc.kill)
            nodes.append((f"nats://127.0.0.1:{client}", http))
        yield nodes


async def _wait_healthy(http_port: int, peers: int = 3) -> dict[str, Any]:
    """Poll another process's /healthz until the node has JetStream with a meta leader and its meta
    group has heard from ``peers`` nodes (healthz can be 200 before the last route is up); its /jsz.
    Callers bound it with ``trio.fail_after``."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=2) as c:
        while True:
            try:
                if (await c.get("/healthz")).status_code == 200:
                    jsz = (await c.get("/jsz")).json()
                    if (jsz.get("meta_cluster") or {}).get("cluster_size", 0) >= peers:
                        return jsz
            except httpx.TransportError:
                pass
            await trio.sleep(0.05)


async def _nats_connect_reply(url: str, connect: str) -> bytes:
    """Log in over the raw NATS protocol; the server's first answer (PONG or -ERR)."""
    host, port = url.removeprefix("nats://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        info = await stream.receive_some(65536)
        assert info.startswith(b"INFO ")
        await stream.send_all(f"CONNECT {connect}\r\nPING\r\n".encode())
        return await stream.receive_some(65536)


async def test_node_configs_form_a_cluster_and_two_gateways_share_the_init_files(
        rendered: dict[str, Any], tmp_path: Path) -> None:
    data_dir = tmp_path / "shared"
    probe_file, monitoring_file = tmp_path / "probe" / "token", tmp_path / "monitoring" / "token"
    assert jetkube_main(["pki", "init", "--data-dir", str(data_dir), "--san", "jetkube.example.com",
                         "--server", "https://jetkube.example.com:6443", "--probe-token-file", str(probe_file),
                         "--monitoring-token-file", str(monitoring_file)]) == 0
    password = data_dir / "pki" / "nats-password"  # what the init step writes beside the pki files
    password.write_text(SECRETS["JETKUBE_NATS_PASSWORD"])
    kubeconfig = yaml.safe_load((data_dir / "pki" / "kubeconfig").read_text())
    admin = kubeconfig["users"][0]["user"]["token"]
    with _nats_cluster(tmp_path, rendered) as nodes:
        with trio.fail_after(60):
            for _, http_port in nodes:
                jsz = await _wait_healthy(http_port)
                assert jsz["meta_cluster"]["cluster_size"] == 3
            # Clients must log in: anonymous and wrong passwords are refused, the gateways' user is not.
            url = nodes[0][0]
            assert b"Authorization Violation" in await _nats_connect_reply(url, '{"verbose":false}')
            assert b"Authorization Violation" in await _nats_connect_reply(
                url, '{"verbose":false,"user":"jetkube","pass":"wrong"}')
            login = json.dumps({"verbose": False, "user": "jetkube", "pass": SECRETS["JETKUBE_NATS_PASSWORD"]})
            ok = await _nats_connect_reply(url, login)
            assert ok.startswith(b"PONG")

            # Two replicas, each on another node, both on the one set of init files (read-only use).
            auth = NatsAuth(user="jetkube", password_file=str(password))
            replicas: list[Running] = []
            stop = trio.Event()
            # The replicas' own nursery, inside the cluster's lifetime: they stop before NATS does.
            async with trio.open_nursery() as replica_nursery:
                try:
                    for i, (node_url, _) in enumerate(nodes[:2]):
                        settings = Settings(data_dir=str(data_dir), port=0, nats_url=node_url, nats_auth=auth,
                                            stream_replicas=3, kubeconfig=str(tmp_path / f"kubeconfig-{i}"),
                                            service_account_key_file=str(data_dir / "pki" / "sa.key"),
                                            graceful_timeout_s=0.5)
                        replicas.append(await replica_nursery.start(partial(serve, settings, shutdown=stop)))
                    await _check_replicas(replicas, data_dir, admin, probe_file.read_text(),
                                          monitoring_file.read_text())
                    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{nodes[2][1]}") as mon:
                        jsz = (await mon.get("/jsz?streams=true&config=true")).json()
                    streams = [s for a in jsz["account_details"] for s in a["stream_detail"]]
                    assert [s["config"]["num_replicas"] for s in streams if s["name"] == "JETKUBE"] == [3]
                finally:
                    stop.set()


async def _check_replicas(replicas: list[Running], data_dir: Path, admin: str, probe: str,
                          monitoring: str) -> None:
    pem = (data_dir / "pki" / "apiserver.crt").read_text()
    ctx = ssl.create_default_context(cafile=str(data_dir / "pki" / "ca.crt"))
    cm = "/api/v1/namespaces/default/configmaps"
    written = []
    for i, running in enumerate(replicas):
        port = int(running.https_url.rsplit(":", 1)[1])
        # The same certificate on every replica (TLS passes through the balancer untouched).
        served = await trio.to_thread.run_sync(partial(ssl.get_server_certificate, ("127.0.0.1", port), timeout=5))
        assert ssl.PEM_cert_to_DER_cert(served) == ssl.PEM_cert_to_DER_cert(pem)
        async with httpx.AsyncClient(base_url=running.https_url, verify=ctx, timeout=10) as c:
            # The init kubeconfig's admin token works on every replica.
            r = await c.post(cm, json={"metadata": {"name": f"from-{i}"}}, headers={"Authorization": f"Bearer {admin}"})
            assert r.status_code == 201, r.text
            written.append(r.json())
            # The balancer's token reads /readyz and nothing else; without a token: 401.
            probe_hdr = {"Authorization": f"Bearer {probe}"}
            r = await c.get("/readyz", headers=probe_hdr)
            assert (r.status_code, r.text) == (200, "ok")
            r = await c.get(cm, headers=probe_hdr)
            assert r.status_code == 403 and PROBE_USER in r.json()["message"]
            assert (await c.get("/readyz")).status_code == 401
            # Prometheus's token reads /metrics (as a user in system:monitoring) and no object.
            mon_hdr = {"Authorization": f"Bearer {monitoring}"}
            r = await c.get("/metrics", headers=mon_hdr)
            assert r.status_code == 200 and "apiserver_request_total" in r.text
            r = await c.get(cm, headers=mon_hdr)
            assert r.status_code == 403 and MONITORING_USER in r.json()["message"]
            assert (await c.get("/metrics", headers=probe_hdr)).status_code == 403
    # Each replica reads what the other wrote, with its resourceVersion.
    for running in replicas:
        async with httpx.AsyncClient(base_url=running.https_url, verify=ctx, timeout=10,
                                     headers={"Authorization": f"Bearer {admin}"}) as c:
            for obj in written:
                r = await c.get(f"{cm}/{obj['metadata']['name']}")
                assert r.status_code == 200 and r.json() == obj



# --- monitoring: Prometheus scrapes every gateway, Grafana shows what it serves --------------------

MONITORING = "/run/jetkube-monitoring"  # where prometheus.yml expects the init step's token and CA
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
                "offset", "inf", "nan"}


def _prometheus_config() -> dict[str, Any]:
    doc = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    assert isinstance(doc, dict)
    return doc


def test_prometheus_and_grafana_render_on_loopback_with_their_files(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    prom, graf, init, gw = services["prometheus"], services["grafana"], services["init"], services["gateway"]
    assert prom["image"].startswith("prom/prometheus:v") and graf["image"].startswith("grafana/grafana:")
    assert _ports(prom) == {9090: ("127.0.0.1", 9090)} and _ports(graf) == {3000: ("127.0.0.1", 3000)}
    assert _mounts(prom)["/etc/prometheus/prometheus.yml"] == (str(COMPOSE / "prometheus.yml"), "ro")
    assert "--config.file=/etc/prometheus/prometheus.yml" in prom["command"]
    # The token and the CA come from init, on a volume only init (rw) and Prometheus (ro) mount.
    monitoring, mode = _mounts(prom)[MONITORING]
    assert mode == "ro" and monitoring in rendered["volumes"]
    init_dir = next(target for target, (src, _) in _mounts(init).items() if src == monitoring)
    assert _mounts(init)[init_dir] == (monitoring, "rw")
    assert not any(src == monitoring for src, _ in [*_mounts(gw).values(), *_mounts(services["lb"]).values()])
    script = init["command"][0]
    assert f"--monitoring-token-file {init_dir}/token" in script
    assert f"cp {_flags(gw['command'])['--data-dir']}/pki/ca.crt {init_dir}/ca.crt" in script
    assert prom["depends_on"]["init"]["condition"] == "service_completed_successfully"
    # Grafana: datasource and dashboard provisioned from these files; the admin password from .env.
    mounts = _mounts(graf)
    assert mounts["/etc/grafana/provisioning"] == (str(COMPOSE / "grafana" / "provisioning"), "ro")
    dashboards = yaml.safe_load((COMPOSE / "grafana" / "provisioning" / "dashboards" / "jetkube.yml").read_text())
    folder = dashboards["providers"][0]["options"]["path"]
    assert mounts[f"{folder}/jetkube.json"] == (str(COMPOSE / "grafana" / "jetkube.json"), "ro")
    sources = yaml.safe_load((COMPOSE / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    [source] = sources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    dash = json.loads((COMPOSE / "grafana" / "jetkube.json").read_text())
    uids = {t["datasource"]["uid"] for p in dash["panels"] for t in p["targets"]}
    assert uids == {source["uid"]}
    assert graf["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == SECRETS["JETKUBE_GRAFANA_PASSWORD"]


def test_the_scrape_job_targets_every_gateway_as_a_monitoring_user(rendered: dict[str, Any]) -> None:
    gw = rendered["services"]["gateway"]
    [job] = [j for j in _prometheus_config()["scrape_configs"] if j["job_name"] == "jetkube-apiserver"]
    assert job["scheme"] == "https" and job.get("metrics_path", "/metrics") == "/metrics"
    # DNS discovery of the service name: one A record per replica, on the gateways' port (not the balancer).
    [sd] = job["dns_sd_configs"]
    assert sd["names"] == ["gateway"] and sd["type"] == "A" and str(sd["port"]) == _flags(gw["command"])["--port"]
    assert job["authorization"] == {"type": "Bearer", "credentials_file": f"{MONITORING}/token"}
    # The replicas' certificate names `jetkube` (issue_cert), not the containers' addresses.
    assert job["tls_config"] == {"ca_file": f"{MONITORING}/ca.crt", "server_name": "jetkube"}
    assert not job["tls_config"].get("insecure_skip_verify")


async def test_promtool_accepts_the_prometheus_config_with_the_files_init_writes(tmp_path: Path) -> None:
    tool = await promtool()
    data_dir, mon = tmp_path / "data", tmp_path / "monitoring"
    assert jetkube_main(["pki", "init", "--data-dir", str(data_dir),
                         "--monitoring-token-file", str(mon / "token")]) == 0
    shutil.copy(data_dir / "pki" / "ca.crt", mon / "ca.crt")
    text = (COMPOSE / "prometheus.yml").read_text()
    assert text.count(MONITORING + "/") == 2
    config = tmp_path / "prometheus.yml"
    config.write_text(text.replace(MONITORING + "/", f"{mon}/"))
    r = _run([tool, "check", "config", str(config)], timeout=60)
    assert r.returncode == 0 and "SUCCESS" in r.stdout + r.stderr, r.stdout + r.stderr
    # The check is real: a misspelled key, or a token file init did not write, fails it.
    config.write_text(text.replace(MONITORING + "/", f"{mon}/").replace("server_name:", "server_nam:"))
    assert _run([tool, "check", "config", str(config)], timeout=60).returncode != 0
    config.write_text(text)
    assert _run([tool, "check", "config", str(config)], timeout=60).returncode != 0


def promql_series(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers left once strings, label matchers,
    ranges and grouping clauses are removed, other than functions (followed by "(") and keywords."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for m in re.finditer(r"(?<![\w.$])([a-zA-Z_:][\w:]*)\s*(\()?", expr):
        if m.group(2) is None and m.group(1).lower() not in PROMQL_WORDS:
            names.add(m.group(1))
    return names


def test_promql_series_finds_the_metric_names_only() -> None:
    assert promql_series('histogram_quantile(0.99, sum by (verb, le) (rate(a_bucket{verb!~"W|C", x="b(c)"}'
                         '[$__rate_interval])))') == {"a_bucket"}
    assert promql_series("sum(rate(x_total[5m])) / on (instance) group_left b + 2^30 > bool 1e3") == {"x_total", "b"}
    assert promql_series("label_values(jetkube_nats_connected, instance)") == {"jetkube_nats_connected", "instance"}


def _served_series(exposition: str) -> set[str]:
    """Every series name an exposition can have: its samples, and each declared family's (with a
    histogram's _bucket/_sum/_count), so a family with no sample yet (no watcher open) still counts."""
    names = {line.split("{")[0].split()[0] for line in exposition.splitlines() if line and not line.startswith("#")}
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names |= {name, *(f"{name}_{s}" for s in ("bucket", "sum", "count"))} if kind == "histogram" else {name}
    return names


async def test_every_dashboard_query_names_series_jetkube_serves(server: Running, api: httpx.AsyncClient) -> None:
    dash = json.loads((COMPOSE / "grafana" / "jetkube.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    variables = dash["templating"]["list"]
    labels = {"instance", "job"}  # target labels Prometheus adds; label_values() names one of them
    queries = [v["query"]["query"] for v in variables if v["type"] == "query"]
    assert len(exprs) >= 7 and queries
    with trio.fail_after(30):
        assert (await api.post("/api/v1/namespaces/default/configmaps",
                               json={"metadata": {"name": "dash"}})).status_code == 201
        r = await api.get("/metrics")
    assert r.status_code == 200
    served = _served_series(r.text)
    assert {"apiserver_request_total", "apiserver_request_duration_seconds_bucket", "jetkube_nats_connected"} <= served
    for expr in [*exprs, *queries]:
        named = promql_series(expr) - labels
        assert named, expr
        assert named <= served, f"{sorted(named - served)} in {expr!r} are not served by jetkube"
    # The graphs operators look at first are all there.
    for series in ("apiserver_request_total", "apiserver_request_duration_seconds_bucket",
                   "apiserver_current_inflight_requests", "apiserver_registered_watchers",
                   "apiserver_watch_events_total", "jetkube_projection_lag_events",
                   "jetkube_consistent_read_wait_seconds_bucket", "jetkube_log_append_duration_seconds_bucket",
                   "jetkube_log_append_conflicts_total", "jetkube_nats_connected"):
        assert any(series in promql_series(e) for e in exprs), series
