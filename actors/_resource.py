"""The generic resource actor: decides every write and appends it to the log with CAS.

One code path serves every kind, driven by its ``ResourceDef`` and strategy hooks. Writes are
decided against the projection's state of the object and published with
``Nats-Expected-Last-Subject-Sequence`` = the version decided against; JetStream refuses a stale
one. :meth:`ResourceCore.guaranteed_update` is the one retry loop for optimistic concurrency
(the apiserver's ``GuaranteedUpdate``): a conflict with no client precondition waits for the
projection to reach the winning version and decides again.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from bus import (
    Actor as EventActor,
)
from bus import Event, Key, Log, WrongLastSequence, encode_event, encode_object_with_rv_slot, object_bytes
from kinds import BUILTIN, Registry, ResourceDef, definitions, field_value, patch_schema, schema_for
from kinds import _subresources as subresources
from kinds._crd import apply_defaults
from kinds._errors import (
    AlreadyExists,
    ApiError,
    BadRequest,
    InternalError,
    Invalid,
    MethodNotAllowed,
    NotFound,
    RequestEntityTooLarge,
    UnsupportedMediaType,
)
from kinds._fieldvalidation import (
    field_validation_outcome,
    prune_unknown_fields,
    strict_errors,
    type_errors,
    unknown_fields,
)
from kinds._strategy import strategy_for
from kinds._uid import new_uid
from projections import (
    Entry,
    Projection,
    ResourceVersionTooLarge,
    SelectorError,
    WatchFilter,
    parse_int64,
    parse_label_selector,
)

from ._admission import AdmissionChain, audit_annotations, collecting_warnings
from ._allocation import AllocationSettings, Allocators
from ._apply import SCALE_FIELDS as _SCALE_FIELDS
from ._apply import (
    applied_config,
    apply_type,
    check_apply_options,
    reset_fields,
)
from ._cas import append_new
from ._crd_conversion import Converter
from ._decide import (
    Decision,
    NoChange,
    conflict,
    decide_delete,
    decide_finalize,
    decide_update,
    field_manager,
    not_found,
    now_rfc3339,
    set_namespace,
    validate,
)
from ._managed import record_apply, record_update
from ._options import delete_options
from ._patch import (
    MalformedPatch,
    PatchError,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
)
from ._runtime import ReplySlot
from ._tracing import Spans, current_child
from .messages import (
    FINALIZE,
    Apply,
    Delete,
    DeleteCollection,
    Deleted,
    DeletedCollection,
    ObjectOptions,
    Request,
    Stored,
    Succeeded,
    Update,
    WriteResult,
)

_json = msgspec.json.Encoder()
_decode = msgspec.json.decode
_GENERATE_CHARS = "bcdfghjklmnpqrstvwxz2456789"
_GENERATED_SUFFIX_LEN = 5
# The largest object stored, as encoded JSON: etcd's default request limit (--max-request-bytes,
# 1.5 MiB), which kube-apiserver meets for every write that would store more.
MAX_OBJECT_BYTES = 1536 * 1024
_GENERATED_BASE_MAX_BYTES = 63 - _GENERATED_SUFFIX_LEN
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


def generate_name(base: str) -> str:
    """The apiserver's ``SimpleNameGenerator``: the base cut to 58 bytes, then 5 random characters,
    so a generated name always fits a DNS label."""
    cut = base.encode()[:_GENERATED_BASE_MAX_BYTES].decode(errors="ignore")
    return cut + "".join(secrets.choice(_GENERATE_CHARS) for _ in range(_GENERATED_SUFFIX_LEN))


class ResourceCore:
    """Write logic; the actor's handler is :meth:`handle`."""

    def __init__(self, log: Log, projection: Projection, *, max_retries: int = 32,
                 admit: Callable[[Request], Awaitable[None]] | None = None, registry: Registry | None = None,
                 allocation: AllocationSettings | None = None,
                 chain: AdmissionChain | None = None) -> None:
        self.log = log
        self.registry = registry if registry is not None else Registry()
        self.projection = projection
        self.max_retries = max_retries
        # The admission step for writes this actor turns into others: every item of a
        # deletecollection (as a single delete) and an update that creates (as a create).
        self.admit = admit
        # The admission chain (actors/_admission.py): mutating on the decoded object, validating on
        # the final one, for every write decided here.
        self.chain = chain
        #: Tracing (None: off): the log append is a span, a child of this actor's stage span.
        self.spans: Spans | None = None
        #: A check of the final object of a create, update or patch after validation (RBAC's
        #: escalation prevention, which kube runs in storage): raises an ApiError to refuse it.
        self.guard: Callable[[Request, dict[str, Any], dict[str, Any] | None], None] | None = None
        #: Claims of cluster-unique values for kinds that hold them (a Service's cluster IP and
        #: node ports), made and released around the object's own append.
        self.allocators = Allocators(projection, self._append, allocation or AllocationSettings())
        #: Conversion between served versions (a CRD's conversion webhook: actors/_crd_conversion.py).
        self.converter = Converter()

    # ---- entry point ---------------------------------------------------------------------------

    async def handle(self, req: Request, reply: ReplySlot) -> None:
        with collecting_warnings() as admission_warnings:
            result = await self.write(req)
            annotations = audit_annotations() if req.dry_run else {}
        if admission_warnings or annotations:
            result = msgspec.structs.replace(result, warnings=(*result.warnings, *admission_warnings),
                                             audit_annotations=annotations)
        reply.set(result)

    async def write(self, req: Request) -> WriteResult:
        """Decide one write and answer with its result."""
        assert req.rdef is not None
        verb = req.verb
        storage = self.registry.for_tenant(req.tenant).storage_of(req.rdef)  # a CRD's: its tenant's
        if storage is not req.rdef:
            return await self.converted(req, storage)
        if req.rdef.create_as and verb == "create":
            return await self.create_as(req)
        if req.subresource:
            # The gateway admits a subresource's verbs from the definition.
            return await self.subresource(req)
        if verb in _API_VERBS and verb not in req.rdef.verbs:
            raise MethodNotAllowed("the server does not allow this method on the requested resource")
        if verb == "create":
            return await self.create(req)
        if verb == "update":
            return await self.update(req)
        if verb == "patch":
            return await self.patch(req)
        if verb == "delete":
            return await self.delete(req)
        if verb == "deletecollection":
            return await self.delete_collection(req)
        if verb == FINALIZE:
            return await self.finalize(req)
        raise BadRequest(f"unsupported verb {verb!r}")

    # ---- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def key(req: Request, name: str | None = None) -> Key:
        assert req.rdef is not None
        return Key(req.tenant, req.rdef.group, req.rdef.plural, req.namespace if req.rdef.namespaced else "",
                   req.name if name is None else name)

    async def current(self, key: Key) -> Entry | None:
        """The object as the projection has it; a miss is confirmed by a consistent read, so a
        write acknowledged on another gateway is never reported missing."""
        entry = self.projection.get(key)
        if entry is None:
            await self.projection.consistent()
            entry = self.projection.get(key)
        return entry

    not_found = staticmethod(not_found)
    conflict = staticmethod(conflict)

    def _body_object(self, req: Request) -> dict[str, Any]:
        rdef = req.rdef
        assert rdef is not None
        obj = req.body
        if not isinstance(obj, dict):
            raise BadRequest(f"the body of the request must be a {rdef.kind} object")
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        if kind not in (None, "") and kind != rdef.kind:
            raise BadRequest(f"the kind in the body ({kind}) does not match the kind on the URL ({rdef.kind})")
        if api_version not in (None, "") and api_version != rdef.api_version:
            raise BadRequest(f"the API version in the data ({api_version}) does not match the expected API version "
                             f"({rdef.api_version})")
        meta = obj.get("metadata")
        if meta is None:
            meta = {}
        if not isinstance(meta, dict):
            raise BadRequest("metadata must be an object")
        out = dict(obj)
        out["kind"], out["apiVersion"], out["metadata"] = rdef.kind, rdef.api_version, dict(meta)
        return out

    async def _append(self, req: Request, key: Key, etype: str, obj: dict[str, Any], expected: int,
                      attempt: int) -> bytes:
        """Append the event; return the object's JSON with its new resourceVersion."""
        assert req.rdef is not None
        data, rv_at = encode_object_with_rv_slot(obj)
        if len(data) > MAX_OBJECT_BYTES:
            # kube-apiserver relays etcd's refusal (as a 500); it is the client's object, so a 413.
            raise RequestEntityTooLarge("etcdserver: request is too large", name=key.name, group=key.group,
                                        kind=key.resource)
        user = req.user
        labels = obj["metadata"].get("labels") or {}
        fields = {f: field_value(obj, f) for f in req.rdef.field_selectors}
        event = Event(
            type=etype, object=msgspec.Raw(data), rv_at=rv_at, verb=req.verb, audit_id=req.audit_id,  # type: ignore[arg-type]
            time=now_rfc3339(),
            actor=EventActor(user=user.name if user else "", groups=tuple(user.groups) if user else (),
                             uid=user.uid if user else "", tenant=req.tenant, user_agent=req.user_agent,
                             source=req.source, impersonator=user.impersonator if user else ""),
            labels=labels, fields=fields, subresource=req.subresource,
            # Admission's audit annotations go with the written object's own event (not with the
            # claims and charges a write makes on other subjects).
            annotations=audit_annotations() if key.resource == req.rdef.plural else {})
        subject = self.log.subject(key)
        with current_child(self.spans, "log append"):
            seq = await self.log.append(subject, encode_event(event),
                                        msg_id=_msg_id(req.audit_id, subject, attempt), expected_seq=expected)
        # Read-your-writes on this gateway (as kine's waitForSequence): answer once the local
        # projection has applied the write, so any read that follows here sees it, even with
        # resourceVersion=0. Bounded; an acknowledged write is never failed for it.
        try:
            await self.projection.wait_for(seq)
        except ResourceVersionTooLarge:
            pass
        return object_bytes(event, seq)

    @staticmethod
    def _field_validation(req: Request, obj: dict[str, Any], *, patched: bool) -> tuple[str, ...]:
        """Strict decoding, as kube-apiserver's: unknown fields are dropped (``Ignore``), dropped
        with warnings (``Warn``, the default) or refused (``Strict``: 400 for create/update, 422 for
        a patch), each with the errors the gateway found in the raw body (repeated keys) ahead."""
        rdef = req.rdef
        assert rdef is not None
        opts = req.options
        mode = opts.field_validation if isinstance(opts, ObjectOptions) else "Warn"
        unknown: list[str] = []
        schema = schema_for(rdef.group, rdef.version, rdef.kind) if not rdef.crd else None
        if rdef.crd and rdef.schema is not None:
            # A custom resource: its structural schema prunes (or, Strict, refuses) unknown fields,
            # then its defaults apply (kube's decoder for custom resources).
            unknown = _custom_unknown_fields(obj, rdef.schema, prune=mode != "Strict")
            apply_defaults(obj, rdef.schema)
        if schema is not None:
            wrong = type_errors(obj, schema, definitions())
            if wrong:
                raise BadRequest(f'{rdef.kind} in version "{rdef.version}" cannot be handled as a {rdef.kind}: '
                                 f'json: ' + "; ".join(wrong))
            if mode == "Strict":
                unknown = unknown_fields(obj, schema, definitions())
            else:
                unknown = prune_unknown_fields(obj, schema, definitions())
        return field_validation_outcome(mode, [*req.strict_errors, *strict_errors(unknown)], kind=rdef.kind,
                                        version=rdef.version,
                                        patched=(lambda: _json.encode(obj).decode()) if patched else None)

    @staticmethod
    def _decode_patched(req: Request, obj: dict[str, Any]) -> None:
        """An object a mutating webhook patched, decoded again as kube does: wrong types are the
        webhook's error (500, it is not the client's), unknown fields are dropped silently."""
        rdef = req.rdef
        assert rdef is not None
        schema = schema_for(rdef.group, rdef.version, rdef.kind)
        if schema is None:
            return
        wrong = type_errors(obj, schema, definitions())
        if wrong:
            raise InternalError(f"the object a mutating admission webhook returned cannot be handled as a "
                                f"{rdef.kind}: " + "; ".join(wrong))
        prune_unknown_fields(obj, schema, definitions())

    # ---- create ----------------------------------------------------------------------------------

    async def create(self, req: Request, *, obj: dict[str, Any] | None = None, applied: bool = False) -> WriteResult:
        """A create; ``applied``: ``obj`` is an apply's result and carries its managedFields."""
        rdef = req.rdef
        assert rdef is not None
        obj = self._body_object(req) if obj is None else obj
        warnings = self._field_validation(req, obj, patched=False)
        meta = obj["metadata"]
        set_namespace(req, meta)
        if self.chain is not None:
            mutated = await self.chain.mutate(req, "CREATE", obj, None, name=str(meta.get("name") or ""))
            assert mutated is not None
            if mutated is not obj:
                self._decode_patched(req, mutated)
            obj = mutated
            meta = obj["metadata"]
            set_namespace(req, meta)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = generate_name(str(meta["generateName"]))
        for f in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            meta.pop(f, None)
        now = now_rfc3339()
        meta["uid"] = new_uid()
        meta["creationTimestamp"] = now
        strategy = strategy_for(rdef)
        meta.pop("generation", None)  # the kind's definition decides (subresources.prepare_create)
        managed = meta.pop("managedFields", None)
        subresources.prepare_create(rdef, obj)  # initial status, generation
        strategy.prepare_for_create(obj)
        validate(req, obj, None, self.guard)
        if applied:
            meta["managedFields"] = managed
        else:
            record_update(None, obj, manager=field_manager(req), api_version=rdef.api_version, now=now,
                          type_=apply_type(rdef), ignored=reset_fields(rdef, ""))
        name = meta["name"]
        if self.chain is not None:
            await self.chain.validate(req, "CREATE", obj, None, name=name)
        txn = await self.allocators.begin(req, "put", obj, None, dry=req.dry_run)
        if req.dry_run:
            return Stored(object=_json.encode(obj), created=True, warnings=warnings)
        try:
            data = await self._create_append(req, obj)
        except BaseException as e:
            await txn.abort(e)  # a failed create leaks nothing it claimed
            raise
        await txn.commit()
        return Stored(object=data, created=True, warnings=warnings)

    async def _create_append(self, req: Request, obj: dict[str, Any]) -> bytes:
        """Append a new object: over nothing, or over the subject's tombstone."""
        rdef = req.rdef
        assert rdef is not None
        name = obj["metadata"]["name"]
        key = self.key(req, name)

        async def append(expected: int, attempt: int) -> bytes:
            return await self._append(req, key, "put", obj, expected, attempt)

        def taken() -> ApiError:
            return AlreadyExists(f'{rdef.plural}{"." + rdef.group if rdef.group else ""} "{name}" already exists',
                                 name=name, group=rdef.group, kind=rdef.plural)

        return await append_new(self.projection, key, append, tries=self.max_retries, taken=taken,
                                exhausted=lambda: self.conflict(rdef, name))

    # ---- the update loop -------------------------------------------------------------------------

    async def guaranteed_update(self, req: Request, key: Key,
                                decide: Callable[[Entry | None, dict[str, Any] | None], Awaitable[Decision]],
                                *, precondition_seq: int | None = None) -> tuple[bytes, str]:
        """Decide against the current state and append with CAS until it sticks.

        ``decide(entry, obj)`` returns ("put" | "delete", new object) or a no-change marker and
        raises ApiErrors. With ``precondition_seq`` (a client-supplied resourceVersion), a lost
        race is the client's 409; without, the loop waits for the winner and decides again.
        Returns (the object's JSON as stored, or as it would be under dryRun; the event type:
        "put", "delete" or "none" when nothing was written).
        """
        rdef = req.rdef
        assert rdef is not None
        entry = await self.current(key)
        if precondition_seq is not None and (entry is None or entry.seq < precondition_seq):
            # The client may have seen a newer version than this replica has applied: catch up with
            # the log's head and decide (and CAS) against that. A precondition beyond the head can
            # never hold: the decision answers 409 at once, as the apiserver, never a wait.
            await self.projection.consistent()
            entry = self.projection.get(key)
        for attempt in range(self.max_retries):
            obj = None if entry is None else _decode(entry.data)
            decision = await decide(entry, obj)
            if isinstance(decision, NoChange):
                # Nothing to write: confirm the state decided on is current (the projection may
                # trail the log), as the apiserver re-reads etcd before answering a no-op.
                await self.projection.consistent()
                fresh = self.projection.get(key)
                if (fresh is None) != (entry is None) or (fresh is not None and entry is not None
                                                          and fresh.seq != entry.seq):
                    entry = fresh
                    continue
                return decision.entry.data, "none"
            etype, new = decision
            txn = await self.allocators.begin(req, etype, new, obj, dry=req.dry_run)
            if req.dry_run:
                if entry is not None and etype == "put":
                    # Nothing stored: the answer keeps the version it was decided on (as kube's).
                    new["metadata"]["resourceVersion"] = str(entry.seq)
                return _json.encode(new), etype
            expected = 0 if entry is None else entry.seq
            try:
                data = await self._append(req, key, etype, new, expected, attempt)
            except WrongLastSequence as e:
                await txn.abort()
                if precondition_seq is not None:
                    raise self.conflict(rdef, key.name) from None
                await self.projection.wait_for(e.current)
                entry = self.projection.get(key)
                continue
            except BaseException as e:
                await txn.abort(e)
                raise
            await txn.commit()
            return data, etype
        raise self.conflict(rdef, key.name)

    async def _admitted_update(self, req: Request, entry: Entry, old: dict[str, Any], new: dict[str, Any],
                               **kw: Any) -> Decision:
        """:meth:`_merge_update` inside the admission chain: mutating admission on the object as
        the client sent it, validating admission on the object as it would be stored."""
        if self.chain is None:
            return self._merge_update(req, entry, old, new, **kw)
        mutated = await self.chain.mutate(req, "UPDATE", new, old)
        assert mutated is not None
        if mutated is not new:
            self._decode_patched(req, mutated)
        decision = self._merge_update(req, entry, old, mutated, **kw)
        await self.chain.validate(req, "UPDATE", mutated, old)
        return decision

    def _merge_update(self, req: Request, entry: Entry, old: dict[str, Any], new: dict[str, Any], *,
                      record: bool = True, manager_subresource: str | None = None) -> Decision:
        """:func:`decide_update` with this actor's guard."""
        return decide_update(req, entry, old, new, now=now_rfc3339(), record=record,
                             manager_subresource=manager_subresource, guard=self.guard)

    # ---- update (PUT) ------------------------------------------------------------------------------

    async def update(self, req: Request) -> WriteResult:
        rdef = req.rdef
        assert rdef is not None
        body = self._body_object(req)
        warnings = self._field_validation(req, body, patched=False)
        bname = body["metadata"].get("name")
        if bname not in (None, "") and bname != req.name:
            raise BadRequest(f"the name of the object ({bname}) does not match the name on the URL ({req.name})")
        body["metadata"]["name"] = req.name
        rv = _parse_rv(body["metadata"].get("resourceVersion"))
        key = self.key(req)
        created = False
        decided = False

        async def decide(entry: Entry | None, old: dict[str, Any] | None) -> Decision:
            nonlocal created, decided
            if entry is None or old is None:
                if strategy_for(rdef).allow_create_on_update and not rv:
                    created = True
                    raise _CreateInstead("create on update")
                raise self.not_found(rdef, req.name)
            if rv is not None and rv != entry.seq:
                raise self.conflict(rdef, req.name)
            # The decision changes the object it is given: a private copy for every attempt but a
            # precondition's only one (with a resourceVersion, a lost race is a 409, never a retry,
            # and a second decision is the 409 above).
            new = body if rv is not None and not decided else msgspec.json.decode(_json.encode(body))
            decided = True
            return await self._admitted_update(req, entry, old, new)

        try:
            data, _ = await self.guaranteed_update(req, key, decide, precondition_seq=rv)
        except _CreateInstead:
            # A create, admitted as one (the apiserver runs create admission when an update creates).
            if self.admit is not None:
                await self.admit(msgspec.structs.replace(req, verb="create"))
            return await self.create(req, obj=body)
        return Stored(object=data, warnings=warnings)

    # ---- patch --------------------------------------------------------------------------------------

    async def patch(self, req: Request, served: ResourceDef | None = None) -> WriteResult:
        """A patch; with ``served``, of the object as that version shows it (the patch applies to
        the converted object, and the result is converted back to the stored version)."""
        rdef = req.rdef
        assert rdef is not None
        view = served or rdef
        ptype = req.patch_type
        if ptype == APPLY_PATCH:
            return await self.apply(req, served)
        if ptype not in (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH):
            raise UnsupportedMediaType(
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{JSON_PATCH}, {MERGE_PATCH}, {STRATEGIC_PATCH}")
        if ptype == STRATEGIC_PATCH and rdef.crd:  # custom resources have no patch strategies (kube: 415)
            raise UnsupportedMediaType(
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{JSON_PATCH}, {MERGE_PATCH}, {APPLY_PATCH}")
        if ptype == JSON_PATCH and not isinstance(req.body, list):
            raise BadRequest("the JSON patch must be a list of operations")
        if ptype != JSON_PATCH and not isinstance(req.body, dict):
            raise BadRequest("the patch must be a JSON object")
        key = self.key(req)
        schema = patch_schema(view.group, view.version, view.kind)
        warnings: tuple[str, ...] = ()

        async def decide(entry: Entry | None, old: dict[str, Any] | None) -> Decision:
            if entry is None or old is None:
                raise self.not_found(rdef, req.name)
            shown = await self._shown(old, view)
            try:
                if ptype == JSON_PATCH:
                    new = apply_json_patch(shown, req.body)
                elif ptype == MERGE_PATCH:
                    new = apply_merge_patch(shown, req.body)
                else:
                    new = apply_strategic_merge_patch(shown, req.body, schema)
            except MalformedPatch as e:
                raise BadRequest(str(e)) from None
            except PatchError as e:
                raise Invalid(f"the server rejected our request due to an error in our request: {e}",
                              name=req.name, group=rdef.group, kind=rdef.kind) from None
            if not isinstance(new, dict) or not isinstance(new.get("metadata"), dict):
                raise BadRequest("the patched object must be an object with metadata")
            if new.get("kind") != view.kind or new.get("apiVersion") != view.api_version:
                raise BadRequest("the patch must not change kind or apiVersion")
            if served is not None:
                new = await self.converter.one(new, rdef)
            nonlocal warnings
            warnings = self._field_validation(req, new, patched=True)
            prv = new["metadata"].get("resourceVersion")
            if prv not in (None, "") and str(prv) != str(entry.seq):
                raise self.conflict(rdef, req.name)
            if new["metadata"].get("name") != req.name:
                raise BadRequest(f"the name of the object ({new['metadata'].get('name')}) does not match the name "
                                 f"on the URL ({req.name})")
            return await self._admitted_update(req, entry, old, new)

        data, _ = await self.guaranteed_update(req, key, decide)
        return Stored(object=data, warnings=warnings)

    # ---- server-side apply ------------------------------------------------------------------------------

    async def apply(self, req: Request, served: ResourceDef | None = None) -> WriteResult:
        """PATCH with ``application/apply-patch+yaml``: the applied configuration merged into the
        object by its schema, owned by the manager (``actors._managed``); 409 on conflicts unless
        ``force``; creates the object when it is absent."""
        rdef = req.rdef
        assert rdef is not None
        view = served or rdef
        opts = _apply_options(req)
        config = applied_config(req.body, view, req.name)
        force = opts.force
        manager, now, t = opts.field_manager, now_rfc3339(), apply_type(view)
        warnings: tuple[str, ...] = ()

        async def applied(live: dict[str, Any] | None, base: dict[str, Any] | None = None) -> dict[str, Any]:
            shown = live if live is None else await self._shown(live, view)
            ignored = reset_fields(rdef, req.subresource, shown, config)
            # Managers of other versions own their fields as that version names them.
            versions = self.registry.for_tenant(req.tenant)  # a CRD's other versions: its tenant's
            new = await self.converter.with_manager_views(shown, view, versions, lambda views: record_apply(
                shown, config, manager=manager, api_version=view.api_version, now=now, force=force,
                subresource=req.subresource, type_=t, ignored=ignored, base=base, views=views))
            new = new if served is None else await self.converter.one(new, rdef)
            nonlocal warnings
            warnings = self._field_validation(req, new, patched=True)
            return new

        async def decide(entry: Entry | None, old: dict[str, Any] | None) -> Decision:
            if entry is None or old is None:
                if req.subresource:
                    raise self.not_found(rdef, req.name)
                raise _CreateInstead("create on apply")
            prv = config["metadata"].get("resourceVersion")
            if prv not in (None, "") and str(prv) != str(entry.seq):  # a precondition, as in any patch
                raise self.conflict(rdef, req.name)
            return await self._admitted_update(req, entry, old, await applied(old), record=False)

        for _ in range(self.max_retries):
            try:
                data, _ = await self.guaranteed_update(req, self.key(req), decide)
                return Stored(object=data, warnings=warnings)
            except _CreateInstead:
                create = msgspec.structs.replace(req, verb="create")
                if self.admit is not None:
                    await self.admit(create)
                obj = await applied(None, {"apiVersion": view.api_version, "kind": view.kind, "metadata": {}})
                obj["metadata"]["name"] = req.name
                try:
                    return await self.create(create, obj=obj, applied=True)  # its field validation warns
                except AlreadyExists:
                    continue  # created meanwhile (another apply): apply to it, as kube's retry does
        raise self.conflict(rdef, req.name)

    # ---- delete ----------------------------------------------------------------------------------------

    async def delete(self, req: Request) -> WriteResult:
        rdef = req.rdef
        assert rdef is not None
        opts = req.options if isinstance(req.options, Delete) else Delete()
        pre = opts.preconditions
        key = self.key(req)
        final_uid = ""

        async def decide(entry: Entry | None, old: dict[str, Any] | None) -> Decision:
            nonlocal final_uid
            if entry is None or old is None:
                raise self.not_found(rdef, req.name)
            decision = decide_delete(rdef, entry, old, opts, now=now_rfc3339())  # preconditions first
            final_uid = old["metadata"].get("uid", "")
            if self.chain is not None:
                await self.chain.mutate(req, "DELETE", None, old)
                await self.chain.validate(req, "DELETE", None, old)
            return decision

        precondition = _parse_rv(pre.resource_version) if pre.resource_version else None
        data, etype = await self.guaranteed_update(req, key, decide, precondition_seq=precondition)
        gone = Deleted(name=req.name, group=rdef.group, kind=rdef.plural, uid=final_uid)
        if etype == "delete":
            return gone
        # Still there, being deleted (finalizers, a grace period).
        return msgspec.structs.replace(gone, object=data,
                                       cascading=opts.orphan_dependents is False)

    async def finalize(self, req: Request) -> WriteResult:
        """Append the tombstone of an object its controller has emptied (a terminating Namespace),
        as the kind's strategy allows (``Strategy.finalize``)."""
        rdef = req.rdef
        assert rdef is not None
        if not strategy_for(rdef).finalizable:
            raise MethodNotAllowed("the server does not allow this method on the requested resource")
        key = self.key(req)

        async def decide(entry: Entry | None, old: dict[str, Any] | None) -> Decision:
            if entry is None or old is None:
                raise self.not_found(rdef, req.name)
            return decide_finalize(rdef, entry, old)

        await self.guaranteed_update(req, key, decide)
        return Deleted(name=req.name, group=rdef.group, kind=rdef.plural)

    async def delete_collection(self, req: Request, flt: WatchFilter | None = None) -> WriteResult:
        rdef = req.rdef
        assert rdef is not None
        if flt is None:
            opts = req.options if isinstance(req.options, DeleteCollection) else DeleteCollection()
            try:
                flt = WatchFilter.for_request(rdef, req.namespace, opts.label_selector, opts.field_selector)
            except SelectorError as e:
                raise BadRequest(str(e)) from None
        await self.projection.consistent()
        listed = self.projection.list(req.tenant, rdef.group, rdef.plural, flt)
        # One delete per item, each through the admission step a single delete passes; the answer
        # lists what was deleted (as listed) or marked for deletion (as it now is). As the
        # apiserver's store, the first error ends the request; an item gone meanwhile is skipped.
        items = []
        for data in listed.items:
            meta = _decode(data)["metadata"]
            one = msgspec.structs.replace(req, verb="delete", name=meta["name"],
                                          namespace=meta.get("namespace", ""))
            if self.admit is not None:
                await self.admit(one)
            try:
                res = await self.delete(one)
            except NotFound:
                continue
            assert isinstance(res, Deleted)
            items.append(res.object if res.pending else data)
        return DeletedCollection(list_kind=rdef.list_kind, api_version=rdef.api_version,
                                 resource_version=self.projection.store.applied, items=tuple(items))


    # ---- versions served by conversion -----------------------------------------------------------------

    async def converted(self, req: Request, storage: ResourceDef) -> WriteResult:
        """A write to a version served by conversion: the body in the storage version, the write
        decided there, the answer in the version asked for."""
        served = req.rdef
        assert served is not None
        stored = msgspec.structs.replace(req, rdef=storage)
        if req.verb in ("create", "update") and req.subresource in ("", "status"):
            body = self._body_object(req)  # checked against the version it claims
            stored = msgspec.structs.replace(stored, body=await self.converter.one(body, storage))
        if req.verb == "patch" and req.subresource in ("", "status"):
            result = await self.patch(stored, served=served)
        else:
            result = await self.write(stored)
        return await self._to_served(result, storage, served)

    async def _shown(self, obj: dict[str, Any], view: ResourceDef) -> dict[str, Any]:
        """A stored object as ``view``'s version shows it (a patch applies to that)."""
        return obj if obj.get("apiVersion") == view.api_version else await self.converter.one(obj, view)

    async def _to_served(self, result: WriteResult, storage: ResourceDef, served: ResourceDef) -> WriteResult:
        """A write's answer with its objects in the served version (a Scale stays as it is)."""
        if isinstance(result, DeletedCollection):
            items = await self.converter.many([_decode(i) for i in result.items], served)
            return msgspec.structs.replace(result, list_kind=served.list_kind, api_version=served.api_version,
                                           items=tuple(_json.encode(i) for i in items))
        if not (isinstance(result, Stored) or (isinstance(result, Deleted) and result.pending)):
            return result
        obj = _decode(result.object)
        if not isinstance(obj, dict) or obj.get("kind") != storage.kind:  # a Scale, a review
            return result
        return msgspec.structs.replace(result, object=_json.encode(await self.converter.one(obj, served)))

    async def create_as(self, req: Request) -> WriteResult:
        """A create of a kind stored as another's subresource (``bindings``: the pod's binding)."""
        rdef = req.rdef
        assert rdef is not None
        plural, sub = rdef.create_as
        target = self.registry.by_resource(rdef.group, plural)
        meta = req.body.get("metadata") if isinstance(req.body, dict) else None
        name = meta.get("name") if isinstance(meta, dict) else None
        if target is None or not isinstance(name, str) or not name:
            raise BadRequest(f"the body of the request must be a {rdef.kind} object with metadata.name")
        return await self.subresource(msgspec.structs.replace(req, rdef=target, name=name, subresource=sub))

    # ---- subresources ----------------------------------------------------------------------------------

    async def subresource(self, req: Request) -> WriteResult:
        """A write to ``<resource>/<name>/<subresource>``: status, ephemeralcontainers and approval
        are writes of the object with the split the definition gives; scale, binding and eviction
        have their own bodies."""
        sub, verb = req.subresource, req.verb
        if verb == "create" and self.chain is not None and isinstance(req.body, dict):
            # A subresource's create (binding, eviction) is admitted with its own body as the object.
            body = await self.chain.mutate(req, "CREATE", req.body, None)
            await self.chain.validate(req, "CREATE", body, None)
            req = msgspec.structs.replace(req, body=body)
        if sub == "scale" and verb in ("update", "patch"):
            return await self.scale(req)
        if sub in ("status", "ephemeralcontainers", "approval") and verb == "update":
            return await self.update(req)
        if sub in ("status", "ephemeralcontainers", "approval") and verb == "patch":
            return await self.patch(req)
        if sub == "binding" and verb == "create":
            return await self.bind(req)
        if sub == "eviction" and verb == "create":
            return await self.evict(req)
        raise MethodNotAllowed("the server does not allow this method on the requested resource")

    async def scale(self, req: Request) -> WriteResult:
        """PUT or PATCH of ``/scale``: the write is to the Scale made from the object (kube's
        ScaleREST); its replicas go to the object's ``spec.replicas``, written as a main-resource
        update (generation and all), under the object's resourceVersion; the answer is a Scale."""
        rdef = req.rdef
        assert rdef is not None
        key = self.key(req)
        main = msgspec.structs.replace(req, subresource="")
        precondition: int | None = None
        if req.verb == "update" and isinstance(req.body, dict) and isinstance(req.body.get("metadata"), dict):
            precondition = _parse_rv(req.body["metadata"].get("resourceVersion"))

        async def decide(entry: Entry | None, old: dict[str, Any] | None) -> Decision:
            if entry is None or old is None:
                raise self.not_found(rdef, req.name)
            current = subresources.to_scale(rdef, old, str(entry.seq))
            if req.verb == "update":
                wanted = req.body
                if isinstance(wanted, dict):
                    bname = (wanted.get("metadata") or {}).get("name") if isinstance(wanted.get("metadata"),
                                                                                   dict) else None
                    if bname not in (None, "") and bname != req.name:
                        raise BadRequest(f"the name of the object ({bname}) does not match the name on the URL "
                                         f"({req.name})")
            elif req.patch_type == APPLY_PATCH:
                wanted = self._applied_scale(req, current)
            else:
                wanted = self._patched(req, current, patch_schema("autoscaling", "v1", "Scale"))
            if self.chain is not None and isinstance(wanted, dict):
                # Admitted as kube does: an update of ``<resource>/scale`` with Scale objects.
                wanted = await self.chain.mutate(req, "UPDATE", wanted, current)
            new = subresources.apply_scale(rdef, old, wanted)
            if req.patch_type == APPLY_PATCH and req.verb == "patch":
                # The Scale's ownership is the object's spec.replicas (kube's ScaleHandler).
                opts = _apply_options(req)
                new["metadata"]["managedFields"] = record_apply(
                    old, {"spec": {"replicas": (wanted.get("spec") or {}).get("replicas")}},
                    manager=opts.field_manager, api_version=rdef.api_version, now=now_rfc3339(),
                    force=opts.force, subresource="scale",
                    type_=apply_type(rdef), config_set=_SCALE_FIELDS)["metadata"].get("managedFields")
                new["metadata"].pop("resourceVersion", None)
                decision = self._merge_update(main, entry, old, new, record=False)
                if self.chain is not None:
                    await self.chain.validate(req, "UPDATE", wanted, current)
                return decision
            rv = _parse_rv(((wanted.get("metadata") or {}) if isinstance(wanted, dict) else {})
                           .get("resourceVersion"))
            if rv is not None and rv != entry.seq:
                raise self.conflict(rdef, req.name)
            new["metadata"].pop("resourceVersion", None)
            decision = self._merge_update(main, entry, old, new, manager_subresource="scale")
            if self.chain is not None and isinstance(wanted, dict):
                await self.chain.validate(req, "UPDATE", wanted, current)
            return decision

        data, _ = await self.guaranteed_update(main, key, decide, precondition_seq=precondition)
        obj = _decode(data)
        return Stored(object=_json.encode(subresources.to_scale(
            rdef, obj, str(obj["metadata"].get("resourceVersion", "")))))

    def _applied_scale(self, req: Request, current: dict[str, Any]) -> dict[str, Any]:
        """The Scale an apply to ``/scale`` asks for (its replicas over the current Scale)."""
        scale_def = msgspec.structs.replace(req.rdef, group="autoscaling", version="v1", kind="Scale")  # type: ignore[arg-type]
        config = applied_config(req.body, scale_def, req.name)
        replicas = (config.get("spec") or {}).get("replicas") if isinstance(config.get("spec"), dict) else None
        return {**current, "spec": {**(current.get("spec") or {}), "replicas": replicas}}

    def _patched(self, req: Request, current: dict[str, Any], schema: Any) -> Any:
        """``current`` with the request's patch applied (any of the three patch types)."""
        rdef = req.rdef
        assert rdef is not None
        ptype = req.patch_type
        if ptype not in (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH):
            raise UnsupportedMediaType(
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{JSON_PATCH}, {MERGE_PATCH}, {STRATEGIC_PATCH}")
        if (ptype == JSON_PATCH) != isinstance(req.body, list):
            raise BadRequest("the JSON patch must be a list of operations" if ptype == JSON_PATCH
                             else "the patch must be a JSON object")
        try:
            if ptype == JSON_PATCH:
                return apply_json_patch(current, req.body)
            if ptype == MERGE_PATCH:
                return apply_merge_patch(current, req.body)
            return apply_strategic_merge_patch(current, req.body, schema)
        except MalformedPatch as e:
            raise BadRequest(str(e)) from None
        except PatchError as e:
            raise Invalid(f"the server rejected our request due to an error in our request: {e}",
                          name=req.name, group=rdef.group, kind=rdef.kind) from None

    async def bind(self, req: Request) -> WriteResult:
        """POST ``pods/<name>/binding``: ``spec.nodeName`` set once (kube's BindingREST)."""
        rdef = req.rdef
        assert rdef is not None
        key = self.key(req)

        async def decide(entry: Entry | None, old: dict[str, Any] | None) -> Decision:
            if entry is None or old is None:
                raise self.not_found(rdef, req.name)
            new = subresources.bind(old, req.body, req.name)
            new["metadata"].pop("resourceVersion", None)
            return self._merge_update(req, entry, old, new)

        await self.guaranteed_update(req, key, decide)
        return Succeeded(created=True)

    async def evict(self, req: Request) -> WriteResult:
        """POST ``pods/<name>/eviction``: the pod is deleted unless the one PodDisruptionBudget
        that selects it allows no disruption (429); an allowed disruption is counted on the
        budget's status first, as kube's EvictionREST does."""
        rdef = req.rdef
        assert rdef is not None
        eviction = subresources.check_eviction(req.body, req.name)
        options = eviction.get("deleteOptions")
        entry = await self.current(self.key(req))
        if entry is None:
            raise self.not_found(rdef, req.name)
        opts = delete_options(options if isinstance(options, dict) else {})
        dry = req.dry_run or opts.dry_run
        pod = _decode(entry.data)
        if not subresources.can_ignore_pdb(pod):
            budgets = await self._budgets_for(req, pod)
            if len(budgets) > 1:
                raise InternalError("This pod has more than one PodDisruptionBudget, which the eviction "
                                    "subresource does not support.")
            if budgets:
                await self._decrement_budget(req, budgets[0], dry)
        delete = msgspec.structs.replace(req, verb="delete", subresource="",
                                         body=options if isinstance(options, dict) else None,
                                         options=msgspec.structs.replace(opts, dry_run=dry))
        await self.delete(delete)
        return Succeeded(created=True)

    async def _budgets_for(self, req: Request, pod: dict[str, Any]) -> list[str]:
        """Names of the namespace's PodDisruptionBudgets whose selector selects the pod (a nil or
        empty selector selects nothing here, as in kube's eviction)."""
        await self.projection.consistent()
        flt = WatchFilter.for_request(_PDB, req.namespace, "", "")
        listed = self.projection.list(req.tenant, _PDB.group, _PDB.plural, flt)
        labels = pod["metadata"].get("labels") or {}
        names = []
        for data in listed.items:
            pdb = _decode(data)
            text = subresources.format_label_selector((pdb.get("spec") or {}).get("selector"))
            try:
                selector = parse_label_selector(text)
            except SelectorError:
                continue
            if not selector.empty and selector.matches(labels):
                names.append(pdb["metadata"]["name"])
        return names

    async def _decrement_budget(self, req: Request, name: str, dry: bool) -> None:
        pdb_req = msgspec.structs.replace(req, rdef=_PDB, verb="update", subresource="status", name=name,
                                          body=None, options=Update(dry_run=dry))

        async def decide(entry: Entry | None, old: dict[str, Any] | None) -> Decision:
            if entry is None or old is None:
                raise self.not_found(_PDB, name)
            new = subresources.decrement_budget(old, req.name, now_rfc3339())
            new["metadata"].pop("resourceVersion", None)
            return self._merge_update(pdb_req, entry, old, new)

        await self.guaranteed_update(pdb_req, self.key(pdb_req), decide)


_PDB = next(d for d in BUILTIN if (d.group, d.plural) == ("policy", "poddisruptionbudgets"))
_API_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


def _custom_unknown_fields(obj: dict[str, Any], schema: dict[str, Any], *, prune: bool) -> list[str]:
    """Unknown fields of a custom resource: its body against the CRD's structural schema (where an
    empty ``type: object`` holds nothing), its metadata against ObjectMeta (whose opaque members,
    ``fieldsV1``, hold anything). With ``prune``, dropped in place."""
    body = {k: v for k, v in obj.items() if k != "metadata"}
    find = prune_unknown_fields if prune else unknown_fields
    found = find(body, schema, definitions(), open_empty_objects=False)
    if prune:
        for k in [k for k in obj if k != "metadata" and k not in body]:
            del obj[k]
    if isinstance(obj.get("metadata"), dict):
        found += find({"metadata": obj["metadata"]}, {"type": "object", "properties": {}}, definitions())
    return found


def _apply_options(req: Request) -> Apply:
    """An apply's options (the gateway checked that they name a field manager)."""
    opts = req.options
    if not isinstance(opts, Apply) or not opts.field_manager:
        check_apply_options({})  # an apply with no manager: kube's 422
        raise AssertionError("unreachable")
    return opts


def _msg_id(audit_id: str, subject: str, attempt: int) -> str:
    """The append's Nats-Msg-Id: the request's audit ID and a digest of the subject, so that a
    request writing several objects (deletecollection) gives each its own identity on the log,
    while a retry of the same append stays a duplicate. ``attempt`` > 0 is a new decision after a
    conflict, a different append."""
    digest = hashlib.blake2b(subject.encode(), digest_size=8).hexdigest()
    base = f"{audit_id or new_uid()}:{digest}"
    return base if attempt == 0 else f"{base}.{attempt}"


class _CreateInstead(ApiError):
    """Internal: a PUT to a missing object of a kind that allows create-on-update."""


def _parse_rv(value: Any) -> int | None:
    if value in (None, ""):
        return None
    # ASCII digits only (Python's int() would read "١" as 1), within int64, as the etcd versioner.
    rv = parse_int64(value) if isinstance(value, str) else None
    if rv is None or rv < 0:
        raise BadRequest(f"invalid resourceVersion {value!r}")
    return rv
