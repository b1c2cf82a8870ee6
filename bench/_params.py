"""Sizes and durations of every scenario, full and quick. Printed in each scenario's header."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Params:
    conns: int = 64
    body_bytes: int = 1024
    c1_s: float = 8.0          # each C1 run (run twice per request mix: before and after the HTTP block)
    c1_runs: int = 2
    http_s: float = 12.0       # B1, B2, B3
    b2_names: int = 1000
    b3_objects: int = 256      # 4 x the connections: an object is never in flight twice
    c2_s: float = 8.0          # C2 runs before and after B5
    c2_runs: int = 2
    b5_s: float = 8.0
    log_window: int = 256      # appends in flight for C2 and B5
    b4_objects: int = 10_000
    b4_repeats: int = 7
    b6_watchers: int = 1000
    b6_rate: float = 200.0
    b6_s: float = 20.0
    b6_grace_s: float = 20.0
    b7_s: float = 20.0
    b7_probe_conns: int = 8
    b7o_rate: float = 120.0    # B7o: consistent GET, LIST and rv=0 GET in turn, paced (open loop)
    b8_objects: int = 100_000
    b8_events: int = 1_000_000  # the log B8's objects are folded from (updates, deletes, re-creates)
    b9_objects: int = 100_000
    b10_events: int = 50_000
    b11_s: float = 10.0
    profile_s: float = 8.0
    b6_writer_conns: int = 64
    profile_fanout_watchers: int = 200
    max_rps: int = 100_000     # request-count bound per second of load (every loop is bounded in count too)


FULL = Params()

QUICK = Params(
    c1_s=3.0, c1_runs=1, http_s=4.0, c2_runs=2, c2_s=3.0, b5_s=3.0, b4_repeats=3,
    b6_watchers=200, b6_s=5.0, b6_grace_s=5.0, b7_s=6.0, b8_objects=20_000, b8_events=100_000, b9_objects=50_000,
    b10_events=15_000, b11_s=3.0, profile_s=3.0,
)
