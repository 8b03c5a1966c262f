"""Which modules an import loads, in a fresh interpreter (torch-free: the lowest-versions smoke
runs the analysis and contract tests in an environment without torch)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def modules_after(statement: str, cwd: Path | None = None) -> tuple[list[str], list[str]]:
    """In a fresh interpreter, after ``statement`` (an import): which of Ray, Optuna, torch,
    torchvision and the sweep package it loaded, and which cl_core modules."""
    code = (
        f"{statement}\nimport sys\n"
        "heavy = ('ray', 'optuna', 'torch', 'torchvision', 'sweep')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "print(sorted(m for m in sys.modules if m.startswith('cl_core')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=cwd
    )
    heavy, core = done.stdout.strip().splitlines()
    return eval(heavy), eval(core)  # noqa: S307 - two printed lists of module names


CONFIG_ONLY = ["cl_core", "cl_core.config", "cl_core.errors"]
"""The cl_core modules a torch-free package may load: the run configuration (docs/design.md)."""
