"""jetkube's benchmark suite: speed and memory against the ceilings of its own stack.

``python -m bench [--quick] [--only B1,B5]`` (or ``make bench [QUICK=1]``). See bench/_runner.py for
the layout of a run and bench/PERFORMANCE.md for the latest figures. Benchmarks report; they never
fail (exit code 0).
"""

import os

# Every `jetkube serve` the benchmark starts is one process unless a scenario asks for workers
# (M1/M2 pass --workers): the flag's default is the number of cores.
os.environ.setdefault("JETKUBE_WORKERS", "1")
