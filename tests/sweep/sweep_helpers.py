"""Helpers of the sweep tests (a uniquely named module: tests/ folders are not packages)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# A tiny EWC space on the bundled digits: a trial takes about a second on one core.
TINY_SPACE = """
method: ewc
train: {hidden: "32", epochs: 2, batch_size: 32, lr: 0.01}
search:
  lambda: {type: loguniform, low: 1, high: 1.0e4}
grid: {benchmark: permuted-digits, scenario: domain, n_tasks: 3}
budget: {trials: 4}
resources: {cpus: 1}
"""


def write_space(folder: Path, text: str, name: str = "space.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def documented_columns(table: str) -> set[str]:
    """Column names listed in docs/results-schema.md for ``trials`` or ``tasks``."""
    text = (REPO / "docs" / "results-schema.md").read_text()
    section = text.split(f"## `{table}.parquet`", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names.update(part.strip(" `") for part in first_cell.split(",") if "`" in part)
    return names


def study_trials(folder: Path, method: str, cell: str, phase: str = "search") -> list:
    """The Optuna trials of one study of a sweep, read back from its study.db."""
    import json

    import optuna

    name = json.loads((folder / "sweep.json").read_text())["name"]
    study = optuna.load_study(
        study_name=f"{name}:{method}:{cell}:{phase}", storage=f"sqlite:///{folder / 'study.db'}"
    )
    return study.trials
