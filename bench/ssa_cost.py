"""``python -m bench.ssa_cost``: what server-side apply costs against an update for the same change.

In process, the part of a write that differs between the two (everything else — decoding, the
strategy, validation, the log append — is the same code for both): for a Deployment of N
containers, owned by two managers, a change of one container's image

- **update**: ``record_update`` of the changed object (what a PUT or merge patch adds to a write);
- **apply**: ``record_apply`` of the applied configuration (merge by schema, ownership, conflicts,
  pruning), as the apply patch does instead of applying a patch and ``record_update``;
- **apply (force, conflict)**: the same with a conflict taken over by force.

Each figure is the best of 5 runs of many calls (the least disturbed on a shared machine), in µs per
write. The update's own patch application (a strategic merge patch) is timed too, for scale.
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable
from typing import Any

from actors._managed import record_apply, record_update
from actors._patch import apply_strategic_merge_patch
from kinds import patch_schema
from kinds._fieldpath import builtin_type


def deployment(n: int, image: str = "app:1") -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": "u", "labels": {"app": "web"}},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [
                                      {"name": f"c{i}", "image": image if i == 0 else f"side{i}:1",
                                       "ports": [{"containerPort": 8000 + i, "protocol": "TCP"}],
                                       "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                                       "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}
                                      for i in range(n)]}}}}


def per_call_us(fn: Callable[[], Any], calls: int) -> float:
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best * 1e6


def measure(n: int, calls: int | None = None) -> dict[str, float]:
    """µs per write for a Deployment of ``n`` containers: the strategic merge patch, the update's
    managedFields, the apply (and the apply taking a conflict by force) for the same change."""
    t = builtin_type("apps", "v1", "Deployment")
    schema = patch_schema("apps", "v1", "Deployment")
    live = deployment(n)
    live = record_apply(None, live, manager="app", api_version="apps/v1", now="t0", force=False, type_=t, base={})
    live["metadata"]["uid"] = "u"
    # A second manager owns the first container's image (an update), so the apply below shares
    # the object with it.
    changed = copy.deepcopy(live)
    changed["spec"]["replicas"] = 4
    record_update(live, changed, manager="scaler", api_version="apps/v1", now="t1", type_=t)
    live = changed
    new = copy.deepcopy(live)
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "app:2"
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "c0", "image": "app:2"}]}}}}
    config = deployment(n, "app:2")
    del config["spec"]["replicas"]
    conflicting = deployment(n, "app:2")
    calls = calls or max(200, 4000 // n)

    def smp() -> None:
        apply_strategic_merge_patch(live, patch, schema)

    def update() -> None:
        obj = dict(new)
        obj["metadata"] = dict(new["metadata"])
        record_update(live, obj, manager="ci", api_version="apps/v1", now="t2", type_=t)

    def apply() -> None:
        record_apply(live, config, manager="app", api_version="apps/v1", now="t2", force=False, type_=t)

    def force() -> None:
        record_apply(live, conflicting, manager="app", api_version="apps/v1", now="t2", force=True, type_=t)

    return {"smp_us": per_call_us(smp, calls), "update_us": per_call_us(update, calls),
            "apply_us": per_call_us(apply, calls), "apply_force_us": per_call_us(force, calls)}


def main(argv: list[str]) -> int:
    print(f"{'containers':>10} {'SMP patch':>10} {'update':>10} {'apply':>10} {'apply/force':>12}  (µs per write)")
    for n in (1, 5, 20):
        m = measure(n)
        print(f"{n:>10} {m['smp_us']:>10.0f} {m['update_us']:>10.0f} {m['apply_us']:>10.0f} "
              f"{m['apply_force_us']:>12.0f}")
    # B1's object: a ConfigMap of 8 keys and labels, created (the managedFields every create now records).
    cm_type = builtin_type("", "v1", "ConfigMap")
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "labels": {"a": "1", "b": "2"}},
          "data": {f"key{i}": "x" * 100 for i in range(8)}}

    def create() -> None:
        obj = dict(cm)
        obj["metadata"] = dict(cm["metadata"])
        record_update(None, obj, manager="bench", api_version="v1", now="t", type_=cm_type)

    def apply_create() -> None:
        record_apply(None, cm, manager="bench", api_version="v1", now="t", force=False, type_=cm_type, base={})

    print(f"ConfigMap create: managedFields of an update {per_call_us(create, 5000):.0f} µs, "
          f"of an apply {per_call_us(apply_create, 5000):.0f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
