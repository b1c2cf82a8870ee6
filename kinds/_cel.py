"""CEL, the one engine for admission policies, webhook matchConditions and (later) CRD rules.

The engine is ``cel-expr-python`` (Google's cel-cpp): measured here on 18 kube-style rules it
was the only one to pass all of them (cross-type numerics, the strings extension, optional
syntax ``a.?b.orValue(x)``) and evaluated ~90k expressions/s with a fresh activation, 5-20x the
alternatives (/work/shared/SECURITY.md §6). Expressions are compiled once (cached by text and
variable set) with a size limit; evaluation errors (a missing field, a type mismatch) are
:class:`CelEvalError`, never a crash. Variables are ``dyn``: there are no schema types here, so
type checking finds syntax and unknown variables/functions only.

kube's authorizer library (``k8s.io/apiserver/pkg/cel/library/authz.go``) is offered where the
variable set has ``authorizer``: ``authorizer.group(g).resource(r).subresource(s).namespace(ns)
.name(n).check(verb)``, ``authorizer.path(p).check(verb)``, ``authorizer.serviceAccount(ns, n)``,
``authorizer.requestResource``, and on a decision ``allowed()``, ``reason()``, ``errored()``,
``error()``. cel-expr-python registers custom functions (``cel.FunctionDecl`` with Python
implementations) but cannot carry values of custom (abstract) types across the boundary
("Unimplemented type"), so the checks are maps tagged ``"~"`` and the functions are member
overloads on ``map``; the decision is made by the :data:`AuthzCheck` the caller installs for the
evaluation with :func:`authorizing` (the engine calls the implementations synchronously, in the
caller's context).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import re
from collections.abc import Callable, Iterator
from typing import Any

from cel_expr_python import cel
from cel_expr_python.ext import ext_optional, ext_strings

__all__ = ["MAX_EXPRESSION_LENGTH", "AuthzCheck", "CelCompileError", "CelError", "CelEvalError", "CelProgram",
           "authorizer_value", "authorizing", "compile_cel"]

# kube's validation of admission expressions caps them (and a cost budget per call); the engine
# here has no cost estimator, so the length is the limit.
MAX_EXPRESSION_LENGTH = 5 * 1024


class CelError(Exception):
    """A CEL expression that did not compile or did not evaluate."""


class CelCompileError(CelError):
    pass


class CelEvalError(CelError):
    pass


# ---- the authorizer library ------------------------------------------------------------------------

#: Decides one check: its attributes (``verb``, ``group``, ``resource``, ``subresource``,
#: ``namespace``, ``name``, ``path``; ``serviceAccount`` as "ns/name" when the check is for one)
#: -> (allowed, reason, error).
AuthzCheck = Callable[[dict[str, str]], tuple[bool, str, str]]
_authz: contextvars.ContextVar[AuthzCheck | None] = contextvars.ContextVar("cel_authorizer", default=None)


@contextlib.contextmanager
def authorizing(check: AuthzCheck) -> Iterator[None]:
    """Evaluate the expressions inside with ``check`` behind the ``authorizer`` variable."""
    token = _authz.set(check)
    try:
        yield
    finally:
        _authz.reset(token)


def authorizer_value(request_resource: dict[str, str]) -> dict[str, Any]:
    """The ``authorizer`` variable: ``request_resource`` (group, resource, subresource, namespace,
    name of the request) is ``authorizer.requestResource``."""
    return {"~": "authorizer", "requestResource": {"~": "resource", **request_resource}}


def _tagged(value: Any, *tags: str) -> dict[str, Any]:
    if not isinstance(value, dict) or value.get("~") not in tags:
        raise ValueError(f"no such overload: expected {' or '.join(tags)}")
    return value


def _derive(tag: str, key: str, *, to: str | None = None) -> Callable[[Any, str], dict[str, Any]]:
    def impl(receiver: Any, arg: str) -> dict[str, Any]:
        base = _tagged(receiver, tag)
        out = {k: v for k, v in base.items() if k != "requestResource"}
        out[key] = arg
        if to is not None:
            out["~"] = to
        return out
    return impl


def _service_account(receiver: Any, namespace: str, name: str) -> dict[str, Any]:
    _tagged(receiver, "authorizer")
    return {"~": "authorizer", "serviceAccount": f"{namespace}/{name}"}


def _check(receiver: Any, verb: str) -> dict[str, Any]:
    base = _tagged(receiver, "resource", "path")
    check = _authz.get()
    if check is None:
        return {"~": "decision", "allowed": False, "reason": "", "error": "no authorizer"}
    attrs = {k: str(v) for k, v in base.items() if k not in ("~", "requestResource")}
    attrs["verb"] = verb
    allowed, reason, error = check(attrs)
    return {"~": "decision", "allowed": allowed, "reason": reason, "error": error}


def _decision_field(key: str) -> Callable[[Any], Any]:
    def impl(receiver: Any) -> Any:
        d = _tagged(receiver, "decision")
        return bool(d["error"]) if key == "errored" else d[key]
    return impl


def authz_functions() -> list[Any]:
    """kube's authorizer library as cel-expr-python function declarations (with implementations)."""
    m, s, b = cel.Type.MAP, cel.Type.STRING, cel.Type.BOOL

    def member(name: str, ret: Any, params: list[Any], impl: Callable[..., Any]) -> Any:
        return cel.FunctionDecl(name, [cel.Overload(f"k8s_authz_{name}", ret, [m, *params], is_member=True,
                                                    impl=impl)])

    return [
        member("path", m, [s], _derive("authorizer", "path", to="path")),
        member("group", m, [s], _derive("authorizer", "group", to="group")),
        member("serviceAccount", m, [s, s], _service_account),
        member("resource", m, [s], _derive("group", "resource", to="resource")),
        member("subresource", m, [s], _derive("resource", "subresource")),
        member("namespace", m, [s], _derive("resource", "namespace")),
        member("name", m, [s], _derive("resource", "name")),
        # Selectors narrow a check for authorizers that look at them; RBAC does not.
        member("fieldSelector", m, [s], _derive("resource", "fieldSelector")),
        member("labelSelector", m, [s], _derive("resource", "labelSelector")),
        member("check", m, [s], _check),
        member("allowed", b, [], _decision_field("allowed")),
        member("reason", s, [], _decision_field("reason")),
        member("errored", b, [], _decision_field("errored")),
        member("error", s, [], _decision_field("error")),
    ]


