"""One order for methods, scenarios and cells in every table and figure of a report.

Scenarios go task, domain, class (easiest to hardest, the three-scenario papers' order); cells go
by benchmark, then task count, then scenario, so that a grid of panels reads like the comparison
table's columns. Methods go from the lower bound (fine-tuning) to the upper bound (joint).
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

SCENARIO_ORDER = ("task", "domain", "class")
SCENARIO_LABELS = {"task": "Task-IL", "domain": "Domain-IL", "class": "Class-IL"}
METHOD_ORDER = (
    "finetune",
    # regularisation (of parameters, of functions)
    "ewc",
    "si",
    "lwf",
    "fromp",
    # replay of stored samples
    "er",
    "agem",
    "icarl",
    "der",
    "derpp",
    # generative replay, generative classifier
    "dgr",
    "bir",
    "gen_classifier",
    # parameter isolation (task-IL)
    "xdg",
    "separate",
    "joint",
)
"""Lower bound first and the joint-training upper bound last, as in the three-scenario tables;
in between, the method families in the three-scenario papers' order."""


def scenario_rank(scenario: str) -> int:
    """Position of a scenario in task, domain, class; unknown scenarios after them."""
    return SCENARIO_ORDER.index(scenario) if scenario in SCENARIO_ORDER else len(SCENARIO_ORDER)


def scenario_label(scenario: str) -> str:
    """'Task-IL' for 'task'; an unknown scenario keeps its name."""
    return SCENARIO_LABELS.get(scenario, scenario)


def method_order(methods: Iterable[str]) -> list[str]:
    """Lower bound and known methods first, others alphabetically, joint (upper bound) last."""
    present = set(methods)
    known = [m for m in METHOD_ORDER[:-1] if m in present]
    joint = [m for m in METHOD_ORDER[-1:] if m in present]
    return known + sorted(present - set(METHOD_ORDER)) + joint


def cell_sort_key(benchmark: str, scenario: str, n_tasks: int) -> tuple:
    """Sort key of a scenario cell: benchmark, task count, then task/domain/class."""
    return (str(benchmark), int(n_tasks), scenario_rank(scenario), str(scenario))


def cell_title(benchmark: str, scenario: str, n_tasks: int) -> str:
    """'split-mnist, Task-IL, 5 tasks': a panel title or table label for one cell."""
    return f"{benchmark}, {scenario_label(scenario)}, {int(n_tasks)} tasks"


def ordered_cells(trials: pd.DataFrame) -> list[tuple[str, str, int]]:
    """The distinct (benchmark, scenario, n_tasks) cells of ``trials`` in report order."""
    cells = {
        (str(b), str(s), int(n))
        for b, s, n in trials[["benchmark", "scenario", "n_tasks"]].itertuples(index=False)
    }
    return sorted(cells, key=lambda c: cell_sort_key(*c))


def ordered_studies(trials: pd.DataFrame) -> list[str]:
    """The distinct studies (``<method> on <cell>``) of ``trials``: by cell, then method."""
    firsts = trials.drop_duplicates("study")
    ranks = {m: i for i, m in enumerate(method_order(firsts["method"]))}
    keyed = [
        (cell_sort_key(r.benchmark, r.scenario, r.n_tasks), ranks[r.method], r.study)
        for r in firsts.itertuples(index=False)
    ]
    return [study for *_, study in sorted(keyed)]


def cell_layout(
    cells: list[tuple[str, str, int]],
) -> tuple[int, int, dict[tuple[str, str, int], tuple[int, int]]]:
    """(rows, columns, cell -> (row, column)) of a grid of per-cell panels that reads like the
    comparison table: a row per benchmark and task count, a column per scenario (task, domain,
    class; only those present). ``cells`` as :func:`ordered_cells` returns them."""
    groups = list(dict.fromkeys((b, int(n)) for b, _, n in cells))
    scenarios = sorted({s for _, s, _ in cells}, key=lambda s: (scenario_rank(s), s))
    places = {
        cell: (groups.index((cell[0], int(cell[2]))), scenarios.index(cell[1])) for cell in cells
    }
    return len(groups), len(scenarios), places


def sort_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows by benchmark, task count, scenario (task, domain, class), then method order."""
    method_rank = {m: i for i, m in enumerate(method_order(frame["method"].unique()))}
    key = frame.assign(_s=frame["scenario"].map(scenario_rank), _m=frame["method"].map(method_rank))
    key = key.sort_values(["benchmark", "n_tasks", "_s", "_m"], kind="stable")
    return key.drop(columns=["_s", "_m"]).reset_index(drop=True)
