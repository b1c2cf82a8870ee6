"""Encryption at rest of what the log stores, as kube-apiserver's ``--encryption-provider-config``.

kube-apiserver transforms each object on its way to etcd and back (``k8s.io/apiserver/pkg/storage/
value``); jetkube does the same to each event on its way to JetStream and back, so the stream's files
hold no plaintext of the configured resources (typically Secrets). The configuration is kube's
``apiserver.config.k8s.io/v1`` ``EncryptionConfiguration``::

    resources:
      - resources: ["secrets"]            # also "deployments.apps", "*.apps", "*.*"
        providers:
          - aesgcm: {keys: [{name: key2, secret: <base64 of 16, 24 or 32 bytes>}]}
          - aescbc: {keys: [{name: key1, secret: <base64 of 32 bytes>}]}
          - identity: {}

The first provider of the first entry that names a resource encrypts its new writes; every provider
of that entry decrypts with any of its keys (so a key is rotated by putting a new one first and
keeping the old one until every object was rewritten), and data written before encryption was configured (no prefix) is read as
it is. The stored form is kube's: ``k8s:enc:aesgcm:v1:<key name>:`` + 12-byte nonce + ciphertext and
tag, with the event's subject as the authenticated data (a ciphertext cannot be moved to another
object), or ``k8s:enc:aescbc:v1:<key name>:`` + 16-byte IV + AES-CBC of the PKCS#7-padded event.
AES-GCM with random nonces: rotate its key before about 2^32 writes (kube says 200k to be safe).
The ciphers are the ``cryptography`` package's.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ._errors import BusError
from ._subjects import SubjectError, parse_subject

__all__ = ["EncryptionConfig", "EncryptionConfigError", "UndecryptableMessage"]

_PREFIX = b"k8s:enc:"
_KINDS = ("aesgcm", "aescbc", "identity")


class EncryptionConfigError(ValueError):
    """The configuration is not a valid EncryptionConfiguration (the server refuses to start)."""


class UndecryptableMessage(BusError):
    """A stored message is encrypted with a provider or key the configuration does not hold."""


class _Key:
    __slots__ = ("kind", "name", "prefix", "secret")

    def __init__(self, kind: str, name: str, secret: bytes) -> None:
        self.kind, self.name, self.secret = kind, name, secret
        self.prefix = b"k8s:enc:%s:v1:%s:" % (kind.encode(), name.encode())

    def encrypt(self, data: bytes, aad: bytes) -> bytes:
        if self.kind == "aesgcm":
            nonce = os.urandom(12)
            return self.prefix + nonce + AESGCM(self.secret).encrypt(nonce, data, aad)
        iv = os.urandom(16)
        padder = padding.PKCS7(128).padder()
        enc = Cipher(algorithms.AES(self.secret), modes.CBC(iv)).encryptor()
        return self.prefix + iv + enc.update(padder.update(data) + padder.finalize()) + enc.finalize()

    def decrypt(self, data: bytes, aad: bytes) -> bytes:
        body = data[len(self.prefix):]
        if self.kind == "aesgcm":
            return AESGCM(self.secret).decrypt(body[:12], body[12:], aad)
        if len(body) < 32 or len(body) % 16:
            raise ValueError("ciphertext is not a whole number of blocks")
        dec = Cipher(algorithms.AES(self.secret), modes.CBC(body[:16])).decryptor()
        unpadder = padding.PKCS7(128).unpadder()
        return unpadder.update(dec.update(body[16:]) + dec.finalize()) + unpadder.finalize()


class _Entry:
    """One ``resources[]`` entry: the resources it names and its providers in order."""

    def __init__(self, resources: tuple[str, ...], providers: tuple[list[_Key], ...]) -> None:
        self.resources = resources
        # The first key of the first provider writes; None: identity (new writes stay plaintext).
        self.writer = providers[0][0] if providers[0] else None
        self.keys = {k.prefix: k for keys in providers for k in keys}

    def matches(self, group: str, resource: str) -> bool:
        for r in self.resources:
            name, _, grp = r.partition(".")
            if r == "*.*" or (name == "*" and grp == group) or (name == resource and grp == group):
                return True
        return False


class EncryptionConfig:
    """The transformer the Log applies to each event's payload: :meth:`encrypt` on append,
    :meth:`decrypt` on every read. Build it with :meth:`from_dict`."""

    def __init__(self, entries: Sequence[_Entry]) -> None:
        self._entries = tuple(entries)
        self._cache: dict[tuple[str, str], _Entry | None] = {}

    @classmethod
    def from_dict(cls, doc: Any) -> EncryptionConfig:
        """Parse a decoded EncryptionConfiguration document; EncryptionConfigError when invalid."""
        if not isinstance(doc, Mapping) or doc.get("kind") != "EncryptionConfiguration":
            raise EncryptionConfigError("not an EncryptionConfiguration (kind)")
        if doc.get("apiVersion") not in ("apiserver.config.k8s.io/v1", "apiserver.config.k8s.io/v1alpha1"):
            raise EncryptionConfigError(f"unsupported apiVersion {doc.get('apiVersion')!r}")
        entries = []
        seen: set[str] = set()
        for i, item in enumerate(doc.get("resources") or ()):
            where = f"resources[{i}]"
            names = item.get("resources") if isinstance(item, Mapping) else None
            if not names or not all(isinstance(n, str) and n for n in names):
                raise EncryptionConfigError(f"{where}.resources: at least one resource name is required")
            for n in names:
                if n in seen:
                    raise EncryptionConfigError(f"{where}.resources: {n!r} is named by an earlier entry")
                seen.add(n)
            providers = item.get("providers")
            if not providers:
                raise EncryptionConfigError(f"{where}.providers: at least one provider is required")
            entries.append(_Entry(tuple(names), tuple(_provider(p, f"{where}.providers[{j}]")
                                                      for j, p in enumerate(providers))))
        if not entries:
            raise EncryptionConfigError("resources: at least one entry is required")
        return cls(entries)

    def _entry(self, subject: str) -> _Entry | None:
        try:
            key = parse_subject(subject.partition(".")[0], subject)  # whatever the stream's prefix
        except SubjectError:
            return None  # not an object (allocations, system records): never transformed
        gr = (key.group, key.resource)
        if gr not in self._cache:
            self._cache[gr] = next((e for e in self._entries if e.matches(*gr)), None)
        return self._cache[gr]

    def encrypt(self, subject: str, payload: bytes) -> bytes:
        entry = self._entry(subject)
        if entry is None or entry.writer is None:
            return payload
        return entry.writer.encrypt(payload, subject.encode())

    def decrypt(self, subject: str, payload: bytes) -> bytes:
        if not payload.startswith(_PREFIX):
            return payload  # written in plaintext (identity, or before encryption was configured)
        entry = self._entry(subject)
        end = payload.find(b":", payload.find(b":v1:") + 4) + 1
        key = entry.keys.get(payload[:end]) if entry is not None and end > 0 else None
        if key is None:
            raise UndecryptableMessage(f"{subject}: stored with {payload[:end or 40]!r}, "
                                       "which no provider of the encryption configuration holds")
        try:
            return key.decrypt(payload, subject.encode())
        except Exception as e:
            raise UndecryptableMessage(f"{subject}: cannot be decrypted with key {key.name!r}") from e


def _provider(p: Any, where: str) -> list[_Key]:
    """A provider's keys in order ([] for identity)."""
    if not isinstance(p, Mapping) or len(p) != 1 or next(iter(p)) not in _KINDS:
        raise EncryptionConfigError(f"{where}: exactly one of {', '.join(_KINDS)} is supported")
    kind, conf = next(iter(p.items()))
    if kind == "identity":
        return []
    keys = (conf or {}).get("keys") if isinstance(conf, Mapping) else None
    if not keys:
        raise EncryptionConfigError(f"{where}.{kind}.keys: at least one key is required")
    out = []
    for i, k in enumerate(keys):
        at = f"{where}.{kind}.keys[{i}]"
        name = k.get("name") if isinstance(k, Mapping) else None
        secret = k.get("secret") if isinstance(k, Mapping) else None
        if not isinstance(name, str) or not name or ":" in name:
            raise EncryptionConfigError(f"{at}.name: a name without ':' is required")
        try:
            raw = base64.b64decode(str(secret), validate=True)
        except (binascii.Error, ValueError):
            raise EncryptionConfigError(f"{at}.secret: not valid base64") from None
        allowed = (16, 24, 32) if kind == "aesgcm" else (32,)
        if len(raw) not in allowed:
            raise EncryptionConfigError(f"{at}.secret: {len(raw)} bytes; {kind} needs "
                                        f"{' or '.join(map(str, allowed))}")
        out.append(_Key(kind, name, raw))
    return out
