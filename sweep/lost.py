"""``--resume`` runs again the trials that a lost node ended, each in its own row.

A trial whose node was lost (or preempted) more often than ``resources.max_failures`` allows is
recorded as an ``error`` whose message starts with the cause (:func:`contract.schema.lost_to_node`)
and, in the search phase, told to Optuna as FAIL: the sweep goes on without it. A resume gives it
another chance, since nothing was wrong with the configuration:

- a search trial gets a new Optuna trial with the same parameters and the same trial id, left
  RUNNING (Optuna cannot reopen a finished trial); resuming then runs it as an interrupted trial,
  and the earlier, superseded FAIL trial no longer counts toward the budget;
- a final-phase trial was never added to the final study (it is added when it really ends), so it
  is planned again once its row is gone;
- then the error rows are removed from the tables; the re-run writes the trial's row anew.

The new Optuna trials come first, so a resume killed in between still finds them (interrupted
trials without rows) and runs them.
"""

from __future__ import annotations

from typing import Any

from contract.schema import lost_to_node
from sweep.results import ResultsStore
from sweep.space import SweepSpec
from sweep.studies import UnitStudies


def requeue_lost(
    spec: SweepSpec, store: ResultsStore, studies: list[UnitStudies], say: Any
) -> set[str]:
    """Requeue the trials of ``store``'s rows that a lost node ended and drop those rows;
    ``studies``: each unit's, in ``spec.units`` order. Returns their trial ids."""
    lost = [r for r in store.rows_read if lost_to_node(r)]
    if not lost:
        return set()
    units = {(method, cell.key): i for i, (method, cell) in enumerate(spec.units)}
    for row in lost:
        if row["phase"] != "search":
            continue
        unit = units.get((row["method"], row["cell"]))
        if unit is None:
            continue
        values = {p.name: row[p.column] for p in spec.params_for(row["method"])}
        studies[unit].requeue(row["trial_id"], values)
    ids = {r["trial_id"] for r in lost}
    store.drop(ids)
    say(f"--resume: {len(ids)} trial(s) that a lost node ended run again: {', '.join(sorted(ids))}")
    return ids
