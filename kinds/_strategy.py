"""Per-kind strategy hooks: where Kubernetes treats a kind specially. Pure functions.

The generic resource actor calls these around its create/update/delete logic (the apiserver's
``rest.RESTCreateStrategy`` / ``RESTUpdateStrategy`` idea). Kinds without special behaviour use
:class:`Strategy` as it is.
"""

from __future__ import annotations

import base64
from typing import Any

from ._defs import ResourceDef
from ._errors import BadRequest, Cause
from ._validation import go_base64_decode, validate_config_map_keys, validate_object_meta

NAMESPACE_FINALIZER = "kubernetes"


def _canonical_base64(obj: dict[str, Any], field: str) -> None:
    """Decode a map of ``[]byte`` values (Secret ``data``, ConfigMap ``binaryData``) as the
    apiserver's JSON decoder does, and store what it would store: the bytes re-encoded canonically
    (so line breaks, which Go's decoder skips, are gone). Undecodable data is the decoder's 400."""
    data = obj.get(field)
    kind = obj.get("kind", "")
    cannot = f'{kind} in version "v1" cannot be handled as a {kind}:'
    if data is None:
        return
    if not isinstance(data, dict):
        raise BadRequest(f"{cannot} {field} must be a map")
    out: dict[str, str] = {}
    for k, v in data.items():
        if not isinstance(v, str):
            raise BadRequest(f"{cannot} {field}[{k}] must be a base64 string")
        try:
            out[k] = base64.b64encode(go_base64_decode(v)).decode()
        except ValueError as e:
            raise BadRequest(f"{cannot} {e}") from None
    obj[field] = out


def _immutable(field: str) -> Cause:
    return Cause("FieldValueInvalid", "field is immutable", field)


class Strategy:
    """Defaults shared by every kind."""

    allow_create_on_update = False

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        """Normalise a new object before validation (defaults, derived fields)."""

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        """Carry over what an update may not change (e.g. status through the main resource)."""

    def validate_subresource(self, subresource: str, obj: dict[str, Any], old: dict[str, Any],
                             rdef: ResourceDef) -> list[Cause]:
        """A write through a subresource (status, scale, binding, ephemeralcontainers, approval):
        kube validates it with that subresource's strategy, not the main resource's update rules
        (a binding sets ``spec.nodeName``, which a pod update may not). The subresource's own rules
        are ``kinds._subresources.validate_update``; here, the object's metadata."""
        return validate_object_meta(obj.get("metadata"), namespaced=rdef.namespaced, name_rule=rdef.name_rule)

    def deletion_is_graceful(self, obj: dict[str, Any]) -> bool:
        """Whether a delete only marks ``obj`` (``deletionTimestamp``; removed once its finalizers are
        gone) instead of removing it now. May set what marking means for the kind (a status)."""
        return bool(obj.get("metadata", {}).get("finalizers"))

    #: Objects of this kind are removed by their controller's ``finalize`` once it has emptied them
    #: (a Namespace), not when their last finalizer goes.
    finalizable = False

    def finalize(self, obj: dict[str, Any]) -> str:
        """Make ``obj`` what its tombstone records; return why it cannot be finalized now ("" when it
        can: the write side then appends the tombstone)."""
        return "objects of this kind are not finalized"

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None, rdef: ResourceDef) -> list[Cause]:
        causes = validate_object_meta(obj.get("metadata"), namespaced=rdef.namespaced, name_rule=rdef.name_rule)
        if old is not None and old.get("immutable") is True:
            for f in ("data", "binaryData", "stringData"):
                if obj.get(f) != old.get(f):
                    causes.append(Cause("FieldValueForbidden", "Forbidden: field is immutable when `immutable` is set",
                                        f))
            if obj.get("immutable") is not True:
                causes.append(Cause("FieldValueForbidden", "Forbidden: field is immutable when `immutable` is set",
                                    "immutable"))
        return causes


class ConfigMapStrategy(Strategy):
    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        _canonical_base64(obj, "binaryData")

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        _canonical_base64(new, "binaryData")

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None, rdef: ResourceDef) -> list[Cause]:
        causes = super().validate(obj, old, rdef)
        data = obj.get("data")
        causes += validate_config_map_keys(data, "data")
        if isinstance(data, dict):
            causes += [Cause("FieldValueInvalid", "Invalid value: must be a string", f"data[{k}]")
                       for k, v in data.items() if not isinstance(v, str)]
        causes += validate_config_map_keys(obj.get("binaryData"), "binaryData")
        if isinstance(data, dict) and isinstance(obj.get("binaryData"), dict):
            causes += [Cause("FieldValueDuplicate", f'Duplicate value: "{k}"', f"data[{k}]")
                       for k in data if k in obj["binaryData"]]
        return causes


