"""Encryption at rest (bus/_encryption.py): kube's EncryptionConfiguration and stored form."""

from __future__ import annotations

import base64

import pytest

from bus import EncryptionConfig, EncryptionConfigError, UndecryptableMessage, object_subject
from bus._subjects import Key

K32 = base64.b64encode(b"k" * 32).decode()
K16 = base64.b64encode(b"s" * 16).decode()
OTHER = base64.b64encode(b"o" * 32).decode()
SECRET = object_subject("jk", Key("default", "", "secrets", "ns", "s1"))
OTHER_SECRET = object_subject("jk", Key("default", "", "secrets", "ns", "s2"))
CM = object_subject("jk", Key("default", "", "configmaps", "ns", "c1"))
DEPLOY = object_subject("jk", Key("default", "apps", "deployments", "ns", "d1"))


def config(*providers: dict, resources: tuple[str, ...] = ("secrets",)) -> EncryptionConfig:
    return EncryptionConfig.from_dict({
        "apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
        "resources": [{"resources": list(resources), "providers": list(providers)}]})


def aes(kind: str, name: str, secret: str) -> dict:
    return {kind: {"keys": [{"name": name, "secret": secret}]}}


@pytest.mark.parametrize("kind,secret", [("aesgcm", K32), ("aesgcm", K16), ("aescbc", K32)])
def test_round_trip_in_kubes_stored_form(kind: str, secret: str) -> None:
    c = config(aes(kind, "key1", secret), {"identity": {}})
    payload = b'{"type":"put","object":{"data":{"password":"aHVudGVyMg=="}}}'
    stored = c.encrypt(SECRET, payload)
    assert stored.startswith(f"k8s:enc:{kind}:v1:key1:".encode())
    assert b"aHVudGVyMg" not in stored and b"password" not in stored
    assert c.decrypt(SECRET, stored) == payload
    assert c.encrypt(SECRET, payload) != stored  # a fresh nonce or IV every time


def test_other_resources_and_non_objects_stay_plaintext() -> None:
    c = config(aes("aesgcm", "key1", K32))
    assert c.encrypt(CM, b"{}") == b"{}"
    assert c.encrypt("jk._sys.signing-key", b"{}") == b"{}"
    assert c.decrypt(CM, b"{}") == b"{}"


def test_resource_patterns() -> None:
    by_group = config(aes("aesgcm", "k", K32), resources=("*.apps",))
    assert by_group.encrypt(DEPLOY, b"x") != b"x" and by_group.encrypt(SECRET, b"x") == b"x"
    everything = config(aes("aesgcm", "k", K32), resources=("*.*",))
    assert everything.encrypt(CM, b"x") != b"x" and everything.encrypt(DEPLOY, b"x") != b"x"
    named = config(aes("aesgcm", "k", K32), resources=("deployments.apps",))
    assert named.encrypt(DEPLOY, b"x") != b"x" and named.encrypt(CM, b"x") == b"x"


def test_rotation_reads_old_keys_writes_the_first() -> None:
    old = config(aes("aescbc", "key1", K32))
    written = old.encrypt(SECRET, b"before")
    rotated = config(aes("aesgcm", "key2", OTHER), aes("aescbc", "key1", K32))
    assert rotated.decrypt(SECRET, written) == b"before"
    assert rotated.encrypt(SECRET, b"after").startswith(b"k8s:enc:aesgcm:v1:key2:")
    # Several keys in one provider: the first writes, any reads.
    two = config({"aesgcm": {"keys": [{"name": "new", "secret": OTHER}, {"name": "old", "secret": K32}]}})
    assert two.decrypt(SECRET, config(aes("aesgcm", "old", K32)).encrypt(SECRET, b"v")) == b"v"
    assert two.encrypt(SECRET, b"v").startswith(b"k8s:enc:aesgcm:v1:new:")


def test_plaintext_written_before_encryption_is_read_and_identity_first_writes_plaintext() -> None:
    c = config({"identity": {}}, aes("aesgcm", "key1", K32))
    assert c.encrypt(SECRET, b"plain") == b"plain"
    assert c.decrypt(SECRET, b"plain") == b"plain"
    assert c.decrypt(SECRET, config(aes("aesgcm", "key1", K32)).encrypt(SECRET, b"v")) == b"v"


def test_missing_key_tampering_and_moved_ciphertext_are_refused() -> None:
    c = config(aes("aesgcm", "key1", K32))
    stored = c.encrypt(SECRET, b"value")
    with pytest.raises(UndecryptableMessage, match="no provider"):
        config(aes("aesgcm", "key9", K32)).decrypt(SECRET, stored)
    with pytest.raises(UndecryptableMessage, match="cannot be decrypted"):
        config(aes("aesgcm", "key1", OTHER)).decrypt(SECRET, stored)
    with pytest.raises(UndecryptableMessage):
        c.decrypt(OTHER_SECRET, stored)  # the subject is the authenticated data
    with pytest.raises(UndecryptableMessage):
        c.decrypt(SECRET, stored[:-1] + bytes([stored[-1] ^ 1]))


@pytest.mark.parametrize("doc,message", [
    ({"kind": "Policy"}, "not an EncryptionConfiguration"),
    ({"kind": "EncryptionConfiguration", "apiVersion": "v9"}, "unsupported apiVersion"),
    ({"kind": "EncryptionConfiguration", "apiVersion": "apiserver.config.k8s.io/v1", "resources": []},
     "at least one entry"),
    ({"kind": "EncryptionConfiguration", "apiVersion": "apiserver.config.k8s.io/v1",
      "resources": [{"resources": ["secrets"], "providers": [{"kms": {}}]}]}, "exactly one of"),
    ({"kind": "EncryptionConfiguration", "apiVersion": "apiserver.config.k8s.io/v1",
      "resources": [{"resources": ["secrets"], "providers": [aes("aescbc", "k", K16)]}]}, "aescbc needs 32"),
    ({"kind": "EncryptionConfiguration", "apiVersion": "apiserver.config.k8s.io/v1",
      "resources": [{"resources": ["secrets"], "providers": [aes("aesgcm", "k", "not base64!")]}]}, "base64"),
    ({"kind": "EncryptionConfiguration", "apiVersion": "apiserver.config.k8s.io/v1",
      "resources": [{"resources": ["secrets"], "providers": [aes("aesgcm", "a:b", K32)]}]}, "without ':'"),
    ({"kind": "EncryptionConfiguration", "apiVersion": "apiserver.config.k8s.io/v1",
      "resources": [{"resources": ["secrets"], "providers": [{"identity": {}}]},
                    {"resources": ["secrets"], "providers": [{"identity": {}}]}]}, "earlier entry"),
])
def test_invalid_configurations(doc: dict, message: str) -> None:
    with pytest.raises(EncryptionConfigError, match=message):
        EncryptionConfig.from_dict(doc)
