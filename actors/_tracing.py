"""Tracing hooks, without OpenTelemetry: the gateway implements :class:`Spans` when tracing is on.

A request's trace context travels *in the message*: :attr:`Request.trace` is the W3C
``traceparent`` of the gateway's request span ("" when tracing is off or the request is not
sampled). Each actor stage opens a child of it in the worker task that handles the message, and
while it is open it is that task's current span, so a log append or a consistent-read wait inside
the handler becomes its child. Nothing here is called when tracing is off: every hook is ``None``.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Protocol

# Reusable: a nullcontext holds no state between uses.
NO_SPAN: AbstractContextManager[object] = nullcontext()


class Spans(Protocol):
    """What the actors need from a tracer."""

    def child(self, name: str, traceparent: str) -> AbstractContextManager[object]:
        """A span named ``name``, child of ``traceparent``, current in this task while open."""
        ...

    def current_child(self, name: str) -> AbstractContextManager[object]:
        """A child of this task's current span; nothing when there is no sampled current span."""
        ...

    def current_traceparent(self) -> str:
        """The W3C ``traceparent`` of this task's current span; "" when it is not sampled."""
        ...


def current_child(spans: Spans | None, name: str) -> AbstractContextManager[object]:
    """``spans.current_child(name)``, or a shared no-op context when tracing is off."""
    return NO_SPAN if spans is None else spans.current_child(name)