@functools.lru_cache(maxsize=32)
def _env(variables: tuple[str, ...]) -> Any:
    functions = authz_functions() if "authorizer" in variables else None
    return cel.NewEnv(variables={v: cel.Type.DYN for v in variables},
                      extensions=[ext_strings.ExtStrings(), ext_optional.ExtOptional()], functions=functions)


class CelProgram:
    """One compiled expression; :meth:`evaluate` takes the variables' values (JSON-like data)."""

    __slots__ = ("_expr", "expression", "used", "variables")

    def __init__(self, expression: str, variables: tuple[str, ...], expr: Any) -> None:
        self.expression = expression
        self.variables = variables
        # The engine converts every value it is given up front (~35 us for a 1 KiB object): only
        # the variables the expression names are passed (a name that only occurs in a string
        # literal costs a conversion, never a wrong answer).
        self.used = tuple(v for v in variables if re.search(rf"\b{v}\b", expression))
        self._expr = expr

    def evaluate(self, data: dict[str, Any]) -> Any:
        """The result as a plain Python value; :class:`CelEvalError` when the expression errs."""
        try:
            v = self._expr.eval(data={k: data.get(k) for k in self.used})
        except (RuntimeError, TypeError, ValueError) as e:  # the engine on a value it cannot take
            raise CelEvalError(str(e)) from None
        if v.type() == cel.Type.ERROR:
            raise CelEvalError(_kube_words(str(v.value())))
        return v.plain_value()


_NO_KEY = re.compile(r'^(?:NOT_FOUND: )?Key not found in map : "(.*)"$', re.DOTALL)


def _kube_words(message: str) -> str:
    """cel-cpp's runtime error in cel-go's words, where kube's messages quote them."""
    if m := _NO_KEY.match(message):
        return f"no such key: {m.group(1)}"
    return message


@functools.lru_cache(maxsize=4096)
def compile_cel(expression: str, variables: tuple[str, ...]) -> CelProgram:
    """Compile ``expression`` over ``variables`` (cached); :class:`CelCompileError` with the
    engine's message when it is too long, malformed or names something unknown."""
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise CelCompileError(f"expression is too long: {len(expression)} > {MAX_EXPRESSION_LENGTH} characters")
    try:
        expr = _env(variables).compile(expression)
    except RuntimeError as e:  # cel-cpp reports INVALID_ARGUMENT as RuntimeError
        msg = str(e)
        msg = msg.removeprefix("INVALID_ARGUMENT: ")
        raise CelCompileError(msg.removesuffix(" [INVALID_ARGUMENT]")) from None
    return CelProgram(expression, variables, expr)
