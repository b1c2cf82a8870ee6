"""Label and field selectors: parsing and matching, pure.

``parse_label_selector`` accepts the ``labels.Parse`` grammar of ``?labelSelector=`` and
``parse_field_selector`` the ``fields.ParseSelector`` grammar of ``?fieldSelector=``. Both raise
``SelectorError`` with the text kube-apiserver puts in the 400 Status message.

The label grammar (whitespace between tokens is ignored; ``in``/``notin`` are keywords only in
operator position)::

    selector    := "" | requirement ("," requirement)*
    requirement := ["!"] KEY [ ("in" | "notin") "(" VALUE ("," VALUE)* ")"
                             | ("=" | "==" | "!=" | ">" | "<") VALUE ]

Label keys and values are checked by the domain's ``is_qualified_name``/``is_valid_label_value``
(``kinds``), so a selector and an object's labels are judged by one rule with one wording.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from kinds import is_qualified_name, is_valid_label_value

__all__ = [
    "FieldSelector",
    "LabelRequirement",
    "LabelSelector",
    "SelectorError",
    "parse_field_selector",
    "parse_label_selector",
]


class SelectorError(ValueError):
    """A selector that does not parse; ``str(err)`` is the apiserver's message for it."""


# --- label key and value checks: the domain's (kinds._validation), so the wording is one ----------

_key_errors = is_qualified_name
_value_errors = is_valid_label_value


def _quote(s: str) -> str:
    # Go's %q for the strings we meet here (a field.Invalid bad value).
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- label selectors ----------------------------------------------------------------------

_INT64_RE = re.compile(r"[+-]?[0-9]+")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def parse_int64(s: str) -> int | None:
    """The one integer parser for query values: Go's ``strconv.ParseInt(s, 10, 64)`` (an optional
    sign, ASCII digits only, within int64), or None. Python's ``int()`` would also take Unicode
    digits (``"١"``, ``"²"``), ``_`` and surrounding spaces."""
    if not _INT64_RE.fullmatch(s):
        return None
    n = int(s)
    return n if _INT64_MIN <= n <= _INT64_MAX else None


