"""Bounds on decoded request values, shared by the gateway's decoders and the patch code.

kube-apiserver's limits, or tighter ones where Python's stack needs them:

- ``MAX_DEPTH``: Go's ``encoding/json`` and go-yaml stop at 10000 levels ("exceeded max depth"),
  with goroutine stacks that grow. Here every recursive step (msgspec, field validation, merge
  and strategic patches, deep copies) takes 1-3 frames of the interpreter's 1000-frame limit,
  and the server's own stack is already ~45 frames deep where bodies are decoded and patches
  applied (measured). At 100 levels the deepest path uses ~350 frames, leaving room for code
  that recurses more; the write path was seen to break near 350 levels with 250 frames in use
  (``test_max_depth_leaves_room_on_the_interpreter_stack``). Real objects stay far below 100.
- ``MAX_JSON_PATCH_OPERATIONS``: ``maxJSONPatchOperations`` in
  ``k8s.io/apiserver/pkg/endpoints/handlers/patch.go`` (more: 413).
- ``MAX_COPY_BYTES``: ``JSONPatchMaxCopyBytes`` (3 MiB, ``k8s.io/apiserver/pkg/server/config.go``),
  set as evanphx/json-patch's ``AccumulatedCopySizeLimit``: the bytes that all ``copy``
  operations of one patch may add together (more: 422).
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 100
MAX_JSON_PATCH_OPERATIONS = 10_000
MAX_COPY_BYTES = 3 * 1024 * 1024


def depth_exceeds(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether a JSON value nests objects/arrays deeper than ``limit`` (a scalar is depth 0).

    Iterative, so it is safe on values deeper than the interpreter's recursion limit, and it
    stops at the first path that is too deep.
    """
    if not isinstance(value, dict | list):
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False
