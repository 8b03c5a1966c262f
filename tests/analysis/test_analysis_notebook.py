"""The tutorial notebook runs top to bottom on a real sweep (nbclient, kernel python3)."""

from __future__ import annotations

from pathlib import Path

import nbformat
from analysis_fixtures import FIXTURES
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "analysis" / "notebooks" / "explore_sweep.ipynb"


def test_notebook_executes(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CLSWEEP_RESULTS", str(FIXTURES))  # the kernel inherits the environment
    # ... and imports this checkout's analysis (not another install's, e.g. in a git worktree)
    monkeypatch.setenv("PYTHONPATH", str(NOTEBOOK.parents[2]))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=180,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 7  # every figure of the tutorial was drawn
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert all(f"{name} " in text for name in ("quickstart", "lwf-small", "ewc-choice"))
