"""CEL mutations of a MutatingAdmissionPolicy: ``JSONPatch{...}`` lists and ``Object{...}`` apply
configurations, on cel-expr-python.

CEL builds typed objects only from message types its environment knows. cel-expr-python takes a
protobuf descriptor pool, so the types an expression constructs are made at run time from the
admitted kind's OpenAPI schema (``google.protobuf`` descriptors, as kinds/_cel_types.py):

- ``JSONPatch`` has ``op``, ``path``, ``from`` (strings) and ``value`` (``google.protobuf.Value``,
  which takes any CEL value, typed objects included, as JSON);
- kube names the types of an apply configuration by their path: ``Object`` is the object,
  ``Object.spec`` the type of its ``spec``, ``Object.spec.template.spec.containers`` the type of
  that list's items. A protobuf message cannot hold both a field ``spec`` and a nested type
  ``spec`` (the pool refuses "already defined"), so the expression's type names are rewritten
  before it is compiled (``Object.spec.template`` -> ``Object_spec_template``, outside string
  literals: the same length, so the checker's columns stay right) and one message is made for each type the expression names. A field whose type the
  expression names is that message (repeated for a list, a map for a map of objects); a scalar
  field has its schema type (proto2: a field set to 0, "" or false is still set); anything else
  is ``google.protobuf.Value`` (``dyn``: a map or list literal).

:func:`compile_mutation` compiles once (cached by expression and schema); :meth:`Mutation.evaluate`
gives the JSON patch operations or the apply configuration as plain JSON values. The caller
applies them (``actors._patch.apply_json_patch``; ``kinds._fieldpath.merge`` for an apply
configuration: structured-merge-diff's merge, as kube).
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Mapping
from typing import Any

from cel_expr_python import cel
from cel_expr_python.ext import ext_optional, ext_strings
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, struct_pb2

from ._cel import MAX_EXPRESSION_LENGTH, CelCompileError, CelEvalError, _kube_words, authz_functions
from ._schemas import definitions, ref_name

__all__ = ["APPLY_CONFIGURATION", "JSON_PATCH", "MUTATION_VARIABLES", "Mutation", "compile_mutation", "escape_key"]

JSON_PATCH = "JSONPatch"
APPLY_CONFIGURATION = "ApplyConfiguration"
MUTATION_VARIABLES = ("object", "oldObject", "request", "params", "namespaceObject", "variables", "authorizer")

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {"string": _F.TYPE_STRING, "integer": _F.TYPE_INT64, "number": _F.TYPE_DOUBLE, "boolean": _F.TYPE_BOOL}
_DYN_FORMATS = frozenset({"int-or-string", "date-time", "date", "duration", "byte"})
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VALUE = ".google.protobuf.Value"
# A string literal (left as it is) or a type name right before ``{`` (a struct construction).
_TOKENS = re.compile(r"""(?P<s>[rRbB]{0,2}(?:'''[\s\S]*?'''|\"\"\"[\s\S]*?\"\"\"|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*"))"""
                     r"""|(?P<t>(?<![\w.])(?:Object(?:\s*\.\s*[A-Za-z_]\w*)*|JSONPatch)(?=\s*\{))""")
_counter = itertools.count(1)


def escape_key(key: str) -> str:
    """``jsonpatch.escapeKey``: a map key as a JSON pointer token (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


def _mangle(path: tuple[str, ...]) -> str:
    return "_".join(("Object", *path))


def _rewrite(expression: str) -> tuple[str, set[tuple[str, ...]]]:
    """The expression with its type names mangled, and the ``Object`` paths it constructs."""
    paths: set[tuple[str, ...]] = set()

    def sub(m: re.Match[str]) -> str:
        if m.group("s") is not None:
            return m.group(0)
        parts = tuple(p.strip() for p in m.group("t").split("."))
        if parts == ("JSONPatch",):
            return "JSONPatch"
        paths.add(parts[1:])
        return _mangle(parts[1:])

    return _TOKENS.sub(sub, expression), paths


_FIELD = re.compile(r"[{,]\s*([A-Za-z_]\w*)\s*:")


def _literal_fields(rewritten: str, paths: set[tuple[str, ...]]) -> dict[tuple[str, ...], set[str]]:
    """The field names each constructed ``Object`` type is given in the expression (to compile an
    expression without a schema: kube's types are dynamic there)."""
    masked = _TOKENS.sub(lambda m: " " * len(m.group(0)) if m.group("s") is not None else m.group(0), rewritten)
    by_name = {_mangle(p): p for p in paths}
    out: dict[tuple[str, ...], set[str]] = {}
    for m in re.finditer(r"(?<![\w.])(Object\w*)\s*\{", masked):
        path = by_name.get(m.group(1))
        if path is None:
            continue
        flat: list[str] = []
        level = 0
        for ch in masked[m.end() - 1:]:
            if ch in "([{":
                level += 1
                flat.append(ch if level == 1 else " ")
            elif ch in ")]}":
                level -= 1
                if level == 0:
                    break
                flat.append(" ")
            else:
                flat.append(ch if level == 1 else " ")
        out.setdefault(path, set()).update(_FIELD.findall("".join(flat)))
    return out


def _resolve(schema: Any, defs: Mapping[str, Any]) -> Mapping[str, Any]:
    for _ in range(64):
        if not isinstance(schema, Mapping):
            return {}
        ref = schema.get("$ref")
        if not isinstance(ref, str):
            return schema
        schema = defs.get(ref_name(ref), {})
    return {}


def _element(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    """The schema a field's type name stands for: a list's items, a map's values, else itself."""
    if schema.get("type") == "array":
        return _resolve(schema.get("items"), defs)
    if not isinstance(schema.get("properties"), Mapping) and isinstance(schema.get("additionalProperties"), Mapping):
        return _resolve(schema["additionalProperties"], defs)
    return schema


class _Types:
    def __init__(self, root: Mapping[str, Any] | None, defs: Mapping[str, Any], paths: set[tuple[str, ...]],
                 fields: dict[tuple[str, ...], set[str]]) -> None:
        self.defs = defs
        self.package = f"jkmut{next(_counter)}"
        self.file = descriptor_pb2.FileDescriptorProto(name=f"{self.package}.proto", package=self.package,
                                                       syntax="proto2")
        self.file.dependency.append("google/protobuf/struct.proto")
        self.paths = paths | {()}
        self.dynamic = root is None  # every field dyn: typed objects and literals alike go into it
        # Every prefix of a named path must exist to be reached from the object (its messages
        # are made only for named paths; others are dyn).
        for path in sorted(self.paths, key=len):
            if root is None:  # no schema: dynamic types, each with the fields the expression gives it
                schema: Mapping[str, Any] | None = {"properties": {f: {} for f in fields.get(path, ())}}
            else:
                schema = self._schema_at(root, path)
            if schema is not None:
                self._message(path, schema)
        patch = self.file.message_type.add(name="JSONPatch")
        for i, name in enumerate(("op", "path", "from"), start=1):
            patch.field.add(name=name, number=i, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
        patch.field.add(name="value", number=4, type=_F.TYPE_MESSAGE, type_name=_VALUE, label=_F.LABEL_OPTIONAL)

    def _schema_at(self, root: Mapping[str, Any], path: tuple[str, ...]) -> Mapping[str, Any] | None:
        s = _resolve(root, self.defs)
        for seg in path:
            props = s.get("properties")
            if not isinstance(props, Mapping) or seg not in props:
                return None
            s = _element(_resolve(props[seg], self.defs), self.defs)
        return s

    def _message(self, path: tuple[str, ...], schema: Mapping[str, Any]) -> None:
        msg = self.file.message_type.add(name=_mangle(path))
        props = schema.get("properties")
        if not isinstance(props, Mapping):
            return
        for number, (name, sub) in enumerate(sorted(props.items()), start=1):
            if not _IDENT.match(str(name)):
                continue
            s = _resolve(sub, self.defs)
            f = msg.field.add(name=str(name), number=number, label=_F.LABEL_OPTIONAL)
            child = (*path, str(name))
            if self.dynamic:
                f.type, f.type_name = _F.TYPE_MESSAGE, _VALUE
            elif child in self.paths:
                full = f".{self.package}.{_mangle(child)}"
                if s.get("type") == "array":
                    f.label, f.type, f.type_name = _F.LABEL_REPEATED, _F.TYPE_MESSAGE, full
                elif not isinstance(s.get("properties"), Mapping) and isinstance(s.get("additionalProperties"),
                                                                                    Mapping):
                    entry = msg.nested_type.add(name=f"{name[:1].upper()}{name[1:]}Entry")
                    entry.options.map_entry = True
                    entry.field.add(name="key", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
                    entry.field.add(name="value", number=2, type=_F.TYPE_MESSAGE, type_name=full,
                                    label=_F.LABEL_OPTIONAL)
                    f.label, f.type = _F.LABEL_REPEATED, _F.TYPE_MESSAGE
                    f.type_name = f".{self.package}.{msg.name}.{entry.name}"
                else:
                    f.type, f.type_name = _F.TYPE_MESSAGE, full
            elif s.get("type") in _SCALARS and not s.get("x-kubernetes-int-or-string") \
                    and s.get("format") not in _DYN_FORMATS:
                f.type = _SCALARS[s["type"]]
            else:
                f.type, f.type_name = _F.TYPE_MESSAGE, _VALUE

    def pool(self) -> Any:
        pool = descriptor_pool.DescriptorPool()
        pool.AddSerializedFile(struct_pb2.DESCRIPTOR.serialized_pb)
        pool.Add(self.file)
        return pool


def _plain(value: Any) -> Any:
    """A CEL result as JSON values: messages by their set fields, ``Value`` s as JSON, integral
    floats as ints (JSON numbers; a ``Value`` keeps numbers as doubles)."""
    if isinstance(value, struct_pb2.Value) or getattr(getattr(value, "DESCRIPTOR", None), "full_name", "") in (
            "google.protobuf.Value", "google.protobuf.Struct", "google.protobuf.ListValue"):
        return _numbers(json_format.MessageToDict(value))
    if hasattr(value, "ListFields"):
        out: dict[str, Any] = {}
        for fd, v in value.ListFields():
            if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
                out[fd.name] = {k: _plain(x) for k, x in v.items()}
            elif fd.is_repeated:
                out[fd.name] = [_plain(x) for x in v]
            else:
                out[fd.name] = _plain(v)
        return out
    if isinstance(value, list):
        return [_plain(x) for x in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return _numbers(value)


def _numbers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_numbers(x) for x in value]
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    return value


class Mutation:
    """One compiled mutation; :meth:`evaluate` gives its patch operations or apply configuration."""

    __slots__ = ("_expr", "expression", "patch_type", "used")

    def __init__(self, expression: str, patch_type: str, expr: Any) -> None:
        self.expression = expression
        self.patch_type = patch_type
        self.used = tuple(v for v in MUTATION_VARIABLES if re.search(rf"\b{v}\b", expression))
        self._expr = expr

    def evaluate(self, data: dict[str, Any]) -> Any:
        """JSONPatch: a list of ``{"op", "path", "value"?, "from"?}``; ApplyConfiguration: the
        configuration object. :class:`CelEvalError` when the expression errs or gives another type."""
        try:
            v = self._expr.eval(data={k: data.get(k) for k in self.used})
        except (RuntimeError, TypeError, ValueError) as e:
            raise CelEvalError(str(e)) from None
        if v.type() == cel.Type.ERROR:
            raise CelEvalError(_kube_words(str(v.value())))
        raw = v.plain_value()
        if self.patch_type == JSON_PATCH:
            if not isinstance(raw, list) or not all(getattr(getattr(x, "DESCRIPTOR", None), "name", "") == "JSONPatch"
                                                    for x in raw):
                raise CelEvalError("must evaluate to a list of JSONPatch")
            return [_plain(x) for x in raw]
        if getattr(getattr(raw, "DESCRIPTOR", None), "name", "") != "Object":
            raise CelEvalError("must evaluate to Object")
        return _plain(raw)


class _Key:
    """Hashable by identity (a schema dict is not hashable; each kind's schema is one object)."""

    __slots__ = ("schema",)

    def __init__(self, schema: Any) -> None:
        self.schema = schema

    def __hash__(self) -> int:
        return id(self.schema)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Key) and other.schema is self.schema


@functools.lru_cache(maxsize=1024)
def _compile(expression: str, patch_type: str, key: _Key) -> Mutation:
    rewritten, paths = _rewrite(expression)
    types = _Types(key.schema, definitions(), paths, _literal_fields(rewritten, paths) if key.schema is None else {})
    functions = [*authz_functions(),
                 cel.FunctionDecl("jsonpatch.escapeKey", [cel.Overload("jsonpatch_escape_key", cel.Type.STRING,
                                                                       [cel.Type.STRING], impl=escape_key)])]
    variables = {v: cel.Type.DYN for v in MUTATION_VARIABLES}
    variables["authorizer"] = cel.Type.MAP
    env = cel.NewEnv(descriptor_pool=types.pool(), variables=variables, container=types.package,
                     extensions=[ext_strings.ExtStrings(), ext_optional.ExtOptional()], functions=functions)
    try:
        expr = env.compile(rewritten)
    except RuntimeError as e:
        msg = str(e).removeprefix("INVALID_ARGUMENT: ").removesuffix(" [INVALID_ARGUMENT]")
        # Errors quote the rewritten text: give kube's type names back.
        msg = re.sub(r" not found in struct '[^']*'", "", msg).replace(f"{types.package}.", "")
        # Give kube's type names back: the quoted line is the original expression (the same
        # length, so the caret below it still points at the right column).
        lines = [f" | {expression}" if line == f" | {rewritten}" else line for line in msg.split("\n")]
        for path in sorted(paths, key=len, reverse=True):
            if path:
                name = re.compile(rf"\b{_mangle(path)}\b")
                lines = [line if line.startswith(" | ") else name.sub(".".join(("Object", *path)), line)
                         for line in lines]
        raise CelCompileError("\n".join(lines)) from None
    return Mutation(expression, patch_type, expr)


def compile_mutation(expression: str, patch_type: str, schema: Mapping[str, Any] | None) -> Mutation:
    """Compile a mutation of ``patch_type`` (JSONPatch or ApplyConfiguration) for objects of
    ``schema`` (the admitted kind's OpenAPI schema; ``$ref`` s resolve in the built-in
    definitions); without a schema the types are dynamic (any field, any value: what a policy's
    validation checks). :class:`CelCompileError` when it is too long or does not compile."""
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise CelCompileError(f"expression is too long: {len(expression)} > {MAX_EXPRESSION_LENGTH} characters")
    return _compile(expression, patch_type, _Key(schema))