@dataclass(frozen=True, slots=True)
class LabelRequirement:
    """One term of a label selector.

    ``operator`` is one of ``=``, ``==``, ``!=``, ``in``, ``notin``, ``exists``, ``!`` (does
    not exist), ``gt``, ``lt`` (the ``selection.Operator`` spellings); ``values`` are sorted and
    distinct.
    """

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this term. ``!=`` and ``notin`` match a missing key."""
        op = self.operator
        if op in ("=", "==", "in"):
            return self.key in labels and labels[self.key] in self.values
        if op in ("!=", "notin"):
            return self.key not in labels or labels[self.key] not in self.values
        if op == "exists":
            return self.key in labels
        if op == "!":
            return self.key not in labels
        if op in ("gt", "lt"):
            if self.key not in labels:
                return False
            have, want = parse_int64(labels[self.key]), parse_int64(self.values[0])
            if have is None or want is None:
                return False
            return have > want if op == "gt" else have < want
        return False

    def __str__(self) -> str:
        op = self.operator
        if op == "exists":
            return self.key
        if op == "!":
            return "!" + self.key
        if op in ("in", "notin"):
            return f"{self.key} {op} ({','.join(self.values)})"
        symbol = {"gt": ">", "lt": "<"}.get(op, op)
        return f"{self.key}{symbol}{self.values[0]}"


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A parsed label selector: the AND of ``requirements`` (sorted by key)."""

    requirements: tuple[LabelRequirement, ...] = ()

    @property
    def empty(self) -> bool:
        """True when the selector does not restrict anything (matches every object)."""
        return not self.requirements

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether an object with ``labels`` is selected."""
        return all(r.matches(labels) for r in self.requirements)

    def exact(self, key: str) -> str | None:
        """The single value ``key`` must have (``key=v``, ``key==v`` or ``key in (v)``), else None.

        Like ``RequiresExactMatch``, only the first term on ``key`` is looked at; it is a hint
        for an index lookup, and ``matches`` must still be applied.
        """
        for r in self.requirements:
            if r.key == key:
                if r.operator in ("=", "==", "in") and len(r.values) == 1:
                    return r.values[0]
                return None
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


# Token kinds of the label lexer.
_EOS, _CPAR, _COMMA, _NOT, _DEQ, _EQ, _GT, _ID, _IN, _LT, _NEQ, _NOTIN, _OPAR = range(13)
_SYMBOLS = {
    ")": _CPAR, ",": _COMMA, "!": _NOT, "==": _DEQ, "=": _EQ, ">": _GT, "<": _LT, "!=": _NEQ, "(": _OPAR,
}
_KEYWORDS = {"in": _IN, "notin": _NOTIN}
_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")
_BINARY_OPERATORS = "in, notin, =, ==, !=, gt, lt"
_OPERATOR_OF_TOKEN = {_IN: "in", _NOTIN: "notin", _EQ: "=", _DEQ: "==", _NEQ: "!=", _GT: "gt", _LT: "lt"}


def _lex(text: str) -> list[tuple[int, str]]:
    """Split a label selector into (token kind, literal) pairs, ending with an end token."""
    out: list[tuple[int, str]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _WHITESPACE:
            i += 1
        if i >= n:
            out.append((_EOS, ""))
            return out
        if text[i] in _SPECIAL:
            # Longest run of special characters that still spells an operator ("!=", "==").
            j = i + 1
            if j < n and text[i:j + 1] in _SYMBOLS:
                j += 1
            lit = text[i:j]
            out.append((_SYMBOLS[lit], lit))
            i = j
            continue
        j = i
        while j < n and text[j] not in _SPECIAL and text[j] not in _WHITESPACE:
            j += 1
        lit = text[i:j]
        out.append((_KEYWORDS.get(lit, _ID), lit))
        i = j


class _LabelParser:
    """Recursive descent over the token list, with the apiserver's error wording."""

    def __init__(self, text: str) -> None:
        self.items = _lex(text)
        self.pos = 0

    def _peek(self, values: bool = True) -> tuple[int, str]:
        tok, lit = self.items[self.pos]
        # "in" and "notin" are ordinary identifiers wherever a key or value may stand.
        return (_ID, lit) if values and tok in (_IN, _NOTIN) else (tok, lit)

    def _next(self, values: bool = True) -> tuple[int, str]:
        item = self._peek(values)
        self.pos += 1
        return item

    def parse(self) -> list[LabelRequirement]:
        reqs: list[LabelRequirement] = []
        while True:
            tok, lit = self._peek()
            if tok == _EOS:
                return reqs
            if tok not in (_ID, _NOT):
                raise SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")
            try:
                reqs.append(self._requirement())
            except _RequirementError as e:
                raise SelectorError(f"unable to parse requirement: {e}") from None
            tok, lit = self._next()
            if tok == _EOS:
                return reqs
            if tok != _COMMA:
                raise SelectorError(f"found '{lit}', expected: ',' or 'end of string'")
            tok2, lit2 = self._peek()
            if tok2 not in (_ID, _NOT):
                raise SelectorError(f"found '{lit2}', expected: identifier after ','")

    def _requirement(self) -> LabelRequirement:
        negated = False
        tok, key = self._next()
        if tok == _NOT:
            negated = True
            tok, key = self._next()
        if tok != _ID:
            raise _RequirementError(f"found '{key}', expected: identifier")
        if errs := _key_errors(key):
            raise _RequirementError(f"<nil>: Invalid value: {_quote(key)}: {'; '.join(errs)}")
        if negated or self._peek()[0] in (_EOS, _COMMA):
            return _new_requirement(key, "!" if negated else "exists", [])
        tok, lit = self._next(values=False)
        op = _OPERATOR_OF_TOKEN.get(tok)
        if op is None:
            raise _RequirementError(f"found '{lit}', expected: {_BINARY_OPERATORS}")
        values = self._set_values() if op in ("in", "notin") else self._exact_value()
        return _new_requirement(key, op, values)

    def _set_values(self) -> list[str]:
        tok, lit = self._next()
        if tok != _OPAR:
            raise _RequirementError(f"found '{lit}' expected: '('")
        tok, lit = self._peek()
        if tok == _CPAR:  # "()" is the set holding the empty string
            self._next()
            return [""]
        if tok not in (_ID, _COMMA):
            raise _RequirementError(f"found '{lit}', expected: ',', ')' or identifier")
        values = self._identifier_list()
        tok2, _ = self._next()
        if tok2 != _CPAR:
            raise _RequirementError(f"found '{lit}', expected: ')'")
        return values

    def _identifier_list(self) -> list[str]:
        # Empty items are empty-string values: "(a,,b)", "(,a)" and "(a,)" all hold "".
        values: list[str] = []
        while True:
            tok, lit = self._next()
            if tok == _ID:
                values.append(lit)
                tok2, lit2 = self._peek()
                if tok2 == _COMMA:
                    continue
                if tok2 == _CPAR:
                    return values
                raise _RequirementError(f"found '{lit2}', expected: ',' or ')'")
            if tok == _COMMA:
                if not values:
                    values.append("")
                tok2, _ = self._peek()
                if tok2 == _CPAR:
                    values.append("")
                    return values
                if tok2 == _COMMA:
                    self._next()
                    values.append("")
                continue
            raise _RequirementError(f"found '{lit}', expected: ',', or identifier")

    def _exact_value(self) -> list[str]:
        tok, lit = self._peek()
        if tok in (_EOS, _COMMA):  # "k=" selects the empty value
            return [""]
        tok, lit = self._next()
        if tok != _ID:
            raise _RequirementError(f"found '{lit}', expected: identifier")
        return [lit]


