"""Admission: built-in plugins that run before the resource actor decides a write.

NamespaceLifecycle (as kube-apiserver's): no new content in a missing namespace (404) or in a
terminating one (403); a kind's immortal objects (``ResourceDef.immortal``: the namespaces default,
kube-system and kube-public) may not be deleted (403). Object validation runs
in the resource actor on the final object, where updates and patches are known in full.
"""

from __future__ import annotations

from bus import Key
from kinds import NAMESPACES
from kinds._errors import Forbidden, NotFound
from projections import Projection

from ._runtime import Actor, ReplySlot
from ._tenancy import TenancyAdmission
from .messages import Request


class NamespaceLifecycle:
    def __init__(self, projection: Projection) -> None:
        self.projection = projection

    async def admit(self, req: Request) -> None:
        rdef = req.rdef
        if rdef is None:
            return
        if req.verb in ("delete", "deletecollection") and req.name in rdef.immortal:
            raise Forbidden(f'{rdef.plural} "{req.name}" is forbidden: this {rdef.singular} may not be deleted',
                            name=req.name, group=rdef.group, kind=rdef.plural)
        if not rdef.namespaced or req.verb != "create":
            return
        # An active namespace in the local projection is taken as it is (writes through this
        # gateway are applied before they are answered, so this gateway's own changes are always
        # seen); like the apiserver's informer-backed plugin, a deletion made on another gateway
        # a moment ago may be missed, and the namespace controller then removes the late object.
        # Anything else is confirmed with a consistent read before it is refused.
        key = Key(req.tenant, *NAMESPACES, "", req.namespace)
        entry = self.projection.get(key)
        if entry is None or entry.fields.get("status.phase") != "Active":
            await self.projection.consistent()
            entry = self.projection.get(key)
        if entry is None:
            raise NotFound(f'{NAMESPACES[1]} "{req.namespace}" not found', name=req.namespace, kind=NAMESPACES[1])
        if entry.fields.get("status.phase") == "Terminating":
            raise Forbidden(f"unable to create new content in namespace {req.namespace} because it is being "
                            f"terminated", name=req.name, group=rdef.group, kind=rdef.plural)


def admission_handler(lifecycle: NamespaceLifecycle, next_actor: Actor[Request],  # type: ignore[no-untyped-def]
                      tenancy: TenancyAdmission | None = None):
    async def handle(req: Request, reply: ReplySlot) -> None:
        if tenancy is not None:
            req = tenancy.admit(req)
        await lifecycle.admit(req)
        next_actor.forward(req, reply)

    return handle
