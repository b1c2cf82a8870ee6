"""``metav1.LabelSelector`` in objects (``spec.selector`` of workloads, PDBs, ...): validation,
matching and the Go rendering kube 1.33 prints in messages. (Selectors in query strings are
parsed by ``projections._selectors``; this is the structured form inside objects.)"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ._errors import Cause
from ._validation import (
    field_forbidden,
    field_invalid,
    field_required,
    is_qualified_name,
    is_valid_label_value,
)

__all__ = ["go_label_selector", "selector_is_empty", "selector_matches", "validate_label_selector"]

_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def _q(s: Any) -> str:
    return json.dumps(str(s), ensure_ascii=False)


def _go_strings(values: Any) -> str:
    if values is None:
        return "[]string(nil)"
    return "[]string{" + ", ".join(_q(v) for v in values) + "}"


def go_label_selector(sel: Any) -> str:
    """The selector as Go's ``%#v`` prints a ``v1.LabelSelector`` (kube 1.33's field errors)."""
    sel = sel if isinstance(sel, Mapping) else {}
    ml = sel.get("matchLabels")
    if isinstance(ml, Mapping):
        labels = "map[string]string{" + ", ".join(f"{_q(k)}:{_q(ml[k])}" for k in sorted(ml)) + "}"
    else:
        labels = "map[string]string(nil)"
    exprs = sel.get("matchExpressions")
    if isinstance(exprs, list):
        parts = [f"v1.LabelSelectorRequirement{{Key:{_q(e.get('key', ''))}, Operator:{_q(e.get('operator', ''))}, "
                 f"Values:{_go_strings(e.get('values'))}}}" for e in exprs if isinstance(e, Mapping)]
        expressions = "[]v1.LabelSelectorRequirement{" + ", ".join(parts) + "}"
    else:
        expressions = "[]v1.LabelSelectorRequirement(nil)"
    return f"v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{expressions}}}"


def selector_is_empty(sel: Any) -> bool:
    return not isinstance(sel, Mapping) or (not sel.get("matchLabels") and not sel.get("matchExpressions"))


def selector_matches(sel: Any, labels: Any) -> bool:
    """Whether ``labels`` satisfy the selector (``LabelSelectorAsSelector(...).Matches``). An
    empty selector matches everything."""
    if not isinstance(sel, Mapping):
        return True
    labels = labels if isinstance(labels, Mapping) else {}
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in sel.get("matchExpressions") or []:
        if not isinstance(e, Mapping):
            continue
        key, op, values = e.get("key"), e.get("operator"), e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def validate_label_selector(sel: Any, path: str) -> list[Cause]:
    """``ValidateLabelSelector``: label keys and values, operators, and values present exactly
    when the operator needs them."""
    if not isinstance(sel, Mapping):
        return []
    causes: list[Cause] = []
    ml = sel.get("matchLabels")
    if isinstance(ml, Mapping):
        for k, v in ml.items():
            causes += [field_invalid(f"{path}.matchLabels", k, m) for m in is_qualified_name(str(k))]
            if isinstance(v, str):
                causes += [field_invalid(f"{path}.matchLabels", v, m) for m in is_valid_label_value(v)]
    for i, e in enumerate(sel.get("matchExpressions") or []):
        if not isinstance(e, Mapping):
            continue
        ep = f"{path}.matchExpressions[{i}]"
        op, values = e.get("operator"), e.get("values")
        if op in ("In", "NotIn"):
            if not values:
                causes.append(field_required(f"{ep}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist"):
            if values:
                causes.append(field_forbidden(f"{ep}.values",
                                              "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        else:
            causes.append(field_invalid(f"{ep}.operator", op, "not a valid selector operator"))
        causes += [field_invalid(f"{ep}.key", e.get("key"), m) for m in is_qualified_name(str(e.get("key") or ""))]
        for v in values or []:
            if isinstance(v, str):
                causes += [field_invalid(f"{ep}.values", v, m) for m in is_valid_label_value(v)]
    return causes
