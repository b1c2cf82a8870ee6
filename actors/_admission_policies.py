"""ValidatingAdmissionPolicies."""

from __future__ import annotations

from kinds import Registry
from projections import Projection


class PolicyDispatcher:
    def __init__(self, projection: Projection, registry: Registry) -> None:
        self.projection = projection

    def active(self, tenant: str) -> bool:
        return False
