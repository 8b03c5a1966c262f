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
    """The Optuna trials of one study of a sweep, read back from its study file."""
    import json

    import optuna

    from sweep.study_storage import existing_study_file, open_storage

    name = json.loads((folder / "sweep.json").read_text())["name"]
    storage = open_storage(existing_study_file(folder))
    study = optuna.load_study(study_name=f"{name}:{method}:{cell}:{phase}", storage=storage)
    return study.trials


def plans_of(launch):
    """The plans of what ``SweepState.next_launch`` returned (None or FINISHED as they are)."""
    return [run.plan for run in launch] if isinstance(launch, list) else launch


def next_plan(state):
    """The plan of the next trial launched on its own (populations off), None or FINISHED."""
    plans = plans_of(state.next_launch())
    return plans[0] if isinstance(plans, list) else plans


def launched_config(state, plan):
    """The RunConfig the driver built for ``plan`` when it launched it (kept for its row)."""
    return state.units[plan.unit].running[plan.trial_id].config


def finished_sweep(folder: Path, space: Path, compact: bool = True) -> Path:
    """A finished sweep of ``space`` under ``folder`` without Ray: the driver's state fed the
    reports the trainable would send (a quality that falls with each task), then compacted,
    with its sweep.json; the same files a real run writes. Returns the sweep folder."""
    from cl_core.trainer import TaskReport
    from sweep.results import ResultsStore, write_sweep_json
    from sweep.space import load_space
    from sweep.trainable import _Tracker
    from sweep.units import FINISHED, SweepState

    spec = load_space(space)
    out = folder / spec.name
    out.mkdir(parents=True)
    store = ResultsStore(spec, out)
    state = SweepState(spec, out, store, capacity=1, say=lambda _: None)
    write_sweep_json(spec, out, "python -m sweep", "2026-01-01T00:00:00Z", None)
    while (plan := next_plan(state)) not in (None, FINISHED):
        tracker = _Tracker(launched_config(state, plan))
        n = tracker.cfg.n_tasks
        tracker.reports.append(TaskReport(0, [0.1] * n, [0.1] * n, None, 0.0))
        for i in range(1, n + 1):
            acc = [0.9 - 0.1 * i if j < i else 0.1 for j in range(n)]
            tracker.reports.append(TaskReport(i, acc, acc, 1.0, 0.01))
            state.on_report(plan, tracker.metrics())
        state.on_end(plan, tracker.metrics())
    state.close()
    if compact:
        store.compact()
    write_sweep_json(spec, out, "python -m sweep", "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z")
    return out


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder``: its sha256 and mode (to prove nothing was touched)."""
    import hashlib

    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
