"""How the bus authenticates to NATS and secures the connection: decoded once at the entry point."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec


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
        """Keyword arguments for ``nats.connect``. Reads the password file (blocking, small)."""
        opts: dict[str, Any] = {}
        if self.user is not None:
            opts["user"] = self.user
        if self.password_file is not None:
            opts["password"] = Path(self.password_file).read_text().strip()
        if self.creds_file is not None:
            opts["user_credentials"] = self.creds_file
        if self.nkey_seed_file is not None:
            opts["nkeys_seed"] = self.nkey_seed_file
        if self.tls_ca_file or self.tls_cert_file:
            ctx = ssl.create_default_context(cafile=self.tls_ca_file)
            if self.tls_cert_file:
                ctx.load_cert_chain(self.tls_cert_file, self.tls_key_file)
            opts["tls"] = ctx
        return opts


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``: for logs and the ready line."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
