"""Webhook conversion of custom resources: the pure parts of kube's ``webhookConverter``.

A CRD with ``spec.conversion.strategy: Webhook`` has its objects converted between its versions by
a ``ConversionReview`` POSTed to the CRD's webhook (the I/O is ``actors._crd_conversion``). Here:

- :func:`webhook_of`: the CRD's webhook settings (url, caBundle, review version), or None;
- :func:`review_request`: the ``ConversionReview`` for the objects not yet in the desired version
  (kube sends only those, a list page in one review);
- :func:`converted_from_review`: the webhook's answer checked as kube checks it (GVK and uid of
  the review, count, each object's apiVersion, kind, name, namespace and uid) and each converted
  object's metadata restored from the original, except labels and annotations (validated when
  changed), as kube's ``restoreObjectMeta``; a :class:`ConversionFailed` with kube's message else;
- :func:`validate_conversion`: ``spec.conversion`` of a CRD, with kube's paths and messages.
"""

from __future__ import annotations

import base64
import copy
import ssl
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from ._errors import Cause
from ._validation import (
    _validate_annotations,
    field_forbidden,
    field_invalid,
    field_required,
    field_unsupported,
    is_dns1035_label,
    validate_labels,
)

#: kube's conversion webhook client timeout (client-go's default for webhook clients; not
#: configurable on a CRD, kubernetes#91338): a call never waits longer.
TIMEOUT_S = 30.0
#: ConversionReview versions this server speaks, in kube's order of preference.
REVIEW_VERSIONS = ("v1", "v1beta1")
_GROUP = "apiextensions.k8s.io"


class ConversionFailed(Exception):
    """A conversion that did not happen; ``str(e)`` is kube's whole message."""


class _BadMetadata(Exception):
    pass


def webhook_of(crd: Mapping[str, Any]) -> dict[str, Any] | None:
    """The CRD's conversion webhook (``url``, ``caBundle``, ``reviewVersion``), or None when its
    versions are converted by strategy ``None``."""
    conv = (crd.get("spec") or {}).get("conversion")
    if not isinstance(conv, dict) or conv.get("strategy") != "Webhook":
        return None
    hook = conv.get("webhook") if isinstance(conv.get("webhook"), dict) else {}
    cc = hook.get("clientConfig") if isinstance(hook.get("clientConfig"), dict) else {}
    svc = cc.get("service")
    if isinstance(svc, dict):
        url = f"https://{svc.get('name')}.{svc.get('namespace')}.svc:{svc.get('port') or 443}{svc.get('path') or ''}"
    else:
        url = str(cc.get("url") or "")
    versions = [v for v in hook.get("conversionReviewVersions") or () if v in REVIEW_VERSIONS]
    return {"url": url, "caBundle": str(cc.get("caBundle") or ""), "reviewVersion": versions[0] if versions else ""}


def gvk(api_version: str, kind: str) -> str:
    """A GroupVersionKind as Go prints it (``stable.example.com/v1, Kind=CronTab``)."""
    return f"{api_version}, Kind={kind}"


def pending(objects: Sequence[Mapping[str, Any]], desired: str) -> list[int]:
    """Indexes of the objects a review must carry: those not already in the ``desired`` apiVersion."""
    return [i for i, o in enumerate(objects) if o.get("apiVersion") != desired]


def review_request(objects: Sequence[Mapping[str, Any]], desired: str, uid: str, version: str) -> dict[str, Any]:
    return {"apiVersion": f"{_GROUP}/{version}", "kind": "ConversionReview",
            "request": {"uid": uid, "desiredAPIVersion": desired, "objects": list(objects)}}


