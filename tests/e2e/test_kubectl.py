"""Real kubectl 1.27 … 1.33 against a real jetkube on its embedded default, over HTTPS with the
generated kubeconfig and default flags (validation on).

One jetkube process (its own nats-server, certificates and kubeconfig, as `make serve` starts it)
serves the whole module; each kubectl version runs the scenario in a namespace of its own.

A missing ``kubectl.<version>`` binary is a failure that names it and the folders searched (PATH, and
the folder of the Google Cloud SDK's ``kubectl``, where 1.27 … 1.33 live on every machine here).
``JETKUBE_SKIP_KUBECTL=1`` is the one explicit opt-out: it skips the missing versions, by name.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from tests.conftest import kubectl_missing

pytestmark = pytest.mark.e2e

VERSIONS = ["1.27", "1.28", "1.29", "1.30", "1.31", "1.32", "1.33"]


def kubectl_dirs() -> list[Path]:
    """Where versioned kubectl binaries are looked for: PATH first, then the folder the `kubectl` on
    PATH really lives in (the Google Cloud SDK's bin, whose `kubectl.1.27` … are not on PATH), then
    the SDK's usual folder."""
    dirs = [Path(d) for d in os.environ.get("PATH", "").split(os.pathsep) if d]
    found = shutil.which("kubectl")
    if found:
        dirs.append(Path(os.path.realpath(found)).parent)
    dirs.append(Path("/usr/lib/google-cloud-sdk/bin"))
    return list(dict.fromkeys(dirs))


def kubectl_binary(version: str) -> str:
    """The path of ``kubectl.<version>``; a missing binary fails the test, naming what is missing,
    unless ``JETKUBE_SKIP_KUBECTL=1`` opts out explicitly."""
    dirs = kubectl_dirs()
    for d in dirs:
        b = d / f"kubectl.{version}"
        if b.is_file() and os.access(b, os.X_OK):
            return str(b)
    on_path = {Path(d) for d in os.environ.get("PATH", "").split(os.pathsep) if d}
    extra = ", ".join(str(d) for d in dirs if d not in on_path)
    missing = f"kubectl.{version} is not installed: looked on PATH and in {extra}"
    kubectl_missing(missing)


class Lines:
    """Lines of a child's text stream, each read bounded by a timeout: a thread drains the pipe into
    a queue, so a child that stops writing fails the test instead of hanging it."""

    def __init__(self, stream: IO[str]) -> None:
        self._q: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._drain, args=(stream,), daemon=True).start()

    def _drain(self, stream: IO[str]) -> None:
        for line in stream:
            self._q.put(line)
        self._q.put("")  # end of stream

    def next(self, timeout: float = 30) -> str:
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line within {timeout}s") from None

    def rest(self, timeout: float = 5) -> str:
        out = []
        while line := self.next(timeout):
            out.append(line)
        return "".join(out)


class Server:
    def __init__(self, data_dir: Path, proc: subprocess.Popen[str], ready: str) -> None:
        self.data_dir, self.proc = data_dir, proc
        self.kubeconfig = data_dir / "kubeconfig"
        self.https = ready.split("https=")[1].split()[0]


