"""Where the real fixture sweeps live (a module, so that tests can import the paths)."""

from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
SWEEPS = sorted(p for p in FIXTURES.iterdir() if (p / "trials.parquet").is_file())


def raw_rows(raw_tasks, sweep: str, trial_id: str, split: str = "test"):
    """One trial's accuracy rows from tasks.parquet (trial ids are unique only within a sweep)."""
    mask = (raw_tasks["sweep"] == sweep) & (raw_tasks["trial_id"] == trial_id)
    return raw_tasks[mask & (raw_tasks["split"] == split)]
