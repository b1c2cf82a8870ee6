"""The messages that travel the actor pipeline.

A :class:`Request` enters at the authn actor and is forwarded, with its reply slot, through
authz and (for writes) admission to the resource actor. Reads come back to the gateway as
:class:`Allowed` and are answered from the projection; writes come back as one of the domain
results (:data:`WriteResult`): :class:`Stored`, :class:`Deleted`, :class:`DeletedCollection` or
:class:`Succeeded`. They say what happened, never how HTTP shows it: the gateway maps them to a
status code and a body in one function (``gateway._status.write_response``), as it maps errors
(the ``ApiError`` family of ``kinds._errors``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from bus import ROOT_TENANT
from kinds import ResourceDef

#: The verb of a controller's request to remove an object it has emptied (``ResourceCore.finalize``,
#: for kinds whose strategy is ``finalizable``). Its text is on the log, as each event's verb.
FINALIZE = "finalize-namespace"


class ObjectOptions(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """What a create, update or patch asks besides its body (kube's ``CreateOptions``,
    ``UpdateOptions``, ``PatchOptions``), parsed and checked by the gateway."""

    #: ``dryRun=All``: decide, admit and answer, store nothing.
    dry_run: bool = False
    #: "" lets the write side name the manager from the user agent (not for an apply).
    field_manager: str = ""
    #: What unknown and duplicate fields mean: "Ignore", "Warn" (the default) or "Strict".
    field_validation: str = "Warn"


class Create(ObjectOptions):
    """POST of an object (or of a subresource that creates: binding, eviction, token)."""


class Update(ObjectOptions):
    """PUT of an object or a subresource."""


class Patch(ObjectOptions):
    """PATCH with a JSON, merge or strategic merge patch (``Request.patch_type``)."""


class Apply(ObjectOptions):
    """PATCH with an applied configuration (server-side apply); ``field_manager`` is required."""

    #: Take the fields other managers own instead of answering 409.
    force: bool = False


class Preconditions(msgspec.Struct, frozen=True, kw_only=True):
    """A delete's preconditions: "" is none."""

    uid: str = ""
    resource_version: str = ""


class Delete(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """DELETE of one object (kube's ``DeleteOptions``, from the body and the query)."""

    dry_run: bool = False
    #: "Orphan", "Background", "Foreground" or None: the object's GC finalizers and the kind decide.
    propagation_policy: str | None = None
    #: The deprecated ``orphanDependents`` as a bool (None: not given, or not a bool).
    orphan_dependents: bool | None = None
    grace_period_seconds: int | None = None
    preconditions: Preconditions = Preconditions()


class DeleteCollection(Delete):
    """DELETE of a collection: every object the selectors select, each deleted with these options."""

    label_selector: str = ""
    field_selector: str = ""


#: The options of a write, one typed message per verb.
WriteOptions = Create | Update | Patch | Apply | Delete | DeleteCollection


class UserInfo(msgspec.Struct, frozen=True):
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    tenant: str = ROOT_TENANT
    extra: dict[str, list[str]] = {}
    #: The authenticated user who impersonates this one ("" without impersonation): kept for the
    #: history and the audit (kube's ``user`` of an audit event; this user is ``impersonatedUser``).
    impersonator: str = ""


class Request(msgspec.Struct, frozen=True, kw_only=True):
    """One Kubernetes API request, decoded once by the gateway.

    ``verb`` is the Kubernetes verb (get, list, watch, create, update, patch, delete,
    deletecollection) or, for a non-resource URL, the lower-cased HTTP method. ``body`` is the
    decoded request body (JSON value); ``patch_type`` the patch media type for ``patch``.
    ``strict_errors`` are the strict decoding errors only the raw body shows (repeated keys and
    members; a JSON patch's unknown operation members), worded as kube-apiserver words them; the
    resource actor decides what they mean under ``fieldValidation``.
    """

    verb: str
    rdef: ResourceDef | None = None
    tenant: str = ROOT_TENANT
    namespace: str = ""
    name: str = ""
    subresource: str = ""
    path: str = ""
    body: Any = None
    patch_type: str = ""
    strict_errors: tuple[str, ...] = ()
    query: dict[str, str] = {}
    token: str = ""
    user: UserInfo | None = None
    audit_id: str = ""
    user_agent: str = ""
    source: str = ""
    # The Impersonate-* headers as (lower-cased name, value) pairs, checked after authentication.
    impersonate: tuple[tuple[str, str], ...] = ()
    # The TLS client certificate (DER) of the connection, b"" if none was presented.
    client_cert: bytes = b""
    # The front-proxy headers (X-Remote-User, -Group, -Extra-*) as (lower-cased name, value) pairs;
    # trusted only with a client certificate from the request-header CA.
    remote_headers: tuple[tuple[str, str], ...] = ()
    # The W3C traceparent of the gateway's request span: "" unless tracing is on and this request
    # is sampled. The trace context travels here, in the message, from stage to stage.
    trace: str = ""
    #: A write's options, parsed by the gateway (None: the verb's defaults, as for the writes the
    #: controllers make). The write side reads these, never ``query``.
    options: WriteOptions | None = None

    @property
    def dry_run(self) -> bool:
        return self.options is not None and self.options.dry_run


class Allowed(msgspec.Struct, frozen=True):
    """Authn and authz passed: the gateway may serve the read."""

    user: UserInfo


class _Result(msgspec.Struct, frozen=True, kw_only=True):
    """What every write's answer carries besides its outcome."""

    #: Warnings for the client (``Warning`` headers): field validation's, admission's.
    warnings: tuple[str, ...] = ()
    #: Admission's audit annotations, for a write the gateway audits itself (a dry run); an
    #: appended write's are on its event.
    audit_annotations: dict[str, str] = {}


class Stored(_Result, frozen=True, kw_only=True):
    """A write stored an object (with ``dryRun``: would have): ``object`` is its JSON as stored,
    with its ``metadata.resourceVersion`` (under dryRun: the version it was decided against).
    ``created``: the object did not exist before (a create, or an update/apply that created)."""

    object: bytes
    created: bool = False


class Deleted(_Result, frozen=True, kw_only=True):
    """A delete was accepted. Either the object is gone (``object`` is empty; ``name``, ``group``,
    ``kind`` (the plural) and ``uid`` name what was deleted), or it stays, being deleted
    (``pending``: ``object`` is its JSON with ``deletionTimestamp`` and the finalizers it waits
    for). ``cascading``: the client asked for cascading explicitly (``orphanDependents: false``)."""

    name: str
    group: str
    kind: str
    uid: str = ""
    object: bytes = b""
    cascading: bool = False

    @property
    def pending(self) -> bool:
        """The object is still there: marked for deletion, waiting for finalizers or a grace period."""
        return bool(self.object)


class DeletedCollection(_Result, frozen=True, kw_only=True):
    """A deletecollection: ``items`` (JSON objects) are what was deleted (as listed) or marked for
    deletion (as it now is); ``resource_version`` the projection's version when it answered."""

    list_kind: str
    api_version: str
    resource_version: int
    items: tuple[bytes, ...] = ()


class Succeeded(_Result, frozen=True, kw_only=True):
    """A write whose answer is no object (a pod's binding, an eviction): done; ``created`` as kube
    reports these (a POST of a subresource that creates)."""

    created: bool = True


#: Every answer of the write side.
WriteResult = Stored | Deleted | DeletedCollection | Succeeded