@pytest.fixture(scope="module")
def jetkube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("jetkube")
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--data-dir", str(data), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    out = Lines(proc.stdout)  # keeps draining the server's output, so it never blocks on a full pipe
    try:
        ready = out.next(timeout=60)
    except AssertionError:
        ready = "(no ready line within 60 s)\n"
    if not ready.startswith("jetkube ready:"):
        proc.kill()
        proc.wait(5)
        pytest.fail(f"jetkube did not start: {ready}{out.rest()}")
    try:
        yield Server(data, proc, ready)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Kubectl:
    def __init__(self, binary: str, server: Server, namespace: str, home: Path) -> None:
        self.binary, self.server, self.namespace = binary, server, namespace
        # A fresh HOME per version: no discovery or OpenAPI cache shared between kubectl versions.
        self.env = {**os.environ, "KUBECONFIG": str(server.kubeconfig), "HOME": str(home),
                    "KUBECACHEDIR": str(home / "cache")}

    def run(self, *args: str, ns: bool = True, check: bool = True, input: str | None = None,
            env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = [self.binary, *(["-n", self.namespace] if ns else []), *args]
        p = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=timeout, check=False,
                           env={**self.env, **(env or {})})
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} -> {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
        return p


def table(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()]


@pytest.mark.parametrize("version", VERSIONS)
def test_kubectl_scenario(version: str, jetkube: Server, tmp_path: Path) -> None:
    binary = kubectl_binary(version)
    ns = "demo-" + version.replace(".", "-")
    k = Kubectl(binary, jetkube, ns, tmp_path)

    # Discovery.
    res = table(k.run("api-resources", ns=False).stdout)
    assert res[0][:2] == ["NAME", "SHORTNAMES"]
    rows = {r[0]: r for r in res[1:]}
    assert rows["configmaps"][1:] == ["cm", "v1", "true", "ConfigMap"]
    assert rows["namespaces"][1:] == ["ns", "v1", "false", "Namespace"]
    assert "leases" in rows and "roles" in rows

    # Create (typed commands: protobuf bodies from 1.32 on).
    assert k.run("create", "ns", ns, ns=False).stdout.strip() == f"namespace/{ns} created"
    assert k.run("create", "configmap", "c", "--from-literal=a=b").stdout.strip() == "configmap/c created"
    assert k.run("create", "secret", "generic", "s", "--from-literal=p=q").stdout.strip() == "secret/s created"
    got = json.loads(k.run("get", "cm", "c", "-o", "json").stdout)
    assert got["data"] == {"a": "b"} and got["metadata"]["namespace"] == ns

    # Client-side apply of a multi-document manifest directory, then again changed, then unchanged.
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    doc = ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels:\n    app: x\n"
           "data:\n  k: {value}\n")
    (manifests / "all.yaml").write_text(doc.format(name="m2", value="v") + "---\n" + doc.format(name="m1", value="v"))
    out = k.run("apply", "-f", str(manifests)).stdout
    assert "configmap/m2 created" in out and "configmap/m1 created" in out
    (manifests / "all.yaml").write_text(doc.format(name="m2", value="v2") + "---\n" + doc.format(name="m1",
                                                                                                value="v"))
    out = k.run("apply", "-f", str(manifests)).stdout
    assert "configmap/m2 configured" in out and "configmap/m1 unchanged" in out
    assert json.loads(k.run("get", "cm", "m2", "-o", "json").stdout)["data"] == {"k": "v2"}

    # Get: server-side Table, wide, label selector, sort.
    rows = table(k.run("get", "cm", "-o", "wide", "-l", "app=x", "--sort-by=.metadata.name").stdout)
    assert rows[0] == ["NAME", "DATA", "AGE"]
    assert [r[0] for r in rows[1:]] == ["m1", "m2"] and [r[1] for r in rows[1:]] == ["1", "1"]
    rows = table(k.run("get", "secrets").stdout)
    assert rows[0] == ["NAME", "TYPE", "DATA", "AGE"] and rows[1][:3] == ["s", "Opaque", "1"]
    rows = table(k.run("get", "ns", ns, ns=False).stdout)
    assert rows[0] == ["NAME", "STATUS", "AGE"] and rows[1][:2] == [ns, "Active"]
    rows = table(k.run("get", "sa").stdout)
    assert rows[0][:2] == ["NAME", "SECRETS"] and rows[1][:2] == ["default", "0"]
    names = k.run("get", "cm", "-A", "-o", "name").stdout.split()
    assert "configmap/c" in names

    # Watch a single object (resourceVersion=0, name selector) and the list (from the list's version).
    # The namespace also holds kube-root-ca.crt (the root-CA controller made it when the namespace came).
    for args, first_rows in ((["get", "cm", "c", "-w"], ["c"]),
                             (["get", "cm", "-w"], ["c", "kube-root-ca.crt", "m1", "m2"])):
        watch = subprocess.Popen([binary, "-n", ns, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env=k.env)
        try:
            assert watch.stdout is not None
            lines = Lines(watch.stdout)
            assert lines.next().split() == ["NAME", "DATA", "AGE"]
            assert [lines.next().split()[0] for _ in first_rows] == first_rows
            k.run("label", "cm", "c", "tier=web", f"step={len(first_rows)}", "--overwrite")
            assert lines.next().split()[:2] == ["c", "1"]
        finally:
            watch.terminate()
            watch.wait(10)

    # RBAC kinds are stored and served (typed commands: protobuf bodies from 1.32 on).
    assert k.run("create", "role", "r", "--verb=get", "--resource=configmaps").stdout.strip() == \
        "role.rbac.authorization.k8s.io/r created"
    assert k.run("create", "rolebinding", "rb", "--role=r", "--user=bob").stdout.strip() == \
        "rolebinding.rbac.authorization.k8s.io/rb created"
    role = json.loads(k.run("get", "role", "r", "-o", "json").stdout)
    assert role["rules"] == [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]
    rows = table(k.run("get", "rolebindings", "-o", "wide").stdout)
    assert rows[0][:3] == ["NAME", "ROLE", "AGE"] and rows[1][:2] == ["rb", "Role/r"]

    # Edit (strategic merge patch from kubectl's diff of the edited object).
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/^  a: b$/  a: edited/' \"$1\"\n")
    editor.chmod(0o755)
    out = k.run("edit", "cm", "c", env={"KUBE_EDITOR": str(editor), "EDITOR": str(editor)})
    assert out.stdout.strip() == "configmap/c edited"
    got = json.loads(k.run("get", "cm", "c", "-o", "json").stdout)
    assert got["data"] == {"a": "edited"} and got["metadata"]["labels"]["tier"] == "web"

    # Patch: JSON patch, merge patch, strategic (default).
    k.run("patch", "cm", "c", "--type=json", "-p", '[{"op":"add","path":"/data/j","value":"1"}]')
    k.run("patch", "cm", "c", "--type=merge", "-p", '{"data":{"m":"2"}}')
    assert k.run("patch", "cm", "c", "-p", '{"data":{"s":"3"}}').stdout.strip() == "configmap/c patched"
    got = json.loads(k.run("get", "cm", "c", "-o", "json").stdout)
    assert got["data"] == {"a": "edited", "j": "1", "m": "2", "s": "3"}

    # A stale resourceVersion: the conflict message kubectl prints.
    stale = dict(got, data={"x": "y"})
    k.run("patch", "cm", "c", "-p", '{"data":{"t":"4"}}')
    p = k.run("replace", "-f", "-", input=json.dumps(stale), check=False)
    assert p.returncode == 1
    assert "Error from server (Conflict)" in p.stderr and "the object has been modified" in p.stderr

    # diff: 1 with a difference, 0 without.
    cm_file = tmp_path / "cm.yaml"
    cm_file.write_text(doc.format(name="m1", value="changed"))
    p = k.run("diff", "-f", str(cm_file), check=False)
    assert p.returncode == 1 and "+  k: changed" in p.stdout
    cm_file.write_text(doc.format(name="m1", value="v"))
    assert k.run("diff", "-f", str(cm_file), check=False).returncode == 0

    # Explain (OpenAPI v3 from 1.29, v2 protobuf before).
    out = k.run("explain", "configmap.data", ns=False).stdout
    assert "FIELD:" in out and "data" in out and "configuration data" in out

    # Auth.
    who = table(k.run("auth", "whoami", ns=False).stdout)
    assert who[1] == ["Username", "admin"]
    assert k.run("auth", "can-i", "create", "configmaps").stdout.strip() == "yes"
    token = k.run("create", "token", "default").stdout.strip()
    assert token.count(".") == 2
    who = table(k.run("auth", "whoami", f"--token={token}", ns=False).stdout)
    assert who[1] == ["Username", f"system:serviceaccount:{ns}:default"]
    p = k.run("auth", "can-i", "create", "configmaps", f"--token={token}", check=False)
    assert p.returncode == 1 and p.stdout.strip() == "no"

    # Raw paths.
    assert k.run("get", "--raw", "/readyz", ns=False).stdout.strip() == "ok"

    # Delete and wait.
    assert k.run("delete", "cm", "c").stdout.strip() == 'configmap "c" deleted'
    k.run("delete", "cm", "m1", "--wait=false")
    k.run("wait", "--for=delete", "cm/m1", "--timeout=30s")  # exits 0 only once it saw the deletion
    p = k.run("get", "cm", "m1", check=False)
    assert p.returncode == 1 and 'configmaps "m1" not found' in p.stderr
    out = k.run("delete", "ns", ns, ns=False, timeout=90).stdout
    assert out.strip() == f'namespace "{ns}" deleted'


@pytest.mark.parametrize("version", ["1.32", "1.33"])
def test_describe_reads_protobuf(version: str, jetkube: Server, tmp_path: Path) -> None:
    # kubectl 1.32+ describers read through the typed clientset, which asks for protobuf first
    # (Accept: application/vnd.kubernetes.protobuf,application/json): get, and list of events.
    k = Kubectl(kubectl_binary(version), jetkube, "default", tmp_path)
    k.run("create", "configmap", f"pb-{version.replace('.', '')}", "--from-literal=a=1", "--from-literal=b=2")
    p = k.run("describe", "configmap", f"pb-{version.replace('.', '')}", "-v=8")
    assert "Content-Type: application/vnd.kubernetes.protobuf" in p.stderr, p.stderr[-3000:]
    out = p.stdout
    assert f"Name:         pb-{version.replace('.', '')}" in out and "Namespace:    default" in out
    assert "a:\n----\n1" in out and "b:\n----\n2" in out
    out = k.run("describe", "namespace", "default", ns=False).stdout
    assert "Name:         default" in out and "Status:       Active" in out


def test_a_missing_kubectl_fails_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kubectl version that is not installed fails the run (naming it and where we looked);
    only JETKUBE_SKIP_KUBECTL=1 turns that into a skip."""
    monkeypatch.delenv("JETKUBE_SKIP_KUBECTL", raising=False)
    with pytest.raises(pytest.fail.Exception, match=r"kubectl\.0\.0 is not installed: looked on PATH and in .*bin"):
        kubectl_binary("0.0")
    monkeypatch.setenv("JETKUBE_SKIP_KUBECTL", "1")
    with pytest.raises(pytest.skip.Exception, match=r"kubectl\.0\.0 is not installed"):
        kubectl_binary("0.0")
    monkeypatch.setenv("JETKUBE_SKIP_KUBECTL", "0")
    with pytest.raises(pytest.fail.Exception):
        kubectl_binary("0.0")


@pytest.mark.parametrize("version", VERSIONS)
def test_get_flowcontrol_objects(version: str, jetkube: Server, tmp_path: Path) -> None:
    # kube's printers for the APF kinds, and kube's bootstrap objects with their numbers.
    k = Kubectl(kubectl_binary(version), jetkube, "default", tmp_path)
    fs = table(k.run("get", "flowschemas", ns=False).stdout)
    assert fs[0] == ["NAME", "PRIORITYLEVEL", "MATCHINGPRECEDENCE", "DISTINGUISHERMETHOD", "AGE", "MISSINGPL"]
    rows = {r[0]: r for r in fs[1:]}
    assert rows["exempt"][1:4] == ["exempt", "1", "<none>"]
    assert rows["global-default"][1:4] == ["global-default", "9900", "ByUser"]
    pl = table(k.run("get", "prioritylevelconfigurations", ns=False).stdout)
    assert pl[0] == ["NAME", "TYPE", "NOMINALCONCURRENCYSHARES", "QUEUES", "HANDSIZE", "QUEUELENGTHLIMIT", "AGE"]
    levels = {r[0]: r for r in pl[1:]}
    assert levels["workload-low"][1:6] == ["Limited", "100", "128", "6", "50"]
    assert levels["exempt"][1:6] == ["Exempt", "<none>", "<none>", "<none>", "<none>"]
