"""A DeleteOptions object as the typed :class:`~actors.messages.Delete`. Pure.

The gateway builds the options of every write from its query (``gateway._options``); a
DeleteOptions also arrives as a body (DELETE) or inside another body (an Eviction's
``deleteOptions``), and both are read here, with kube's checks and messages.
"""

from __future__ import annotations

from typing import Any

from kinds import BadRequest, Cause, invalid
from kinds._gc import delete_options_conflict, orphan_option

from .messages import Delete, Preconditions


def delete_options(opts: dict[str, Any]) -> Delete:
    """``opts`` (a DeleteOptions object, the query's values merged in) checked and typed: 400 for
    a bad ``dryRun``, ``propagationPolicy`` or ``preconditions``, 422 when ``orphanDependents``
    and ``propagationPolicy`` are both set."""
    if "dryRun" in opts and opts["dryRun"] not in ([], ["All"], None):
        raise BadRequest(f'Unsupported value: {opts["dryRun"]!r}: supported values: "All"')
    pol = opts.get("propagationPolicy")
    if pol not in (None, "Orphan", "Background", "Foreground"):
        raise BadRequest(f'Unsupported value: "{pol}": supported values: "Foreground", "Background", "Orphan"')
    pre = opts.get("preconditions")
    if pre is not None and not isinstance(pre, dict):
        raise BadRequest("preconditions must be an object")
    pre = pre or {}
    rv = pre.get("resourceVersion")
    if rv and not isinstance(rv, str):
        raise BadRequest(f"invalid resourceVersion {rv!r}")
    conflict = delete_options_conflict(opts)
    if conflict is not None:
        raise invalid("DeleteOptions", "", [Cause("FieldValueInvalid", f'Invalid value: "{pol}": {conflict}',
                                                  "propagationPolicy")], group="meta.k8s.io")
    grace = opts.get("gracePeriodSeconds")
    if isinstance(grace, str):
        grace = int(grace) if grace.isascii() and grace.lstrip("-").isdigit() else None
    return Delete(dry_run=opts.get("dryRun") == ["All"], propagation_policy=pol,
                  orphan_dependents=orphan_option(opts.get("orphanDependents")),
                  grace_period_seconds=grace if isinstance(grace, int) and not isinstance(grace, bool) else None,
                  preconditions=Preconditions(uid=str(pre["uid"]) if pre.get("uid") else "", resource_version=rv or ""))