class SecretStrategy(Strategy):
    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        obj.setdefault("type", "Opaque")
        self._merge_string_data(obj)

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        if not new.get("type"):
            new["type"] = old.get("type", "Opaque")
        self._merge_string_data(new)

    @staticmethod
    def _merge_string_data(obj: dict[str, Any]) -> None:
        _canonical_base64(obj, "data")
        data = obj.get("data")
        string_data = obj.pop("stringData", None)
        if string_data:
            if not isinstance(string_data, dict):
                raise BadRequest('Secret in version "v1" cannot be handled as a Secret: stringData must be a map')
            merged = dict(data or {})
            for k, v in string_data.items():
                merged[k] = base64.b64encode(str(v).encode()).decode()
            obj["data"] = merged

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None, rdef: ResourceDef) -> list[Cause]:
        causes = super().validate(obj, old, rdef)
        causes += validate_config_map_keys(obj.get("data"), "data")
        if old is not None and obj.get("type") != old.get("type"):
            causes.append(_immutable("type"))
        total = sum(len(v) * 3 // 4 for v in (obj.get("data") or {}).values())
        if total > 1024 * 1024:
            causes.append(Cause("FieldValueTooLong", "Too long: must have at most 1048576 bytes", "data"))
        return causes


class NamespaceStrategy(Strategy):
    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        name = meta.get("name", "")
        if name:
            meta.setdefault("labels", {})
            meta["labels"]["kubernetes.io/metadata.name"] = name
        spec = obj.setdefault("spec", {})
        spec["finalizers"] = [NAMESPACE_FINALIZER]
        obj["status"] = {"phase": "Active"}

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        # Status and spec.finalizers change only through status/finalize (the controller).
        new["status"] = old.get("status", {"phase": "Active"})
        new["spec"] = old.get("spec", {})
        labels = new["metadata"].setdefault("labels", {})
        labels["kubernetes.io/metadata.name"] = new["metadata"]["name"]

    def deletion_is_graceful(self, obj: dict[str, Any]) -> bool:
        # A namespace is always emptied first: Terminating until the namespace controller finalizes it.
        obj["status"] = {"phase": "Terminating"}
        return True

    finalizable = True

    def finalize(self, obj: dict[str, Any]) -> str:
        # The namespace controller finalizes a namespace once it is empty; only a terminating one.
        if (obj.get("status") or {}).get("phase") != "Terminating":
            return "the namespace is not terminating"
        obj["spec"] = {"finalizers": []}
        return ""


class LeaseStrategy(Strategy):
    allow_create_on_update = True


class EventStrategy(Strategy):
    allow_create_on_update = True

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None, rdef: ResourceDef) -> list[Cause]:
        causes = super().validate(obj, old, rdef)
        involved = obj.get("involvedObject")
        ns = obj.get("metadata", {}).get("namespace", "")
        if isinstance(involved, dict) and involved.get("namespace") and involved["namespace"] != ns:
            causes.append(Cause("FieldValueInvalid", "Invalid value: does not match event.namespace",
                                "involvedObject.namespace"))
        return causes


_BY_RESOURCE: dict[tuple[str, str], Strategy] = {
    ("", "configmaps"): ConfigMapStrategy(),
    ("", "secrets"): SecretStrategy(),
    ("", "namespaces"): NamespaceStrategy(),
    ("", "events"): EventStrategy(),
    ("coordination.k8s.io", "leases"): LeaseStrategy(),
}
# The per-group modules subclass Strategy, so they are imported once it exists. (Any import of
# kinds.* runs kinds/__init__, which imports this module first.)
from ._admissionreg import ADMISSION_STRATEGIES
from ._apps import APPS_STRATEGIES
from ._batch import BATCH_STRATEGIES
from ._core import CORE_STRATEGIES
from ._policy import OTHER_STRATEGIES
from ._services import SERVICE_STRATEGIES

for _table in (CORE_STRATEGIES, SERVICE_STRATEGIES, APPS_STRATEGIES, BATCH_STRATEGIES, OTHER_STRATEGIES,
               ADMISSION_STRATEGIES):
    _BY_RESOURCE.update(_table)
_DEFAULT = Strategy()


# The RBAC kinds' own module (it builds on Strategy, defined above).
from ._rbac_strategy import RBAC_STRATEGIES

_BY_RESOURCE.update(RBAC_STRATEGIES)


from ._crd import CRD_GROUP, CRD_PLURAL, CrdStrategy, CustomResourceStrategy

_BY_RESOURCE[(CRD_GROUP, CRD_PLURAL)] = CrdStrategy()
_CUSTOM = CustomResourceStrategy()


def strategy_for(rdef: ResourceDef) -> Strategy:
    if rdef.crd:
        return _CUSTOM
    return _BY_RESOURCE.get((rdef.group, rdef.plural), _DEFAULT)
