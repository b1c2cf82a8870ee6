"""Kubernetes resource quantities (``k8s.io/apimachinery/pkg/api/resource``): parse exactly, print
as the apiserver does.

The apiserver stores every quantity in canonical form (``0.5`` CPU reads back as ``500m``,
``1024Mi`` as ``1Gi``), and ``SetDefaults_ResourceList`` first rounds resource-list values up to
milli precision. Values are exact :class:`fractions.Fraction`, so comparisons (requests against
limits, QoS) never suffer from floating point.
"""

from __future__ import annotations

import functools
import math
import re
from fractions import Fraction
from typing import Literal

__all__ = [
    "QUANTITY_REGEX",
    "canonical_quantity",
    "parse_quantity",
]

QUANTITY_REGEX = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
"""The pattern the apiserver's decoder quotes when it refuses a quantity."""

_NUMBER_RE = re.compile(r"([+-]?)(\d*)(?:\.(\d*))?")
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_SUFFIX = {v: k for k, v in _DECIMAL.items()}
_BINARY_SUFFIX = {v: k for k, v in _BINARY.items()}

Format = Literal["BinarySI", "DecimalSI", "DecimalExponent"]


_CACHE_SIZE = 4096
"""Distinct quantity strings remembered by the parsers (a pod spec repeats the same few, and each
is read several times per write: defaulting, QoS, validation); values are immutable Fractions."""


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _split(text: str) -> tuple[Fraction, Format] | None:
    m = _NUMBER_RE.match(text)
    if m is None or (not m.group(2) and not m.group(3)):
        return None
    sign, whole, frac = m.group(1), m.group(2), m.group(3) or ""
    if m.end() == 0 or not (whole or frac):
        return None
    number = Fraction(int((whole or "0") + frac), 10 ** len(frac))
    if sign == "-":
        number = -number
    suffix = text[m.end():]
    if suffix in _BINARY:
        return number * 1024 ** _BINARY[suffix], "BinarySI"
    if suffix in _DECIMAL:
        return number * Fraction(10) ** _DECIMAL[suffix], "DecimalSI"
    if len(suffix) > 1 and suffix[0] in "eE" and re.fullmatch(r"[-+]?\d+", suffix[1:]):
        exp = int(suffix[1:])
        if abs(exp) > 1000:
            return None
        return number * Fraction(10) ** exp, "DecimalExponent"
    return None


def parse_quantity(value: object) -> Fraction | None:
    """The exact value of a quantity (a string, or a JSON number as the decoder accepts it), or
    None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        return Fraction(repr(value)) if math.isfinite(value) else None
    if not isinstance(value, str) or not value or value != value.strip():
        return None
    parsed = _split(value)
    return parsed[0] if parsed else None


def _round_up_milli(v: Fraction) -> Fraction:
    scaled = v * 1000
    if scaled.denominator == 1:
        return v
    # Go's RoundUp rounds away from zero.
    n = math.ceil(scaled) if scaled > 0 else math.floor(scaled)
    return Fraction(n, 1000)


def canonical_quantity(value: object, *, round_to_milli: bool = True) -> str | None:
    """The quantity as the apiserver writes it back, or None when ``value`` is not a quantity.

    ``round_to_milli`` is ``SetDefaults_ResourceList``'s rounding (every resource list in a pod
    spec gets it)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        text = repr(value)
    elif isinstance(value, str):
        text = value
    else:
        return None
    return _canonical(text, round_to_milli)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _canonical(text: str, round_to_milli: bool) -> str | None:
    if not text or text != text.strip():
        return None
    parsed = _split(text)
    if parsed is None:
        return None
    v, fmt = parsed
    if round_to_milli:
        v = _round_up_milli(v)
    if v == 0:
        return "0"
    sign = "-" if v < 0 else ""
    a = abs(v)
    if fmt == "BinarySI" and a < 1024:
        fmt = "DecimalSI"
    if fmt == "BinarySI":
        if a.denominator == 1:
            n, k = a.numerator, 0
            while k < 6 and n % 1024 == 0:
                n //= 1024
                k += 1
            return f"{sign}{n}{_BINARY_SUFFIX.get(k, '')}"
        fmt = "DecimalSI"
    # Decimal: the largest exponent, a multiple of 3, that keeps the mantissa an integer.
    exp = 0
    while (a / Fraction(10) ** exp).denominator != 1:
        exp -= 3
        if exp < -9:  # below nano the apiserver rounds up to nano
            m = math.ceil(a * 10 ** 9)
            return f"{sign}{m}n" if fmt == "DecimalSI" else f"{sign}{m}e-9"
    n = a / Fraction(10) ** exp
    while n.denominator == 1 and n.numerator % 1000 == 0 and exp < 18:
        n /= 1000
        exp += 3
    mantissa = n.numerator
    if fmt == "DecimalExponent":
        return f"{sign}{mantissa}" + (f"e{exp}" if exp else "")
    return f"{sign}{mantissa}{_DECIMAL_SUFFIX[exp]}"
