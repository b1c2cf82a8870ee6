"""How the bus authenticates to NATS and secures the connection: decoded once at the entry point."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec
import nkeys


class NatsAuth(msgspec.Struct, frozen=True, kw_only=True):
    """Credentials and TLS for one NATS connection; every field is optional.

    User and password may also come in the URL (``nats://user:password@host:port``). Files are read
    when the bridge connects, so a rotated file is picked up by the next connection.
    """

    user: str | None = None
    password_file: str | None = None
    creds_file: str | None = None  # a NATS .creds file: user JWT + nkey seed (operator-mode servers)
    nkey_seed_file: str | None = None  # a user nkey seed (servers that list the user's public nkey)
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None

    def connect_options(self) -> dict[str, Any]:
        """Keyword arguments for ``nats.connect``. Reads the password file and checks the .creds and
        seed files (blocking, small); raises ``ValueError`` naming a file that is not what it should be."""
        opts: dict[str, Any] = {}
        if self.user is not None:
            opts["user"] = self.user
        if self.password_file is not None:
            opts["password"] = Path(self.password_file).read_text().strip()
        if self.creds_file is not None:
            _check_creds_file(self.creds_file)
            opts["user_credentials"] = self.creds_file
        if self.nkey_seed_file is not None:
            _check_seed(Path(self.nkey_seed_file).read_text(), self.nkey_seed_file)
            opts["nkeys_seed"] = self.nkey_seed_file
        if self.tls_ca_file or self.tls_cert_file:
            ctx = ssl.create_default_context(cafile=self.tls_ca_file)
            if self.tls_cert_file:
                ctx.load_cert_chain(self.tls_cert_file, self.tls_key_file)
            opts["tls"] = ctx
        return opts


def _check_creds_file(path: str) -> None:
    # nats-py parses the file itself when it connects, and on a file with a seed block but no user JWT
    # block it loops forever on its asyncio thread (nats-py 2.16, Client._read_creds_user_jwt); without
    # the seed block it fails with a bare TypeError. Say what is wrong, and with which file, before that.
    lines = Path(path).read_text().splitlines()
    if not _line_after(lines, "BEGIN NATS USER JWT"):
        raise ValueError(f"{path}: not a NATS .creds file (no user JWT block)")
    seed = _line_after(lines, "BEGIN USER NKEY SEED")
    if not seed:
        raise ValueError(f"{path}: not a NATS .creds file (no user nkey seed block)")
    _check_seed(seed, path)


def _line_after(lines: list[str], marker: str) -> str:
    """The (stripped) line after the first line containing ``marker``, as nats-py reads it; "" if none."""
    for i, line in enumerate(lines[:-1]):
        if marker in line:
            return lines[i + 1].strip()
    return ""


def _check_seed(seed: str, path: str) -> None:
    try:
        nkeys.decode_seed(seed.strip().encode())
    except nkeys.NkeysError as e:  # its message does not say which file
        raise ValueError(f"{path}: not an nkey seed ({e})") from None


def server_urls(url: str) -> list[str]:
    """The servers of a NATS URL that may list several, comma-separated (a cluster:
    ``nats://a:4222,nats://b:4222``); nats-py takes them as a list and fails over between them."""
    urls = [u.strip() for u in url.split(",") if u.strip()]
    if not urls:
        raise ValueError(f"no NATS server in {url!r}")
    return urls


def redact_url(url: str) -> str:
    """The URL (or comma-separated URLs) with any password replaced by ``***``: for logs and the
    ready line."""
    if "," in url:
        return ",".join(redact_url(u) for u in server_urls(url))
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
