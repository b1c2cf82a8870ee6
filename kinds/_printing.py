"""What kube's printers format with: human durations, timestamps, label and selector strings. Pure.

Shared by the per-kind cell functions (``_printers``) and the gateway's Table writer (the CRD
``date`` cell), so both print ages exactly as ``kubectl get`` shows them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "format_label_selector",
    "format_labels",
    "human_duration",
    "parse_time",
    "rfc3339_seconds",
    "translate_timestamp_since",
]


def human_duration(d: timedelta) -> str:
    """apimachinery ``duration.HumanDuration``: ~2-3 significant figures (``5s``, ``3m2s``, ``7h``,
    ``3d4h``, ``400d``, ``2y``); up to 1s in the future is ``0s``, further is ``<invalid>``."""
    us = d // timedelta(microseconds=1)
    seconds = us // 1_000_000 if us >= 0 else -((-us) // 1_000_000)  # Go int(): toward zero
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60 * 2:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        s = seconds % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = seconds // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def parse_time(value: Any) -> datetime | None:
    """An RFC3339 timestamp (``metav1.Time`` or ``MicroTime``) as an aware datetime; None when
    missing, empty or unparsable (Go's zero time)."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    m = re.match(r"^(.*T\d\d:\d\d:\d\d)\.(\d+)(.*)$", text)
    if m:  # Python accepts at most 6 fractional digits
        text = f"{m.group(1)}.{(m.group(2) + '000000')[:6]}{m.group(3)}"
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    if t.tzinfo is None:
        return None
    return None if t.year <= 1 else t


def aware(now: datetime) -> datetime:
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)


def translate_timestamp_since(value: Any, now: datetime) -> str:
    """printers.go ``translateTimestampSince``: ``<unknown>`` for a zero time, else the human age."""
    t = parse_time(value)
    if t is None:
        return "<unknown>"
    return human_duration(aware(now) - t)


def rfc3339_seconds(value: Any) -> str:
    """The default convertor's ``Created At`` cell: UTC, second precision (Go zero time if unset)."""
    t = parse_time(value)
    if t is None:
        return "0001-01-01T00:00:00Z"
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_labels(labels: Any) -> str:
    """apimachinery ``labels.FormatLabels``: ``k=v`` sorted by key, comma-joined; ``<none>`` if empty."""
    if not isinstance(labels, Mapping) or not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def label_selector_string(selector: Any) -> str:
    """``metav1.LabelSelectorAsSelector(s).String()``: requirements sorted by key (``k=v``,
    ``k in (a,b)``, ``k notin (a,b)``, ``k``, ``!k``); "" for nil or empty. Raises ValueError for an
    operator the apimachinery rejects."""
    if not isinstance(selector, Mapping):
        return ""
    reqs: list[tuple[str, str]] = []
    match_labels = selector.get("matchLabels")
    if isinstance(match_labels, Mapping):
        reqs += [(str(k), f"{k}={v}") for k, v in match_labels.items()]
    exprs = selector.get("matchExpressions")
    for e in exprs if isinstance(exprs, list) else []:
        if not isinstance(e, Mapping):
            continue
        key, op = str(e.get("key", "")), e.get("operator")
        values = sorted({str(v) for v in e.get("values") or []})
        if op == "In":
            reqs.append((key, f"{key} in ({','.join(values)})"))
        elif op == "NotIn":
            reqs.append((key, f"{key} notin ({','.join(values)})"))
        elif op == "Exists":
            reqs.append((key, key))
        elif op == "DoesNotExist":
            reqs.append((key, "!" + key))
        else:
            raise ValueError(f"{op!r} is not a valid label selector operator")
    reqs.sort(key=lambda r: r[0])  # stable: matchLabels before expressions of the same key
    return ",".join(r[1] for r in reqs)


def format_label_selector(selector: Any) -> str:
    """``metav1.FormatLabelSelector``: the selector string, ``<none>`` when it selects everything
    or nothing, ``<error>`` when it cannot be parsed."""
    try:
        text = label_selector_string(selector)
    except ValueError:
        return "<error>"
    return text or "<none>"