def converted_from_review(review: Any, *, uid: str, version: str, originals: Sequence[Mapping[str, Any]],
                          desired: str, source: str, is_list: bool) -> list[dict[str, Any]]:
    """The converted objects of ``review`` (the webhook's answer to a review of ``originals``), each
    with the original's metadata but the webhook's labels and annotations. ``source``: the GVK
    kube names in its messages (the input's)."""
    failed = f"conversion webhook for {source} failed"
    if not isinstance(review, dict):
        raise ConversionFailed(f"{failed}: unrecognized response type: {type(review).__name__}")
    if version == "v1":
        got = gvk(str(review.get("apiVersion") or ""), str(review.get("kind") or ""))
        if got != gvk(f"{_GROUP}/v1", "ConversionReview"):
            raise ConversionFailed(f"{failed}: expected webhook response of {_GROUP}/v1, Kind=ConversionReview, "
                                   f"got {got}")
    resp = review.get("response")
    if not isinstance(resp, dict):
        raise ConversionFailed(f"{failed}: no response provided")
    if version == "v1" and resp.get("uid") != uid:
        raise ConversionFailed(f'{failed}: expected response.uid="{uid}", got "{resp.get("uid") or ""}"')
    result = resp.get("result") if isinstance(resp.get("result"), dict) else {}
    if result.get("status") != "Success":
        if result.get("message"):
            raise ConversionFailed(f"{failed}: {result['message']}")
        raise ConversionFailed(f"{failed}: response.result.status was '{result.get('status') or ''}', not 'Success'")
    converted = resp.get("convertedObjects") or []
    if not isinstance(converted, list) or len(converted) != len(originals):
        n = len(converted) if isinstance(converted, list) else 0
        raise ConversionFailed(f"conversion webhook for {source} returned {n} objects, expected {len(originals)}")
    out = []
    for i, (orig, conv) in enumerate(zip(originals, converted)):
        where = f"invalid converted object at index {i}" if is_list else "invalid object at index 0"
        if not isinstance(conv, dict):
            raise ConversionFailed(f"conversion webhook for {source} returned {where}: not an object")
        got_gv = str(conv.get("apiVersion") or "")
        if got_gv != desired:
            raise ConversionFailed(f"conversion webhook for {source} returned {where}: invalid groupVersion "
                                   f"(expected {desired}, received {got_gv})")
        if conv.get("kind") != orig.get("kind"):
            raise ConversionFailed(f"conversion webhook for {source} returned {where}: invalid kind (expected "
                                   f"{orig.get('kind')}, received {conv.get('kind') or ''})")
        problem = _changed_identity(orig, conv)
        if problem:
            what = f"invalid converted object at index {i}" if is_list else "invalid object"
            raise ConversionFailed(f"conversion webhook for {source} returned {what}: {problem}")
        try:
            out.append(_restore_meta(orig, conv))
        except _BadMetadata as e:
            what = f"invalid metadata in object at index {i}" if is_list else "invalid metadata"
            raise ConversionFailed(f"conversion webhook for {source} returned {what}: {e}") from None
    return out


def _meta(o: Mapping[str, Any]) -> Mapping[str, Any]:
    m = o.get("metadata")
    return m if isinstance(m, dict) else {}


def _changed_identity(orig: Mapping[str, Any], conv: Mapping[str, Any]) -> str:
    """kube's ``validateConvertedObject``: kind, name, namespace and uid are the original's."""
    a, b = _meta(orig), _meta(conv)
    for what, x, y in (("kind", orig.get("kind"), conv.get("kind")), ("name", a.get("name"), b.get("name")),
                       ("namespace", a.get("namespace"), b.get("namespace")), ("UID", a.get("uid"), b.get("uid"))):
        if (x or "") != (y or ""):
            return f"must have the same {what}: {x or ''} != {y or ''}"
    return ""


def _restore_meta(orig: Mapping[str, Any], conv: dict[str, Any]) -> dict[str, Any]:
    """The converted object with the original's metadata, but the webhook's labels and
    annotations (validated when they changed); :class:`_BadMetadata` with kube's message else."""
    got = conv.get("metadata")
    if got is None:
        raise _BadMetadata("missing metadata in converted object")
    if not isinstance(got, dict):
        raise _BadMetadata(f"invalid metadata of type {type(got).__name__} in converted object")
    meta = copy.deepcopy(dict(_meta(orig)))
    for fld, path in (("labels", "metadata.labels"), ("annotations", "metadata.annotation")):
        value = got.get(fld)
        if value is None:
            meta.pop(fld, None)
            continue
        if not isinstance(value, dict):
            raise _BadMetadata(f"invalid metadata.{fld} of type {type(value).__name__} in converted object")
        for k, v in value.items():
            if not isinstance(v, str):
                raise _BadMetadata(f"metadata.{fld}[{k}] must be a string, but is {type(v).__name__} in converted "
                                 f"object")
        if value != (meta.get(fld) or {}):
            causes = validate_labels(value, path) if fld == "labels" else _validate_annotations(value, path)
            if causes:
                parts = [f"{c.field}: {c.message}" for c in causes]
                raise _BadMetadata(parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]")
        meta[fld] = value
    out = dict(conv)
    out["metadata"] = meta
    return out


# ---- the CRD's spec.conversion ----------------------------------------------------------------------


