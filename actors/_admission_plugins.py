"""kube-apiserver's built-in admission plugins, for the kinds jetkube serves."""

from __future__ import annotations

from typing import Any

from kinds import Registry
from projections import Projection


def mutating_plugins(projection: Projection, registry: Registry) -> tuple[Any, ...]:
    return ()


def validating_plugins(projection: Projection, registry: Registry) -> tuple[Any, ...]:
    return ()
