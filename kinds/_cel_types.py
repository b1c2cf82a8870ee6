"""CEL types from OpenAPI schemas: type checking of admission policy expressions against a kind.

kube type-checks a ValidatingAdmissionPolicy's expressions against the schema of each kind its
``matchConstraints`` name and reports what does not check in ``status.typeChecking``
(``plugin/policy/validating/typechecking.go``). cel-expr-python declares typed variables only
with protobuf message types, so a schema is turned into protobuf descriptors, built at run time
(``google.protobuf`` descriptor pool; one message per OpenAPI definition or inline object):

- ``string`` → string, ``integer`` → int64, ``number`` → double, ``boolean`` → bool;
- an object with ``properties`` → a message; with ``additionalProperties`` → ``map<string, V>``;
- an array → ``repeated`` of its items' type;
- what CEL sees as ``dyn`` in kube, or what a message cannot say (int-or-string, preserved
  unknown fields, embedded resources, dates and durations, byte strings, objects without
  properties, arrays of arrays, maps of lists, field names that are not identifiers) →
  ``google.protobuf.Value``, which CEL treats as ``dyn``: never a false warning.

The checker reports what cel-cpp's checker finds: syntax errors, undeclared references and
functions, fields that do not exist in the kind's schema, and overloads that do not match the
declared types. Comparisons across numeric types (``int < double``), which kube's CEL allows,
are not reported. Messages are cel-go's (``undefined field 'x'``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import Any

from cel_expr_python import cel
from cel_expr_python.ext import ext_optional, ext_strings
from google.protobuf import descriptor_pb2, descriptor_pool, struct_pb2

from ._cel import MAX_EXPRESSION_LENGTH, authz_functions
from ._schemas import definitions, ref_name

__all__ = ["SchemaTypes", "check_expression", "schema_types"]

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {"string": _F.TYPE_STRING, "integer": _F.TYPE_INT64, "number": _F.TYPE_DOUBLE, "boolean": _F.TYPE_BOOL}
_DYN_FORMATS = frozenset({"int-or-string", "date-time", "date", "duration", "byte"})
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VALUE = ".google.protobuf.Value"
_counter = itertools.count(1)
_NUMERIC = r"(?:int|uint|double)"
_CROSS_NUMERIC = re.compile(rf"found no matching overload for '_(?:<|<=|>|>=|==|!=)_' applied to "
                            rf"'\({_NUMERIC}, {_NUMERIC}\)'")
_NOT_IN_STRUCT = re.compile(r" not found in struct '[^']*'")
_RETURN_SCALARS = {"INT": _F.TYPE_INT64, "UINT": _F.TYPE_UINT64, "DOUBLE": _F.TYPE_DOUBLE, "STRING": _F.TYPE_STRING,
                   "BOOL": _F.TYPE_BOOL, "BYTES": _F.TYPE_BYTES}


def _resolve(schema: Any, defs: Mapping[str, Any]) -> tuple[Mapping[str, Any], str]:
    """(the schema a ``$ref`` chain names, the definition name it ended at or "")."""
    name = ""
    for _ in range(64):
        if not isinstance(schema, Mapping):
            return {}, name
        ref = schema.get("$ref")
        if not isinstance(ref, str):
            return schema, name
        name = ref_name(ref)
        schema = defs.get(name, {})
    return {}, name


class _Builder:
    def __init__(self, defs: Mapping[str, Any], package: str) -> None:
        self.defs = defs
        self.package = package
        self.file = descriptor_pb2.FileDescriptorProto(name=f"{package}.proto", package=package, syntax="proto3")
        self.file.dependency.append("google/protobuf/struct.proto")
        self.by_def: dict[str, str] = {}
        self.names: set[str] = set()

    def _message_name(self, hint: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_]", "_", hint) or "T"
        if not base[0].isalpha():
            base = "T" + base
        name, n = base, 1
        while name in self.names:
            n += 1
            name = f"{base}_{n}"
        self.names.add(name)
        return name

    def message(self, schema: Any, hint: str) -> str | None:
        """The full name (``.pkg.Msg``) of the message for an object schema; None: it is dyn."""
        s, def_name = _resolve(schema, self.defs)
        if def_name and def_name in self.by_def:
            return self.by_def[def_name]
        props = s.get("properties")
        if not isinstance(props, Mapping) or not props or s.get("x-kubernetes-preserve-unknown-fields") \
                or s.get("x-kubernetes-embedded-resource") or not all(_IDENT.match(str(k)) for k in props):
            return None
        name = self._message_name(def_name.rsplit(".", 1)[-1] if def_name else hint)
        full = f".{self.package}.{name}"
        if def_name:
            self.by_def[def_name] = full  # before the fields: definitions refer to themselves
        msg = self.file.message_type.add(name=name)
        for number, (field, sub) in enumerate(sorted(props.items()), start=1):
            self._field(msg, str(field), sub, number, f"{name}_{field}")
        return full

    def _field(self, msg: Any, name: str, schema: Any, number: int, hint: str) -> None:
        s, _ = _resolve(schema, self.defs)
        f = msg.field.add(name=name, number=number, label=_F.LABEL_OPTIONAL)
        typ = s.get("type")
        if typ == "array":
            items, _ = _resolve(s.get("items"), self.defs)
            if items.get("type") == "array" or not items:
                self._dyn(f)
                return
            f.label = _F.LABEL_REPEATED
            self._element(f, items, s.get("items"), hint)
            return
        if typ == "object" and not isinstance(s.get("properties"), Mapping) \
                and isinstance(s.get("additionalProperties"), Mapping):
            value, _ = _resolve(s["additionalProperties"], self.defs)
            if value.get("type") == "array" or not value:
                self._dyn(f)
                return
            entry = msg.nested_type.add(name=f"{name[:1].upper()}{name[1:]}Entry")
            entry.options.map_entry = True
            entry.field.add(name="key", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
            vf = entry.field.add(name="value", number=2, label=_F.LABEL_OPTIONAL)
            self._element(vf, value, s["additionalProperties"], hint)
            f.label = _F.LABEL_REPEATED
            f.type = _F.TYPE_MESSAGE
            f.type_name = f".{self.package}.{msg.name}.{entry.name}"
            return
        self._element(f, s, schema, hint)

    def _element(self, f: Any, s: Mapping[str, Any], raw: Any, hint: str) -> None:
        typ = s.get("type")
        if s.get("x-kubernetes-int-or-string") or s.get("format") in _DYN_FORMATS \
                or s.get("x-kubernetes-preserve-unknown-fields"):
            self._dyn(f)
        elif typ in _SCALARS:
            f.type = _SCALARS[typ]
        elif typ == "object" or isinstance(s.get("properties"), Mapping):
            full = self.message(raw, hint)
            if full is None:
                self._dyn(f)
            else:
                f.type, f.type_name = _F.TYPE_MESSAGE, full
        else:
            self._dyn(f)

    @staticmethod
    def _dyn(f: Any) -> None:
        f.type, f.type_name = _F.TYPE_MESSAGE, _VALUE


class SchemaTypes:
    """CEL declarations for the kinds a policy names: ``types`` maps a variable to its message
    type name (variables not named are ``dyn``)."""

    def __init__(self, pool: Any, types: dict[str, str], package: str = "") -> None:
        self.pool = pool
        self.types = types
        self.package = package
        #: The CEL environment per variable set (lives as long as these types do).
        self.envs: dict[tuple[str, ...], Any] = {}

    def with_variables(self, variables: list[tuple[str, str]], names: tuple[str, ...]) -> SchemaTypes:
        """These types plus ``variables`` typed as kube's composited variables: each variable a
        field of the type its expression gives (checked in order; one that does not check, or
        whose type a message cannot say, is dyn)."""
        fields: list[tuple[str, Any]] = []
        n = next(_counter)
        current: SchemaTypes = self
        for name, expr in variables:
            if not _IDENT.match(name):
                continue
            try:
                t = _env(current, names).compile(expr).return_type()
            except RuntimeError:
                t = None
            fields.append((name, t))
            current = self._variables_message(fields, f"{self.package}v{n}_{len(fields)}")
        return current

    def _variables_message(self, fields: list[tuple[str, Any]], package: str) -> SchemaTypes:
        f = descriptor_pb2.FileDescriptorProto(name=f"{package}.proto", package=package, syntax="proto3")
        f.dependency.append("google/protobuf/struct.proto")
        if self.package:
            f.dependency.append(f"{self.package}.proto")
        msg = f.message_type.add(name="Variables")
        for number, (name, t) in enumerate(fields, start=1):
            fd = msg.field.add(name=name, number=number, label=_F.LABEL_OPTIONAL)
            scalar = _RETURN_SCALARS.get(t.name()) if t is not None else None
            inner = t.name()[5:-1] if t is not None and t.name().startswith("LIST<") else ""
            if t is not None and t.is_message():
                fd.type, fd.type_name = _F.TYPE_MESSAGE, f".{t.name()}"
            elif scalar is not None:
                fd.type = scalar
            elif inner.startswith(f"{self.package}.") and self.package:
                fd.label, fd.type, fd.type_name = _F.LABEL_REPEATED, _F.TYPE_MESSAGE, f".{inner}"
            else:
                self._dyn_field(fd)
        self.pool.Add(f)
        return SchemaTypes(self.pool, {**self.types, "variables": f"{package}.Variables"}, self.package)

    @staticmethod
    def _dyn_field(fd: Any) -> None:
        fd.type, fd.type_name = _F.TYPE_MESSAGE, _VALUE


def schema_types(schemas: Mapping[str, Any], defs: Mapping[str, Any] | None = None) -> SchemaTypes:
    """Declarations for ``schemas`` (variable name → its OpenAPI schema, ``$ref`` s resolved in
    ``defs``; the built-in definitions by default). A schema that is not an object with
    properties leaves its variable ``dyn``."""
    defs = definitions() if defs is None else defs
    b = _Builder(defs, f"jkcel{next(_counter)}")
    types: dict[str, str] = {}
    for var, schema in schemas.items():
        full = b.message(schema, f"{var}_Object")
        if full is not None:
            types[var] = full.lstrip(".")
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(struct_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(b.file)
    return SchemaTypes(pool, types, b.package)


def _env(types: SchemaTypes, variables: tuple[str, ...]) -> Any:
    env = types.envs.get(variables)
    if env is None:
        decls = {v: cel.Type(types.types[v]) if v in types.types else cel.Type.DYN for v in variables}
        if "authorizer" in decls:
            decls["authorizer"] = cel.Type.MAP
        env = types.envs[variables] = cel.NewEnv(
            descriptor_pool=types.pool, variables=decls, extensions=[ext_strings.ExtStrings(),
                                                                     ext_optional.ExtOptional()],
            functions=authz_functions() if "authorizer" in variables else None)
    return env


def check_expression(expression: str, variables: tuple[str, ...], types: SchemaTypes) -> str:
    """The type checker's issues with ``expression`` (cel-go's wording), "" when it checks."""
    if len(expression) > MAX_EXPRESSION_LENGTH:
        return f"expression is too long: {len(expression)} > {MAX_EXPRESSION_LENGTH} characters"
    try:
        _env(types, variables).compile(expression)
    except RuntimeError as e:
        msg = str(e).removeprefix("INVALID_ARGUMENT: ").removesuffix(" [INVALID_ARGUMENT]")
        # Not reported: numeric comparisons across types (kube's CEL allows them), and the
        # follow-on errors cel-cpp adds for an expression already in error (cel-go does not).
        issues = [i for i in re.split(r"\n(?=ERROR: )", msg)
                  if not _CROSS_NUMERIC.search(i) and "'*error*'" not in i]
        return "\n".join(_NOT_IN_STRUCT.sub("", i) for i in issues)
    return ""
