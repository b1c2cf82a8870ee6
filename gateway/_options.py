"""A write's query (and a DELETE's body) as the typed options message of its verb.

kube-apiserver's handlers decode and validate the options before they look at the object:
``fieldManager`` (422), ``fieldValidation`` and ``dryRun`` (400), ``force`` only for an apply
and ``fieldManager`` required for one (422), a DELETE's DeleteOptions from its body with the
query's values merged in. The write side receives the result and never reads the query.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from actors import (
    APPLY_PATCH,
    Apply,
    BadRequest,
    Create,
    DeleteCollection,
    Patch,
    Update,
    WriteOptions,
    delete_options,
    invalid,
)
from actors._apply import apply_force, check_apply_options, check_non_apply_options
from kinds._validation import validate_field_manager

_FIELD_VALIDATION = ("Ignore", "Warn", "Strict")
#: DeleteOptions members a query may carry; a member the body sets wins.
_DELETE_QUERY = ("propagationPolicy", "gracePeriodSeconds", "orphanDependents")


def _dry_run(q: Mapping[str, str]) -> bool:
    v = q.get("dryRun")
    if v is None:
        return False
    if v != "All":
        raise BadRequest(f'Unsupported value: "{v}": supported values: "All"')
    return True


def _common(q: Mapping[str, str], options_kind: str) -> dict[str, Any]:
    causes = validate_field_manager(q.get("fieldManager") or "")
    if causes:
        raise invalid(options_kind, "", causes, group="meta.k8s.io")
    mode = q.get("fieldValidation") or "Warn"
    if mode not in _FIELD_VALIDATION:
        raise BadRequest(f'fieldValidation: Unsupported value: "{mode}": supported values: "Ignore", '
                         f'"Strict", "Warn"')
    return {"field_manager": q.get("fieldManager") or "", "field_validation": mode, "dry_run": _dry_run(q)}


def write_options(verb: str, q: Mapping[str, str], *, patch_type: str = "", body: Any = None) -> WriteOptions | None:
    """The options of a ``verb`` request with query ``q`` (``body``: a DELETE's DeleteOptions);
    None for a verb that writes nothing. Raises the ApiError kube answers for a bad option."""
    if verb == "create":
        return Create(**_common(q, "CreateOptions"))
    if verb == "update":
        return Update(**_common(q, "UpdateOptions"))
    if verb == "patch":
        common = _common(q, "PatchOptions")
        if patch_type == APPLY_PATCH:
            check_apply_options(dict(q))
            return Apply(**common, force=apply_force(dict(q)))
        check_non_apply_options(dict(q))
        return Patch(**common)
    if verb in ("delete", "deletecollection"):
        opts: dict[str, Any] = {}
        if isinstance(body, dict):
            opts.update(body)
        elif body not in (None, b"", ""):
            raise BadRequest("the body of a DELETE must be a DeleteOptions object")
        for f in _DELETE_QUERY:
            if f in q and f not in opts:
                opts[f] = q[f]
        delete = delete_options(opts)
        if _dry_run(q) and not delete.dry_run:
            delete = msgspec.structs.replace(delete, dry_run=True)
        if verb == "delete":
            return delete
        return DeleteCollection(**{f: getattr(delete, f) for f in delete.__struct_fields__},
                                label_selector=q.get("labelSelector", ""), field_selector=q.get("fieldSelector", ""))
    return None