class _RequirementError(Exception):
    pass


def _new_requirement(key: str, op: str, raw_values: list[str]) -> LabelRequirement:
    """Validate the values of one term (``NewRequirement``) and build it."""
    values = sorted(set(raw_values))
    errs: list[str] = []
    if op in ("gt", "lt"):
        for i, v in enumerate(values):
            if parse_int64(v) is None:
                errs.append(
                    f"values[{i}]: Invalid value: {_quote(v)}: "
                    "for 'Gt', 'Lt' operators, the value must be an integer"
                )
    for i, v in enumerate(values):
        if msgs := _value_errors(v):
            errs.append(f"values[{i}][{key}]: Invalid value: {_quote(v)}: {'; '.join(msgs)}")
    if errs:
        unique = list(dict.fromkeys(errs))
        raise _RequirementError(unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]")
    return LabelRequirement(key, op, tuple(values))


def parse_label_selector(text: str) -> LabelSelector:
    """Parse a ``labelSelector`` query value; ``""`` selects everything.

    Raises ``SelectorError`` for bad syntax, keys that are not qualified names, and values that
    are not label values.
    """
    reqs = _LabelParser(text).parse()
    reqs.sort(key=lambda r: r.key)  # stable, as the apiserver sorts for a deterministic form
    return LabelSelector(tuple(reqs))


# --- field selectors ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldSelector:
    """A parsed field selector: the AND of ``requirements`` as (field, "=" or "!=", value)."""

    requirements: tuple[tuple[str, str, str], ...] = ()

    @property
    def empty(self) -> bool:
        """True when the selector does not restrict anything."""
        return not self.requirements

    @property
    def fields(self) -> frozenset[str]:
        """The field names the selector refers to (for checking them against the kind's list)."""
        return frozenset(f for f, _, _ in self.requirements)

    def matches(self, get: Callable[[str], str | None]) -> bool:
        """Whether the object whose field values ``get`` returns is selected (missing = "")."""
        for field, op, value in self.requirements:
            have = get(field)
            if ((have or "") == value) != (op == "="):
                return False
        return True

    def exact(self, field: str) -> str | None:
        """The value of the first ``field=value`` term, else None.

        A hint for a direct lookup (e.g. ``metadata.name``); ``matches`` must still be applied.
        """
        for f, op, value in self.requirements:
            if f == field and op == "=":
                return value
        return None

    def __str__(self) -> str:
        return ",".join(f"{f}{op}{_escape_field_value(v)}" for f, op, v in self.requirements)


def _escape_field_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not backslash-escaped; escapes stay in the terms."""
    terms: list[str] = []
    start, escaped = 0, False
    for i, c in enumerate(text):
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    """(lhs, operator, raw rhs) at the first operator; "!=" and "==" win over "="."""
    for i in range(len(term)):
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op):]
    return None


def _unescape_value(raw: str) -> str:
    out: list[str] = []
    escaped = False
    for c in raw:
        if escaped:
            if c not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{c}")
            out.append(c)
            escaped = False
        elif c == "\\":
            escaped = True
        elif c in ",=":
            raise SelectorError(f"invalid field selector: unescaped character in value: {c}")
        else:
            out.append(c)
    if escaped:
        raise SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def parse_field_selector(text: str) -> FieldSelector:
    """Parse a ``fieldSelector`` query value; ``""`` selects everything.

    Terms are ``field=value``, ``field==value`` or ``field!=value`` joined by commas; in values
    ``\\,``, ``\\=`` and ``\\\\`` stand for the literal characters. Which fields a kind
    supports is not checked here (see ``FieldSelector.fields``).
    """
    if not text:
        return FieldSelector()
    reqs: list[tuple[str, str, str]] = []
    for term in sorted(_split_terms(text)):
        if not term:
            continue
        split = _split_term(term)
        if split is None:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
        field, op, raw = split
        reqs.append((field, "!=" if op == "!=" else "=", _unescape_value(raw)))
    return FieldSelector(tuple(reqs))
