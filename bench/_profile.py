"""Where the time goes: py-spy samples of a running gateway, folded into self and inclusive costs.

py-spy (from PyPI, the ``bench`` extra) attaches to the gateway's pid and samples the Python stack
of the thread holding the GIL (``--gil``: the gateway is one process bound by its GIL, so this is
where its CPU goes) while a scenario's load runs again, outside the measured run so the sampling
does not disturb the figures. Time in C code (msgspec, socket calls) counts to the Python line
that called it. The collapsed stacks are folded two ways:

* the share of each thread (the trio main thread, and nats-py's asyncio thread "nats-asyncio"),
* self time per function (the frame on top of the stack: "which function holds the time"),
* inclusive time per component: each sample is charged to the innermost frame's package
  (jetkube's own bus/actors/projections/gateway, quart+werkzeug, hypercorn+h11, trio's core,
  nats-py on its asyncio thread, msgspec, the standard library).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

COMPONENTS = (
    ("jetkube", ("bus/", "actors/", "projections/", "gateway/")),
    ("quart/werkzeug", ("quart/", "quart_trio/", "werkzeug/", "flask/")),
    ("hypercorn/h11", ("hypercorn/", "h11/", "wsproto/", "h2/")),
    ("nats-py/asyncio", ("nats/", "asyncio/", "selectors.py")),
    ("trio", ("trio/", "outcome/", "sniffio/", "methods trio.")),
    ("msgspec", ("msgspec/",)),
)


def py_spy() -> str | None:
    cand = Path(sys.executable).parent / "py-spy"
    if cand.is_file() and os.access(cand, os.X_OK):
        return str(cand)
    return shutil.which("py-spy")


def bench_requirements() -> list[str]:
    """The ``bench`` extra of pyproject.toml (one source of truth for what the benchmarks need)."""
    import tomllib

    try:
        with open(Path(__file__).resolve().parent.parent / "pyproject.toml", "rb") as f:
            data = tomllib.load(f)
        return list(data["project"]["optional-dependencies"]["bench"])
    except (OSError, KeyError, ValueError):
        return ["py-spy>=0.3.14"]


def ensure_py_spy(log: Any) -> str | None:
    """py-spy, installed from PyPI into this interpreter's environment when missing."""
    found = py_spy()
    if found:
        return found
    reqs = bench_requirements()
    log(f"py-spy missing: pip install {' '.join(reqs)}")
    try:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *reqs], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=240, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        log(f"  failed: {e}")
    return py_spy()


def component(file: str) -> str:
    for name, marks in COMPONENTS:
        for m in marks:
            if m in file:
                return name
    return "stdlib/other"


def fold(raw_text: str, top: int = 12) -> dict[str, Any]:
    """Fold ``py-spy record --threads --format raw`` output (see the module docstring)."""
    self_t: Counter[str] = Counter()
    main_self: Counter[str] = Counter()
    incl_jk: Counter[str] = Counter()
    comp: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in raw_text.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        frames = stack.split(";")
        thread = "?"
        if frames and frames[0].startswith("thread ("):
            thread = frames.pop(0).split(": ", 1)[-1]
            if not frames:
                continue
        threads[thread] += count
        total += count
        parsed = []
        for f in frames:
            m = _FRAME.match(f)
            if m:
                parsed.append((m.group("func"), m.group("file")))
            else:
                parsed.append((f, ""))
        func, file = parsed[-1]
        self_t[f"{func} ({_short(file)})"] += count
        if thread == "MainThread":
            main_self[f"{func} ({_short(file)})"] += count
        comp[component(file)] += count
        seen: set[str] = set()
        for func, file in parsed:
            if component(file) == "jetkube" and not file.endswith(_ROOTS):
                key = f"{func} ({_short(file)})"
                if key not in seen:
                    seen.add(key)
                    incl_jk[key] += count
    if not total:
        return {"samples": 0}

    def pct(c: Counter[str], k: int) -> list[list[Any]]:
        return [[name, round(100.0 * v / total, 1)] for name, v in c.most_common(k)]

    return {"samples": total, "threads": pct(threads, 5), "self": pct(self_t, top),
            "main_thread_self": pct(main_self, top), "components": pct(comp, 10),
            "jetkube_inclusive": pct(incl_jk, top)}


# Frames every gateway sample sits under: not informative as inclusive costs.
_ROOTS = ("gateway/__main__.py", "gateway/_cli.py", "gateway/_server.py")


def _short(file: str) -> str:
    for marker in ("site-packages/", "/lib/python3.11/", "/work/main/"):
        i = file.find(marker)
        if i >= 0:
            return file[i + len(marker):]
    return file
