"""Kubernetes name, label, annotation and object-metadata validation: pure functions.

The ``is_*`` checks mirror ``k8s.io/apimachinery/pkg/util/validation``: each returns the list of
problems as the apiserver words them (empty means valid). ``validate_*`` turn those into
``Cause`` entries the way ``field.ErrorList`` becomes ``details.causes[]``: ``field`` is the
field path and ``message`` is the error body, e.g. ``Invalid value: "Foo": a lowercase RFC 1123
...`` or ``Required value: name or generateName is required``, so that ``_errors.invalid`` yields
the apiserver's ``<Kind> "<name>" is invalid: <field>: <body>`` text.

Lengths are counted in UTF-8 bytes, as Go's ``len`` does.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

from ._errors import Cause

__all__ = [
    "ANNOTATIONS_MAX_BYTES",
    "FIELD_MANAGER_MAX_BYTES",
    "field_duplicate",
    "field_forbidden",
    "field_invalid",
    "field_not_found",
    "field_required",
    "field_unsupported",
    "go_base64_decode",
    "go_repr",
    "is_config_map_key",
    "is_dns1035_label",
    "is_dns1123_label",
    "is_dns1123_subdomain",
    "is_qualified_name",
    "is_relaxed_env_var_name",
    "is_valid_label_value",
    "is_valid_path_segment_name",
    "is_valid_port_name",
    "validate_config_map_keys",
    "validate_field_manager",
    "validate_labels",
    "validate_object_meta",
]

ANNOTATIONS_MAX_BYTES = 256 * 1024
"""Total size limit of ``metadata.annotations`` (keys plus values), in bytes."""

FIELD_MANAGER_MAX_BYTES = 128
"""Longest ``fieldManager`` a write may name (``FieldManagerMaxLength``)."""

_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_LABEL_MAX = 63
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + r"(\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_SUBDOMAIN_MAX = 253
_QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_QNAME_MAX = 63
_LABEL_VALUE_FMT = "(" + _QNAME_FMT + ")?"
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_LABEL_VALUE_MAX = 63
_CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"
_CONFIG_KEY_MSG = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"

# Go's regexp anchored with ^...$ matches the whole string; re.fullmatch is the equivalent
# (a Python ``$`` would also accept a trailing newline).
_DNS1123_LABEL_RE = re.compile(_DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN_RE = re.compile(_DNS1123_SUBDOMAIN_FMT)
_QNAME_RE = re.compile(_QNAME_FMT)
_LABEL_VALUE_RE = re.compile(_LABEL_VALUE_FMT)
_CONFIG_KEY_RE = re.compile(_CONFIG_KEY_FMT)

_FINALIZER_ORPHAN = "orphan"
_FINALIZER_FOREGROUND = "foregroundDeletion"


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    """The apiserver's ``RegexError`` wording: message, examples and the regex."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    # Go appends "'<example>', " per example and " or " between them: "'a',  or 'b', regex ...".
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def _max_len_error(length: int) -> str:
    return f"must be no more than {length} characters"


def _nbytes(value: str) -> int:
    return len(value.encode("utf-8", "surrogatepass"))


