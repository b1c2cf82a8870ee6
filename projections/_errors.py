"""Errors of the read side."""

from __future__ import annotations


class ProjectionError(Exception):
    """Base of read-side errors."""


class ResourceVersionTooLarge(ProjectionError):
    """The store did not reach ``wanted`` within the consistency bound (504, retry after 1 s)."""

    def __init__(self, wanted: int, applied: int) -> None:
        super().__init__(f"Too large resource version: {wanted}, current: {applied}")
        self.wanted = wanted
        self.applied = applied


class TooOldResourceVersion(ProjectionError):
    """``seq`` is below what the log retains (410 Expired)."""

    def __init__(self, seq: int, first: int) -> None:
        super().__init__(f"too old resource version: {seq} ({first})")
        self.seq = seq
        self.first = first


class ContinueExpired(ProjectionError):
    """A continue token older than the log's retention (410 Expired)."""


class BadContinue(ProjectionError):
    """A continue token we did not issue (400)."""
