"""The one place subjects are built and parsed.

A subject is ``<prefix>.<tenant>.<group>.<resource>.<namespace>.<name>``. The core group and the
cluster scope are written as the placeholder token ``_``. Every other token is encoded so that
any string (Kubernetes names may contain ``.``) round-trips: bytes outside ``[A-Za-z0-9-]`` become
``~XX`` (two lowercase hex digits of each UTF-8 byte). ``_`` and ``~`` are always escaped, so a lone
``_`` can only be a placeholder and decoding is unambiguous.

Every subject built here is at most :data:`MAX_SUBJECT_BYTES` long. nats-server closes a connection
whose protocol line exceeds ``max_control_line`` (4096 bytes by default: ``HPUB <subject> <reply>
<header bytes> <total bytes>``), and nats-py then closes the client for good; a subject over the
bound raises :class:`SubjectError` instead of ever reaching the wire.
"""

from __future__ import annotations

import re
from typing import NamedTuple

PLACEHOLDER = "_"
_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
_ESCAPE = re.compile(r"~([0-9a-f]{2})")


#: Half of nats-server's default max_control_line (4096): the rest is margin for the reply subject
#: (ours ``_INBOX.<22>.<n>``; JetStream's ``$JS.ACK.<stream>.<consumer>.<7 numbers>`` on delivery), the
#: sizes and the verb. A DNS-subdomain name (253 characters) fits even when every byte is escaped.
MAX_SUBJECT_BYTES = 2048


class SubjectError(ValueError):
    """A subject that this module did not build, or would not build (too long for the wire)."""


def _bounded(subject: str) -> str:
    if len(subject) > MAX_SUBJECT_BYTES:  # encoded tokens are ASCII: characters == bytes
        raise SubjectError(f"subject of {len(subject)} bytes exceeds the bound of {MAX_SUBJECT_BYTES}")
    return subject


def encode_token(value: str) -> str:
    """Encode one subject token; empty strings are not tokens."""
    if not value:
        raise SubjectError("empty subject token")
    if all(c in _SAFE for c in value.encode()):
        return value
    return "".join(chr(b) if b in _SAFE else f"~{b:02x}" for b in value.encode())


def decode_token(token: str) -> str:
    if "~" not in token:
        return token
    raw = bytearray()
    i = 0
    while i < len(token):
        if token[i] == "~":
            m = _ESCAPE.match(token, i)
            if m is None:
                raise SubjectError(f"bad escape in token {token!r}")
            raw.append(int(m.group(1), 16))
            i += 3
        else:
            raw += token[i].encode()
            i += 1
    return raw.decode()


#: The root tenant: what ``/`` serves, and where LogicalCluster objects live.
ROOT_TENANT = "root"
#: The root tenant's subject token. Logs written before tenants were logical clusters name the one
#: tenant "default"; root keeps that token so they read as root's (a LogicalCluster may not be
#: named "default"). Every other tenant's token is its name.
_ROOT_TOKEN = "default"
#: A tenant wildcard in a filter: every tenant (the cross-tenant watch of system controllers).
ANY_TENANT = "*"


def tenant_token(tenant: str) -> str:
    """The subject token of a tenant (never a wildcard: :func:`resource_filter` takes
    :data:`ANY_TENANT`)."""
    if tenant == ROOT_TENANT:
        return _ROOT_TOKEN
    return encode_token(tenant)


def tenant_of_token(token: str) -> str:
    return ROOT_TENANT if token == _ROOT_TOKEN else decode_token(token)


class Key(NamedTuple):
    """Where an object lives. ``group`` is "" for the core group, ``namespace`` "" for cluster scope."""

    tenant: str
    group: str
    resource: str
    namespace: str
    name: str


def _group_token(group: str) -> str:
    return PLACEHOLDER if not group else encode_token(group)


def _ns_token(namespace: str) -> str:
    return PLACEHOLDER if not namespace else encode_token(namespace)


def object_subject(prefix: str, key: Key) -> str:
    if key.tenant == ANY_TENANT:
        raise SubjectError("an object subject names one tenant")
    return _bounded(".".join((prefix, tenant_token(key.tenant), _group_token(key.group),
                              encode_token(key.resource), _ns_token(key.namespace), encode_token(key.name))))


def resource_filter(prefix: str, tenant: str, group: str, resource: str, namespace: str | None = None) -> str:
    """The filter subject for every object of a resource, or of one namespace of it (of every
    tenant with ``tenant`` :data:`ANY_TENANT`)."""
    base = ".".join((prefix, "*" if tenant == ANY_TENANT else tenant_token(tenant), _group_token(group), encode_token(resource)))
    if namespace is None:
        return _bounded(base + ".>")
    return _bounded(f"{base}.{_ns_token(namespace)}.*")


SYSTEM_TOKEN = "_sys"


def system_subject(prefix: str, name: str) -> str:
    """A subject for the server's own records (e.g. the token signing key), outside any tenant:
    ``<prefix>._sys.<name>``. Projections skip these; they are not Kubernetes objects."""
    return _bounded(f"{prefix}.{SYSTEM_TOKEN}.{encode_token(name)}")


def is_system_subject(prefix: str, subject: str) -> bool:
    return subject.startswith(f"{prefix}.{SYSTEM_TOKEN}.")


def all_filter(prefix: str) -> str:
    return prefix + ".>"


def parse_subject(prefix: str, subject: str) -> Key:
    parts = subject.split(".")
    if len(parts) != 6 or parts[0] != prefix:
        raise SubjectError(f"not an object subject: {subject!r}")
    _, tenant, group, resource, namespace, name = parts
    return Key(
        tenant_of_token(tenant),
        "" if group == PLACEHOLDER else decode_token(group),
        decode_token(resource),
        "" if namespace == PLACEHOLDER else decode_token(namespace),
        decode_token(name),
    )


def apf_seats_subject(prefix: str, shard: int) -> str:
    """The core-NATS request/reply subject of one shard of the fleet's per-tenant seat budgets (API
    Priority and Fairness, actors/_apf_fleet.py): its owner gateway answers seat leases there. Like
    the demand reports (``<prefix>-apf.fleet``) it is outside the stream's ``<prefix>.>``: never stored."""
    if shard < 0:
        raise SubjectError(f"negative shard {shard}")
    return _bounded(f"{prefix}-apf.seats.{shard}")