def is_dns1123_label(value: str) -> list[str]:
    """Problems with ``value`` as an RFC 1123 label (namespace names, service names, ...)."""
    errs: list[str] = []
    if _nbytes(value) > _DNS1123_LABEL_MAX:
        errs.append(_max_len_error(_DNS1123_LABEL_MAX))
    if not _DNS1123_LABEL_RE.fullmatch(value):
        if _DNS1123_SUBDOMAIN_RE.fullmatch(value):
            # A valid subdomain but not a label: the length was checked, so it must be dots.
            errs.append("must not contain dots")
        else:
            errs.append(_regex_error(_DNS1123_LABEL_MSG, _DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


_DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1035_LABEL_RE = re.compile(_DNS1035_LABEL_FMT)
_DNS1035_LABEL_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character"
)


def is_dns1035_label(value: str) -> list[str]:
    """Problems with ``value`` as an RFC 1035 label (service names: they become DNS names)."""
    errs: list[str] = []
    if _nbytes(value) > _DNS1123_LABEL_MAX:
        errs.append(_max_len_error(_DNS1123_LABEL_MAX))
    if not _DNS1035_LABEL_RE.fullmatch(value):
        errs.append(_regex_error(_DNS1035_LABEL_MSG, _DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


_PORT_NAME_CHARSET_RE = re.compile("[-a-z0-9]+")
_PORT_NAME_LETTER_RE = re.compile("[a-z]")


def is_valid_port_name(value: str) -> list[str]:
    """Problems with ``value`` as an IANA service name (container and service port names)."""
    errs: list[str] = []
    if _nbytes(value) > 15:
        errs.append(_max_len_error(15))
    if not _PORT_NAME_CHARSET_RE.fullmatch(value):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not _PORT_NAME_LETTER_RE.search(value):
        errs.append("must contain at least one letter (a-z)")
    if "--" in value:
        errs.append("must not contain consecutive hyphens")
    if value and (value[0] == "-" or value[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def is_relaxed_env_var_name(value: str) -> list[str]:
    """Problems with ``value`` as an environment variable name (kube 1.33 has the
    RelaxedEnvironmentVariableValidation gate on: printable ASCII but '=')."""
    errs: list[str] = []
    if not value:
        errs.append("environment variable name must be non-empty")
    if any(not (32 <= ord(c) <= 126) or c == "=" for c in value):
        errs.append("a valid environment variable name must consist only of printable ASCII characters "
                    "other than '='")
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    """Problems with ``value`` as an RFC 1123 subdomain (most object names)."""
    errs: list[str] = []
    if _nbytes(value) > _DNS1123_SUBDOMAIN_MAX:
        errs.append(_max_len_error(_DNS1123_SUBDOMAIN_MAX))
    if not _DNS1123_SUBDOMAIN_RE.fullmatch(value):
        errs.append(_regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


_VALID_MAX = 4096


def _remember_valid(check: Callable[[str], list[str]]) -> Callable[[str], list[str]]:
    """``check`` with the strings that passed it remembered (bounded: forgotten all at once when
    full). Label keys and values and data keys repeat across writes; a failing string is checked
    each time, so its problems are always worded afresh. What passes is short (each of these checks
    bounds the length), so the memory stays small."""
    valid: set[str] = set()

    @functools.wraps(check)
    def remembered(value: str) -> list[str]:
        if type(value) is str and value in valid:
            return []
        errs = check(value)
        if not errs and type(value) is str:
            if len(valid) >= _VALID_MAX:
                valid.clear()
            valid.add(value)
        return errs

    return remembered


@_remember_valid
def is_qualified_name(value: str) -> list[str]:
    """Problems with ``value`` as a qualified name: ``[dns-subdomain-prefix/]name`` (label keys)."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in is_dns1123_subdomain(prefix))
    else:
        return [
            "a qualified name "
            + _regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part must be non-empty")
    elif _nbytes(name) > _QNAME_MAX:
        errs.append("name part " + _max_len_error(_QNAME_MAX))
    if not _QNAME_RE.fullmatch(name):
        errs.append("name part " + _regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc"))
    return errs


@_remember_valid
def is_valid_label_value(value: str) -> list[str]:
    """Problems with ``value`` as a label value (may be empty)."""
    errs: list[str] = []
    if _nbytes(value) > _LABEL_VALUE_MAX:
        errs.append(_max_len_error(_LABEL_VALUE_MAX))
    if not _LABEL_VALUE_RE.fullmatch(value):
        errs.append(_regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


@_remember_valid
def is_config_map_key(value: str) -> list[str]:
    """Problems with ``value`` as a ConfigMap/Secret data key (``IsConfigMapKey``)."""
    errs: list[str] = []
    if _nbytes(value) > _DNS1123_SUBDOMAIN_MAX:
        errs.append(_max_len_error(_DNS1123_SUBDOMAIN_MAX))
    if not _CONFIG_KEY_RE.fullmatch(value):
        errs.append(_regex_error(_CONFIG_KEY_MSG, _CONFIG_KEY_FMT, "key.name", "KEY_NAME", "key-name"))
    if value == ".":
        errs.append("must not be '.'")
    elif value == "..":
        errs.append("must not be '..'")
    elif value.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def is_valid_path_segment_name(value: str) -> list[str]:
    """Problems with ``value`` as a URL path segment (the loosest name rule: events, RBAC kinds)."""
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return _path_segment_prefix(value)


def _path_segment_prefix(value: str) -> list[str]:
    return [f"may not contain '{c}'" for c in ("/", "%") if c in value]


def _stored_path_segment_name(value: str, prefix: bool) -> list[str]:
    """A path-segment name jetkube can store. kube-apiserver bounds these names only by etcd's
    request size; here every name is a token of the object's subject, so they get the subdomain
    names' 253-byte bound, in the apiserver's words for it."""
    errs = [] if _nbytes(value) <= _DNS1123_SUBDOMAIN_MAX else [_max_len_error(_DNS1123_SUBDOMAIN_MAX)]
    return errs + (_path_segment_prefix(value) if prefix else is_valid_path_segment_name(value))


def _mask_trailing_dash(name: str) -> str:
    # A generateName prefix may end in '-': the generated suffix follows it. Checking the prefix
    # as a name needs an alphanumeric end, so the apiserver swaps the last two characters for 'a'.
    if len(name) > 1 and name.endswith("-"):
        return name[:-2] + "a"
    return name


NameRule = Literal["subdomain", "label", "path"]


def _name_checker(rule: NameRule) -> Callable[[str, bool], list[str]]:
    if rule == "subdomain":
        return lambda v, prefix: is_dns1123_subdomain(_mask_trailing_dash(v) if prefix else v)
    if rule == "label":
        return lambda v, prefix: is_dns1123_label(_mask_trailing_dash(v) if prefix else v)
    if rule == "path":
        return _stored_path_segment_name
    raise ValueError(f"unknown name rule {rule!r}")


def _go_repr(value: Any) -> str:
    """How ``field.Invalid`` prints a bad value: strings quoted, simple values bare."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "[]string{" + ", ".join(json.dumps(v, ensure_ascii=False) for v in value) + "}"
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _invalid(field: str, value: Any, detail: str) -> Cause:
    return Cause("FieldValueInvalid", f"Invalid value: {_go_repr(value)}: {detail}", field)


def go_repr(value: Any) -> str:
    """A bad value as kube 1.33's ``field.Error`` prints it (before 1.34 printed JSON): strings
    quoted, numbers and booleans bare, string lists as ``[]string{...}``, ``str -> str`` maps as
    ``map[string]string{...}`` (Go prints map keys sorted)."""
    if isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        inner = ", ".join(f"{json.dumps(k, ensure_ascii=False)}:{json.dumps(value[k], ensure_ascii=False)}"
                          for k in sorted(value))
        return "map[string]string{" + inner + "}"
    return _go_repr(value)


def field_invalid(field: str, value: Any, detail: str) -> Cause:
    """``field.Invalid``: ``<field>: Invalid value: <value>: <detail>``."""
    return Cause("FieldValueInvalid", f"Invalid value: {go_repr(value)}: {detail}" if detail
                 else f"Invalid value: {go_repr(value)}", field)


def field_required(field: str, detail: str = "") -> Cause:
    """``field.Required``: ``<field>: Required value[: <detail>]``."""
    return _required(field, detail)


def field_forbidden(field: str, detail: str) -> Cause:
    """``field.Forbidden``: ``<field>: Forbidden: <detail>``."""
    return _forbidden(field, detail)


def field_duplicate(field: str, value: Any) -> Cause:
    """``field.Duplicate``: ``<field>: Duplicate value: <value>``."""
    return Cause("FieldValueDuplicate", f"Duplicate value: {go_repr(value)}", field)


def field_not_found(field: str, value: Any) -> Cause:
    """``field.NotFound``: ``<field>: Not found: <value>``."""
    return Cause("FieldValueNotFound", f"Not found: {go_repr(value)}", field)


def field_unsupported(field: str, value: Any, supported: tuple[str, ...] | list[str]) -> Cause:
    """``field.NotSupported``: ``<field>: Unsupported value: <value>: supported values: "a", "b"``."""
    shown = ", ".join(json.dumps(v) for v in supported)
    return Cause("FieldValueNotSupported", f"Unsupported value: {go_repr(value)}: supported values: {shown}", field)


def _required(field: str, detail: str = "") -> Cause:
    return Cause("FieldValueRequired", f"Required value: {detail}" if detail else "Required value", field)


def _forbidden(field: str, detail: str) -> Cause:
    return Cause("FieldValueForbidden", f"Forbidden: {detail}", field)


def _too_long(field: str, max_bytes: int) -> Cause:
    return Cause("FieldValueTooLong", f"Too long: must have at most {max_bytes} bytes", field)


def _string_map(value: Any, field: str, causes: list[Cause]) -> dict[str, str] | None:
    """``value`` as a map of strings, or None after recording why it is not one."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        causes.append(_invalid(field, value, "must be a map of string keys to string values"))
        return None
    good: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(v, str):
            causes.append(_invalid(f"{field}[{k}]", v, "must be a string"))
        else:
            good[str(k)] = v
    return good


def _validate_labels(labels: Any, field: str) -> list[Cause]:
    causes: list[Cause] = []
    good = _string_map(labels, field, causes)
    for k, v in (good or {}).items():
        causes.extend(_invalid(field, k, m) for m in is_qualified_name(k))
        causes.extend(_invalid(field, v, m) for m in is_valid_label_value(v))
    return causes


def _validate_annotations(annotations: Any, field: str) -> list[Cause]:
    causes: list[Cause] = []
    good = _string_map(annotations, field, causes)
    if good is None:
        return causes
    total = 0
    for k, v in good.items():
        # The rule is a qualified name, except that case does not matter.
        causes.extend(_invalid(field, k, m) for m in is_qualified_name(k.lower()))
        total += _nbytes(k) + _nbytes(v)
    if total > ANNOTATIONS_MAX_BYTES:
        causes.append(_too_long(field, ANNOTATIONS_MAX_BYTES))
    return causes


def _validate_finalizers(finalizers: Any, field: str) -> list[Cause]:
    if finalizers is None:
        return []
    if not isinstance(finalizers, list):
        return [_invalid(field, finalizers, "must be a list of strings")]
    causes: list[Cause] = []
    for f in finalizers:
        if not isinstance(f, str):
            causes.append(_invalid(field, f, "must be a string"))
            continue
        causes.extend(_invalid(field, f, m) for m in is_qualified_name(f))
    if _FINALIZER_ORPHAN in finalizers and _FINALIZER_FOREGROUND in finalizers:
        causes.append(_invalid(
            field, finalizers,
            f"finalizer {_FINALIZER_ORPHAN} and {_FINALIZER_FOREGROUND} cannot be both set",
        ))
    return causes


def _validate_name(meta: Mapping[str, Any], rule: NameRule, field: str) -> list[Cause]:
    check = _name_checker(rule)
    causes: list[Cause] = []
    name = meta.get("name")
    generate_name = meta.get("generateName")
    if generate_name is not None and not isinstance(generate_name, str):
        causes.append(_invalid(f"{field}.generateName", generate_name, "must be a string"))
        generate_name = None
    if generate_name:
        causes.extend(_invalid(f"{field}.generateName", generate_name, m) for m in check(generate_name, True))
    if name is not None and not isinstance(name, str):
        causes.append(_invalid(f"{field}.name", name, "must be a string"))
    elif not name:
        # With a generateName the registry fills the name in before it is stored.
        if not generate_name:
            causes.append(_required(f"{field}.name", "name or generateName is required"))
    else:
        causes.extend(_invalid(f"{field}.name", name, m) for m in check(name, False))
    return causes


def _validate_namespace(meta: Mapping[str, Any], namespaced: bool, field: str) -> list[Cause]:
    namespace = meta.get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        return [_invalid(f"{field}.namespace", namespace, "must be a string")]
    if namespaced:
        if not namespace:
            return [_required(f"{field}.namespace")]
        return [_invalid(f"{field}.namespace", namespace, m) for m in is_dns1123_label(namespace)]
    if namespace:
        return [_forbidden(f"{field}.namespace", "not allowed on this type")]
    return []


# An owner may not be of these kinds (``BannedOwners``): (group, version, kind).
_BANNED_OWNERS = frozenset({("", "v1", "Event")})


def _group_version(api_version: str) -> tuple[str, str]:
    """``schema.ParseGroupVersion`` as ``FromAPIVersionAndKind`` uses it: ("", "") when unparsable."""
    parts = api_version.split("/")
    if len(parts) == 1:
        return "", parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    return "", ""


def _validate_owner_references(refs: Any, field: str) -> list[Cause]:
    """``ValidateOwnerReferences``: apiVersion (with a version), kind, name and uid are required,
    an Event may not own anything, and at most one reference is the controller. Causes name the
    list's field path without an index, as the apiserver's do."""
    if not isinstance(refs, list):
        return []  # the wrong JSON type is the typed decoder's 400
    causes: list[Cause] = []
    controller = ""
    for ref in refs:
        if not isinstance(ref, Mapping):
            continue
        api_version, kind = str(ref.get("apiVersion") or ""), str(ref.get("kind") or "")
        group, version = _group_version(api_version)
        if not version:
            causes.append(_invalid(f"{field}.apiVersion", api_version, "version must not be empty"))
        if not kind:
            causes.append(_invalid(f"{field}.kind", kind, "must not be empty"))
        for key in ("name", "uid"):
            if not ref.get(key):
                causes.append(_invalid(f"{field}.{key}", str(ref.get(key) or ""), "must not be empty"))
        if (group, version, kind) in _BANNED_OWNERS:
            causes.append(_invalid(field, dict(ref),
                                   f"{group}/{version}, Kind={kind} is disallowed from being an owner"))
        if ref.get("controller") is True:
            name = f"{kind}/{ref.get('name') or ''}"
            if controller:
                why = f'Only one reference can have Controller set to true. Found "true" in references for ' \
                      f"{controller} and {name}"
                causes.append(_invalid(field, refs, why))
            else:
                controller = name
    return causes


def validate_field_manager(manager: str, field: str = "fieldManager") -> list[Cause]:
    """``ValidateFieldManager``: at most 128 bytes, every character printable (Go's ``unicode.IsPrint``:
    no controls, no separators but the ASCII space)."""
    causes = [_too_long(field, FIELD_MANAGER_MAX_BYTES)] if _nbytes(manager) > FIELD_MANAGER_MAX_BYTES else []
    at = 0
    for ch in manager:
        if not ch.isprintable():
            causes.append(_invalid(field, manager, f"invalid character U+{ord(ch):04X} (at position {at})"))
        at += _nbytes(ch)
    return causes


_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VALUES = {c: i for i, c in enumerate(_B64_ALPHABET)}
_NEWLINES = b"\r\n"


def go_base64_decode(value: str) -> bytes:
    """Decode standard, padded base64 as Go's ``base64.StdEncoding`` (what the apiserver's JSON
    decoder uses for ``[]byte`` fields): ``\r`` and ``\n`` anywhere are skipped, anything else
    outside the alphabet is an error. Raises ``ValueError("illegal base64 data at input byte N")``
    with Go's offset."""
    src = value.encode()
    out = bytearray()
    si, n = 0, len(src)

    def corrupt(offset: int) -> ValueError:
        return ValueError(f"illegal base64 data at input byte {offset}")

    while True:
        quantum: list[int] = []
        done = False
        while len(quantum) < 4:
            if si == n:
                if not quantum:
                    return bytes(out)
                raise corrupt(si - len(quantum))
            c = src[si]
            si += 1
            if c in _B64_VALUES:
                quantum.append(_B64_VALUES[c])
                continue
            if c in _NEWLINES:
                continue
            if c != ord("=") or len(quantum) < 2:
                raise corrupt(si - 1)
            if len(quantum) == 2:  # "==" expected: the second '=' after any newlines
                while si < n and src[si] in _NEWLINES:
                    si += 1
                if si == n:
                    raise corrupt(n)
                if src[si] != ord("="):
                    raise corrupt(si - 1)
                si += 1
            while si < n and src[si] in _NEWLINES:
                si += 1
            if si < n:
                raise corrupt(si)
            done = True
            break
        bits = 0
        for v in quantum + [0] * (4 - len(quantum)):
            bits = bits << 6 | v
        out += bits.to_bytes(3, "big")[: len(quantum) - 1]
        if done:
            return bytes(out)


def validate_object_meta(
    meta: Any,
    *,
    namespaced: bool,
    name_rule: NameRule = "subdomain",
    field: str = "metadata",
) -> list[Cause]:
    """Validate an object's metadata as ``ValidateObjectMeta`` does on create and update.

    Checks name/generateName (``name_rule``: ``subdomain`` for most kinds, ``label`` for
    namespaces and services, ``path`` for events and RBAC kinds), namespace presence and format,
    generation, labels, annotations (keys and a 256 KiB total), owner references and finalizers.
    An empty list means valid.
    """
    if not isinstance(meta, Mapping):
        return [_invalid(field, meta, "must be an object")]
    causes = _validate_name(meta, name_rule, field)
    causes += _validate_namespace(meta, namespaced, field)
    generation = meta.get("generation")
    if isinstance(generation, int) and not isinstance(generation, bool) and generation < 0:
        causes.append(_invalid(f"{field}.generation", generation, "must be greater than or equal to 0"))
    causes += _validate_labels(meta.get("labels"), f"{field}.labels")
    causes += _validate_annotations(meta.get("annotations"), f"{field}.annotations")
    causes += _validate_owner_references(meta.get("ownerReferences"), f"{field}.ownerReferences")
    causes += _validate_finalizers(meta.get("finalizers"), f"{field}.finalizers")
    return causes


def validate_labels(labels: Any, field: str) -> list[Cause]:
    """``ValidateLabels``: qualified-name keys and label values (``spec.nodeSelector``,
    ``spec.selector`` maps, template labels)."""
    return _validate_labels(labels, field)


def validate_config_map_keys(data: Any, field: str) -> list[Cause]:
    """Validate the keys of a ConfigMap ``data``/``binaryData`` or Secret ``data`` map.

    Each bad key gives a ``FieldValueInvalid`` cause at ``<field>[<key>]``.
    """
    if data is None:
        return []
    if not isinstance(data, Mapping):
        return [_invalid(field, data, "must be a map")]
    causes: list[Cause] = []
    for key in data:
        k = str(key)
        causes.extend(_invalid(f"{field}[{k}]", k, m) for m in is_config_map_key(k))
    return causes
