"""A thin API client for the CLI's commands (``jetkube history``, ``jetkube audit``, ``jetkube tenant``).

It reads a kubeconfig as kubectl does (``--kubeconfig``, else ``$KUBECONFIG``'s first file, else
``~/.kube/config``; the current context, or ``--context``): the server, its CA (``certificate-
authority-data`` or ``certificate-authority``, or ``insecure-skip-tls-verify``) and the user's bearer
token or client certificate. HTTP with the standard library (``urllib``): one request at a time, JSON
answers; errors are the server's Status message (and its code, ``ClientError.code``).
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class ClientError(Exception):
    """A request the server refused (its Status message) or a kubeconfig that does not work."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ApiClient:
    server: str
    namespace: str
    context: ssl.SSLContext | None
    token: str = ""
    timeout_s: float = 60.0

    def get_json(self, path: str, params: dict[str, str] | None = None, accept: str = "application/json") -> Any:
        return json.loads(self.get(path, params, accept))

    def post_json(self, path: str, body: Any) -> Any:
        return json.loads(self.get(path, method="POST", data=json.dumps(body).encode()))

    def get(self, path: str, params: dict[str, str] | None = None, accept: str = "application/json", *,
            method: str = "GET", data: bytes | None = None) -> bytes:
        query = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v not in (None, "")})
        url = self.server.rstrip("/") + path + (f"?{query}" if query else "")
        headers = {"Accept": accept, "User-Agent": "jetkube-cli"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s, context=self.context) as resp:
                data: bytes = resp.read()
                return data
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                message = json.loads(body).get("message") or body.decode(errors="replace")
            except ValueError:
                message = body.decode(errors="replace")
            raise ClientError(f"Error from server ({e.code}): {message}", e.code) from None
        except urllib.error.URLError as e:
            raise ClientError(f"cannot reach {self.server}: {e.reason}") from None


def _data_or_file(entry: dict[str, Any], key: str) -> bytes | None:
    if entry.get(f"{key}-data"):
        return base64.b64decode(entry[f"{key}-data"])
    if entry.get(key):
        return Path(entry[key]).read_bytes()
    return None


def kubeconfig_path(kubeconfig: str | None = None) -> str:
    """The kubeconfig kubectl would read: the given one, else ``$KUBECONFIG``'s first, else ~/.kube/config."""
    return kubeconfig or (os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or
                          str(Path.home() / ".kube" / "config"))


def add_tenant_context(kubeconfig: str | None, context: str | None, tenant: str) -> str:
    """Add to the kubeconfig a context ``<context>@<tenant>`` (a cluster of that name too): the
    context's user on its server's ``/clusters/<tenant>``. Returns the new context's name. The file
    is replaced whole, mode 0600."""
    path = Path(kubeconfig_path(kubeconfig))
    doc = yaml.safe_load(path.read_text()) or {}
    base_name = context or doc.get("current-context", "")
    base = next((c for c in doc.get("contexts") or [] if c.get("name") == base_name), None)
    if base is None:
        raise ClientError(f"context {base_name!r} not found in {path}")
    cluster = next((c for c in doc.get("clusters") or [] if c.get("name") == base["context"].get("cluster")), None)
    if cluster is None:
        raise ClientError(f"the cluster of context {base_name!r} is not in {path}")
    name = f"{base_name}@{tenant}"
    server = cluster["cluster"]["server"].rstrip("/")
    if "/clusters/" in server:
        server = server[:server.index("/clusters/")]
    new_cluster = {"name": name, "cluster": {**cluster["cluster"], "server": f"{server}/clusters/{tenant}"}}
    new_context = {"name": name, "context": {**base["context"], "cluster": name}}
    doc["clusters"] = [c for c in doc.get("clusters") or [] if c.get("name") != name] + [new_cluster]
    doc["contexts"] = [c for c in doc.get("contexts") or [] if c.get("name") != name] + [new_context]
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    os.replace(tmp, path)
    return name


def load_client(kubeconfig: str | None = None, context: str | None = None,
                namespace: str | None = None) -> ApiClient:
    """An :class:`ApiClient` for the kubeconfig's (current) context."""
    path = kubeconfig_path(kubeconfig)
    try:
        doc = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as e:
        raise ClientError(f"cannot read the kubeconfig {path}: {e.strerror}") from None
    name = context or doc.get("current-context", "")
    ctx = next((c["context"] for c in doc.get("contexts") or [] if c.get("name") == name), None)
    if ctx is None:
        raise ClientError(f"context {name!r} not found in {path}")
    cluster = next((c["cluster"] for c in doc.get("clusters") or [] if c.get("name") == ctx.get("cluster")), {})
    user = next((u["user"] for u in doc.get("users") or [] if u.get("name") == ctx.get("user")), {}) or {}
    server = cluster.get("server", "")
    if not server:
        raise ClientError(f"the cluster of context {name!r} has no server")
    tls: ssl.SSLContext | None = None
    if server.startswith("https:"):
        tls = ssl.create_default_context()
        if cluster.get("insecure-skip-tls-verify"):
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE
        else:
            ca = _data_or_file(cluster, "certificate-authority")
            if ca is not None:
                tls.load_verify_locations(cadata=ca.decode())
        cert, key = _data_or_file(user, "client-certificate"), _data_or_file(user, "client-key")
        if cert is not None and key is not None:
            with tempfile.TemporaryDirectory() as d:  # ssl loads a chain from files only
                (Path(d) / "c").write_bytes(cert)
                (Path(d) / "k").write_bytes(key)
                tls.load_cert_chain(str(Path(d) / "c"), str(Path(d) / "k"))
    token = user.get("token", "")
    if not token and user.get("tokenFile"):
        token = Path(user["tokenFile"]).read_text().strip()
    return ApiClient(server, namespace or ctx.get("namespace") or "default", tls, token)