def validate_conversion(conv: Any, path: str = "spec.conversion") -> list[Cause]:
    """kube's ``validateCustomResourceConversion`` (its paths are the internal API's, as kube reports
    them for a v1 CRD: ``webhookClientConfig``, ``conversionReviewVersions``)."""
    if conv is None:
        return []
    if not isinstance(conv, dict):
        return [field_invalid(path, conv, "must be an object")]
    out: list[Cause] = []
    strategy = conv.get("strategy") or ""
    if not strategy:
        out.append(field_required(f"{path}.strategy"))
    elif strategy not in ("None", "Webhook"):
        out.append(field_unsupported(f"{path}.strategy", strategy, ["None", "Webhook"]))
    hook = conv.get("webhook") if isinstance(conv.get("webhook"), dict) else None
    cc = hook.get("clientConfig") if hook is not None and isinstance(hook.get("clientConfig"), dict) else None
    versions = (hook or {}).get("conversionReviewVersions")
    if strategy != "Webhook":
        if cc is not None:
            out.append(field_forbidden(f"{path}.webhookClientConfig", "should not be set when strategy is not set "
                                                                     "to Webhook"))
        if versions:
            out.append(field_forbidden(f"{path}.conversionReviewVersions", "should not be set when strategy is not "
                                                                          "set to Webhook"))
        return out
    if cc is None:
        out.append(field_required(f"{path}.webhookClientConfig", "required when strategy is set to Webhook"))
    else:
        url, svc = cc.get("url"), cc.get("service")
        if (url is None) == (svc is None):
            out.append(field_required(f"{path}.webhookClientConfig", "exactly one of url or service is required"))
        elif url is not None:
            out.extend(_validate_url(str(url), f"{path}.webhookClientConfig.url"))
        elif isinstance(svc, dict):
            out.extend(_validate_service(svc, f"{path}.webhookClientConfig.service"))
        if cc.get("caBundle"):
            out.extend(_validate_ca_bundle(str(cc["caBundle"]), f"{path}.webhookClientConfig.caBundle"))
    out.extend(_validate_review_versions(versions, f"{path}.conversionReviewVersions"))
    return out


_FORM = "; desired format: https://host[/path]"


def _validate_url(url: str, path: str) -> list[Cause]:
    try:
        u = urlsplit(url)
    except ValueError as e:
        return [field_required(path, f"url must be a valid URL: {e}{_FORM}")]
    out = []
    if u.scheme != "https":
        out.append(field_invalid(path, u.scheme, f"'https' is the only allowed URL scheme{_FORM}"))
    if not u.netloc:
        out.append(field_invalid(path, "", f"host must be specified{_FORM}"))
    if "@" in u.netloc:
        out.append(field_invalid(path, u.netloc.rsplit("@", 1)[0], "user information is not permitted in the URL"))
    if u.fragment:
        out.append(field_invalid(path, u.fragment, "fragments are not permitted in the URL"))
    if u.query:
        out.append(field_invalid(path, u.query, "query parameters are not permitted in the URL"))
    return out


def _validate_service(svc: Mapping[str, Any], path: str) -> list[Cause]:
    out = []
    if not svc.get("name"):
        out.append(field_required(f"{path}.name", "service name is required"))
    if not svc.get("namespace"):
        out.append(field_required(f"{path}.namespace", "service namespace is required"))
    port = svc.get("port", 443)
    if not isinstance(port, int) or not 1 <= port <= 65535:
        out.append(field_invalid(f"{path}.port", port, "port is not valid: must be between 1 and 65535, inclusive"))
    p = svc.get("path")
    if p and not str(p).startswith("/"):
        out.append(field_invalid(f"{path}.path", p, "must start with a '/'"))
    return out


def _validate_ca_bundle(ca_bundle: str, path: str) -> list[Cause]:
    """The bundle holds at least one PEM certificate (client-go's TLS config would refuse it)."""
    try:
        ssl.create_default_context(cadata=base64.b64decode(ca_bundle, validate=True).decode())
    except (ValueError, ssl.SSLError, UnicodeDecodeError):
        return [field_invalid(path, ca_bundle, "unable to load root certificates: unable to parse bytes as PEM "
                                               "block")]
    return []


def _validate_review_versions(versions: Any, path: str) -> list[Cause]:
    if not isinstance(versions, list) or not versions:
        return [field_required(path)]
    out: list[Cause] = []
    seen: set[str] = set()
    for i, v in enumerate(versions):
        v = str(v)
        if v in seen:
            out.append(field_invalid(f"{path}[{i}]", v, "duplicate version"))
            continue
        seen.add(v)
        for msg in is_dns1035_label(v):
            out.append(field_invalid(f"{path}[{i}]", v, msg))
    if not seen & set(REVIEW_VERSIONS):
        out.append(field_invalid(path, versions, "must include at least one of v1, v1beta1"))
    return out


__all__ = ["REVIEW_VERSIONS", "TIMEOUT_S", "ConversionFailed", "converted_from_review", "gvk",
           "pending", "review_request", "validate_conversion", "webhook_of"]
