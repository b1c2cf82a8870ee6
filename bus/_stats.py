"""Measurements kept where they are made: plain numbers on the measuring object, no registry.

The gateway's collector reads them when ``/metrics`` is scraped; nothing here knows about
Prometheus beyond the shape of a histogram.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable


class Histogram:
    """A fixed-bucket histogram in the Prometheus shape (upper bounds, a sum and a count).

    Observing costs one bisect and three additions, so hot paths (every actor message, every
    append) can afford it. Not thread-safe: observed and read from the trio thread only.
    """

    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, bounds: Iterable[float]) -> None:
        self.bounds = tuple(float(b) for b in bounds)
        if list(self.bounds) != sorted(set(self.bounds)):
            raise ValueError(f"histogram bounds must increase strictly: {self.bounds}")
        # Invariant: counts[i] is the number of observations v with bounds[i-1] < v <= bounds[i];
        # the last slot holds those above every bound (the +Inf bucket's own share).
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.total += value

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations <= it) for every bound, then (inf, count)."""
        out: list[tuple[float, int]] = []
        running = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            running += n
            out.append((bound, running))
        out.append((float("inf"), self.count))
        return out


#: Buckets for in-process steps (an actor's handler, a log append): 50 us to 10 s.
FAST_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0, 10.0)
