"""The import direction of ARCHITECTURE.md, enforced: each package imports only what it may."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OURS = {"kinds", "bus", "projections", "actors", "gateway", "compose", "tests", "bench", "tools"}
ALLOWED = {
    "kinds": set(),
    "bus": {"kinds"},
    "projections": {"bus", "kinds"},
    "actors": {"bus", "kinds", "projections"},
    "gateway": {"bus", "kinds", "actors", "projections"},
    "tools": set(),  # generators run by hand (their output is data in kinds/)
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & OURS


def test_package_import_direction() -> None:
    bad = []
    for pkg, allowed in ALLOWED.items():
        files = list((ROOT / pkg).rglob("*.py"))
        assert files, pkg
        for f in files:
            for imp in imports_of(f) - allowed - {pkg}:
                bad.append(f"{f.relative_to(ROOT)} imports {imp}")
    assert bad == []


def test_tables_and_protobuf_know_no_kind() -> None:
    """Printer columns and protobuf messages are the kinds' data: the gateway's Table writer and
    protobuf codec name no kind (the kinds with a printer are the witnesses)."""
    from kinds._printers import PRINTERS

    for module in ("gateway/_table.py", "gateway/_protobuf.py", "gateway/_protobuf_write.py"):
        text = (ROOT / module).read_text()
        named = sorted({kind for _, kind in PRINTERS if f'"{kind}"' in text or f"'{kind}'" in text})
        assert named == [], f"{module} names kinds {named}"


def test_only_bus_touches_asyncio() -> None:
    bad = [str(f.relative_to(ROOT)) for pkg in ("kinds", "projections", "actors", "gateway")
           for f in (ROOT / pkg).rglob("*.py") if {"asyncio", "nats"} & _all_imports(f)]
    assert bad == []


def test_checker_sees_a_violation(tmp_path: Path) -> None:
    f = tmp_path / "x.py"
    f.write_text("from gateway import serve\nimport actors.messages\n")
    assert imports_of(f) == {"gateway", "actors"}


def _all_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out
