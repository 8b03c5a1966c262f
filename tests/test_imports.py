"""Every module of the project imports on its own, in a fresh interpreter: no module depends on
another having been imported first (an import circle that works only because some import runs
late would fail here, whichever of its modules is imported first)."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("cl_core", "contract", "analysis", "sweep", "clsweep")


def modules() -> list[str]:
    names = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _import(name: str) -> tuple[str, int, str]:
    done = subprocess.run(
        [sys.executable, "-c", f"import {name}"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    return name, done.returncode, done.stderr.strip().splitlines()[-1:]


def test_every_module_imports_in_a_fresh_interpreter():
    names = modules()
    assert len(names) > 100  # the packages were found
    with ThreadPoolExecutor(max_workers=max(os.cpu_count() or 1, 2)) as pool:
        failed = [(n, err) for n, code, err in pool.map(_import, names) if code != 0]
    assert failed == []
