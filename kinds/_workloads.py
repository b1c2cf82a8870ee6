"""What every kind with a pod template shares (apps/v1, batch/v1, ReplicationControllers): the
strategy shape (defaults on create and update, a fresh status on create, a generation), the
checks on ``spec.selector`` against the template's labels, and small field rules."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ._defs import ResourceDef
from ._errors import BadRequest, Cause
from ._labelselector import go_label_selector, selector_is_empty, selector_matches, validate_label_selector
from ._podspec import validate_pod_template
from ._strategy import Strategy
from ._validation import field_invalid, field_required, field_unsupported, go_repr

__all__ = [
    "TemplateStrategy",
    "decode_defaults",
    "validate_int_or_percent",
    "validate_nonnegative",
    "validate_selector_and_template",
]


def decode_defaults(obj: dict[str, Any], apply: Callable[[dict[str, Any]], None]) -> None:
    """Run defaulting; a value the apiserver's decoder would refuse (a bad quantity) is its 400,
    in its words."""
    try:
        apply(obj)
    except ValueError as e:
        kind = obj.get("kind", "")
        version = str(obj.get("apiVersion", "")).rsplit("/", 1)[-1]
        raise BadRequest(f'{kind} in version "{version}" cannot be handled as a {kind}: {e}') from None


def validate_nonnegative(spec: dict[str, Any], fields: tuple[str, ...], path: str = "spec") -> list[Cause]:
    out: list[Cause] = []
    for f in fields:
        v = spec.get(f)
        if isinstance(v, int) and not isinstance(v, bool) and v < 0:
            out.append(field_invalid(f"{path}.{f}", v, "must be greater than or equal to 0"))
    return out


_PERCENT_RE = re.compile("[0-9]+%")
_PERCENT_MSG = ("a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or "
                "'93%', regex used for validation is '[0-9]+%')")


def validate_int_or_percent(value: Any, path: str) -> list[Cause]:
    """``ValidatePositiveIntOrPercent`` and ``IsNotMoreThan100Percent``."""
    if isinstance(value, str):
        if not _PERCENT_RE.fullmatch(value):
            return [field_invalid(path, value, _PERCENT_MSG)]
        if int(value[:-1]) > 100:
            return [field_invalid(path, value, "must not be greater than 100%")]
        return []
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        return [field_invalid(path, value, "must be greater than or equal to 0")]
    return []


def int_or_percent_is_zero(value: Any) -> bool:
    return value == 0 or (isinstance(value, str) and _PERCENT_RE.fullmatch(value) is not None
                          and int(value[:-1]) == 0)


def validate_selector_and_template(spec: dict[str, Any], kind_word: str, *, restart_policies: tuple[str, ...],
                                   path: str = "spec") -> list[Cause]:
    """apps/v1's rules: a non-empty selector that the template's labels satisfy, the template
    valid with a restartPolicy from ``restart_policies`` and no ``activeDeadlineSeconds``."""
    causes: list[Cause] = []
    sel = spec.get("selector")
    template = spec.get("template")
    if sel is None:
        causes.append(field_required(f"{path}.selector"))
    else:
        causes += validate_label_selector(sel, f"{path}.selector")
        if selector_is_empty(sel):
            causes.append(Cause("FieldValueInvalid",
                                f"Invalid value: {go_label_selector(sel)}: empty selector is invalid for "
                                f"{_EMPTY_SELECTOR_WORDS.get(kind_word, kind_word)}",
                                f"{path}.selector"))
    if not isinstance(template, dict):
        causes.append(field_required(f"{path}.template"))
        return causes
    labels = (template.get("metadata") or {}).get("labels") or {}
    if sel is not None and not selector_is_empty(sel) and not selector_matches(sel, labels):
        causes.append(field_invalid(f"{path}.template.metadata.labels", labels,
                                    "`selector` does not match template `labels`"))
    causes += validate_pod_template(template, f"{path}.template")
    tspec = template.get("spec")
    if isinstance(tspec, dict):
        rp = tspec.get("restartPolicy")
        if rp and rp not in restart_policies:
            causes.append(field_unsupported(f"{path}.template.spec.restartPolicy", rp, restart_policies))
        if kind_word != "job" and tspec.get("activeDeadlineSeconds") is not None:
            causes.append(field_invalid(f"{path}.template.spec.activeDeadlineSeconds",
                                        tspec["activeDeadlineSeconds"],
                                        f"activeDeadlineSeconds in {_KIND_WORDS.get(kind_word, kind_word)} is not "
                                        f"Supported"))
    return causes


# kube's ReplicaSet validation reuses the Deployment's wording.
_EMPTY_SELECTOR_WORDS = {"replicaset": "deployment"}
_KIND_WORDS = {"deployment": "ReplicaSet", "replicaset": "ReplicaSet", "statefulset": "StatefulSet",
               "daemonset": "DaemonSet", "replicationcontroller": "ReplicationController"}


def immutable_selector(new_spec: dict[str, Any], old_spec: dict[str, Any], path: str = "spec.selector") -> list[Cause]:
    """``ValidateImmutableField`` on ``spec.selector`` as kube 1.33 words it."""
    if new_spec.get("selector") == old_spec.get("selector"):
        return []
    return [Cause("FieldValueInvalid", f"Invalid value: {go_label_selector(new_spec.get('selector'))}: field is "
                                       f"immutable", path)]


def immutable(new: Any, old: Any, path: str) -> list[Cause]:
    return [] if new == old else [Cause("FieldValueInvalid", f"Invalid value: {go_repr(new)}: field is immutable",
                                        path)]


class TemplateStrategy(Strategy):
    """A kind with a spec and a status: defaults on every write (kube defaults whatever it
    decodes). Its initial status and its generation are data of the kind's definition
    (``ResourceDef.initial_status``, ``ResourceDef.generation``), applied by the resource actor."""

    def default(self, obj: dict[str, Any]) -> None:
        """The kind's ``SetDefaults_*``: override."""

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        decode_defaults(obj, self.default)

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        decode_defaults(new, self.default)

    def validate_spec(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        """Kind-specific validation of a defaulted object: override."""
        return []

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None, rdef: ResourceDef) -> list[Cause]:
        causes = super().validate(obj, old, rdef)
        return causes + self.validate_spec(obj, old)


def spec_of(obj: dict[str, Any]) -> dict[str, Any]:
    """The object's ``spec``, created when absent (defaulting fills it as Go's zero struct)."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        spec = obj["spec"] = {}
    return spec


def sub_dict(parent: dict[str, Any], key: str) -> Any:
    """``parent[key]``, an empty object when it is absent or null (Go's zero struct). A value of
    another JSON type is returned as it is: the typed decoder refused it before a strategy ran."""
    value = parent.get(key)
    if value is None:
        value = parent[key] = {}
    return value
