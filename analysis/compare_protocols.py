"""One search space run under several selection protocols, side by side.

How hyperparameters are chosen decides how methods rank (Cha & Cho 2024, "Hyperparameters in
Continual Learning: A Reality Check"; docs/selection.md). Given sweeps of the same space run under
different protocols, this shows per method and protocol: the configuration the protocol chose,
where its final phase was reported, its test average accuracy there, the method's rank among the
methods of that protocol, and what the search and the final phase cost; then, for each pair of
protocols, whether the ranking of the methods they share changes.

Layout: long, one row per (where the protocols report: benchmark and scenario; method;
protocol), methods in the report's order and, within a method, protocols in
:data:`PROTOCOL_ORDER`, so a method's choices under each protocol sit together. A method run
under some protocols only gets a row under the others too, reading "not run". Accuracies under
different protocols are measured on different tasks (first-tasks reports tasks k..T-1 only,
transfer another cell), so only ranks compare across protocols.

The chosen configuration is the sweep's own: its final phase's rank-1 configuration (the best
search configuration by the sweep's objective, re-run with fresh seeds), or without a final phase
the best completed search trial by the objective, as ``clsweep best`` takes it
(:mod:`analysis.registry`). Nothing is re-selected, and never on test data.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.load import AnalysisError, Results, SweepInfo, load_results
from analysis.order import cell_sort_key, method_order
from analysis.protocol import selection_texts
from analysis.registry import protocol_of
from analysis.tables import PCT, params_shown, params_text, to_markdown, write_table
from contract.formatting import DASH, format_duration, format_pm, sem
from contract.schema import COMPLETED

PROTOCOL_ORDER = ("end-of-sequence", "first-tasks", "transfer", "per-task", "first-task")
"""Protocols in the order tables list them: today's default first, then by how little the
search may see of what is reported."""
METRIC = "test_avg_acc"
"""What the table reports and ranks by: test average accuracy after the last learned task."""
NOT_RUN = "not run"
NOT_RECORDED = "not recorded"
RECORDS = ("evaluated_on", "described")
"""Keys of sweep.json's ``selection`` that describe cells rather than set the protocol."""


@dataclass
class ProtocolComparison:
    """The comparison: ``rows`` (fractions, seconds; one per cell, method and protocol), the table
    a reader reads, its numbers for CSV (percent, hours), the reading and the caption."""

    rows: pd.DataFrame
    display: pd.DataFrame
    numbers: pd.DataFrame
    reading: list[str]
    caption: str
    protocols: dict[str, list[str]]
    """protocol label -> the sweeps run under it."""


def protocol_labels(results: Results) -> dict[str, str]:
    """sweep name -> its protocol as tables name it: the protocol's name, with its settings
    ("first-tasks (tasks=2)") only where two inputs ran the same protocol differently."""
    found = {name: _protocol(info) for name, info in results.sweeps.items()}
    settings: dict[str, set[str]] = {}
    for protocol, text in found.values():
        settings.setdefault(protocol, set()).add(text)
    return {
        name: f"{protocol} ({text})" if len(settings[protocol]) > 1 and text else protocol
        for name, (protocol, text) in found.items()
    }


def _protocol(info: SweepInfo) -> tuple[str, str]:
    """(protocol, its settings as 'tasks=2' or 'evaluate benchmark=permuted-mnist')."""
    protocol, rest = protocol_of(info.meta)
    parts = []
    for key, value in sorted(rest.items()):
        if key in RECORDS:
            continue
        if isinstance(value, dict):
            inner = ", ".join(f"{k}={v}" for k, v in sorted(value.items()))
            parts.append(f"{key} {inner}")
        else:
            parts.append(f"{key}={value}")
    return protocol, "; ".join(parts)


def protocol_sort_key(label: str) -> tuple[int, str]:
    name = label.split(" (")[0]
    rank = PROTOCOL_ORDER.index(name) if name in PROTOCOL_ORDER else len(PROTOCOL_ORDER)
    return rank, label


def compare_protocols(source: Results | str | Path | Sequence[str | Path]) -> ProtocolComparison:
    """The comparison of the sweeps at ``source`` (or already loaded); fewer than two different
    protocols, or one method run twice under one protocol, raises AnalysisError."""
    results = source if isinstance(source, Results) else load_results(source)
    labels = protocol_labels(results)
    protocols: dict[str, list[str]] = {}
    for name in sorted(labels):
        protocols.setdefault(labels[name], []).append(name)
    protocols = dict(sorted(protocols.items(), key=lambda item: protocol_sort_key(item[0])))
    if len(protocols) < 2:
        only = next(iter(protocols))
        raise AnalysisError(
            f"every sweep given ({', '.join(sorted(labels))}) ran the {only} selection protocol; "
            "compare-protocols needs sweeps of two or more protocols (sweep.json 'selection')"
        )
    rows = protocol_rows(results, labels)
    if rows[f"{METRIC}_mean"].isna().all():
        raise AnalysisError(
            "no method of the given sweeps has a completed trial with a test average accuracy; "
            "check trials.parquet's status and message columns"
        )
    return ProtocolComparison(
        rows=rows,
        display=compare_display(rows),
        numbers=compare_numbers(rows),
        reading=ranking_reading(rows),
        caption=compare_caption(results, protocols),
        protocols=protocols,
    )


def protocol_rows(results: Results, labels: dict[str, str]) -> pd.DataFrame:
    """One row per (where the protocols report, method, protocol): ``cell`` is the benchmark
    and scenario of the reported (final-phase) runs, so that a transfer sweep tuned on another
    benchmark, or a first-tasks sweep of a longer sequence, stands beside the end-of-sequence
    sweep it is compared with; every method of a cell under every protocol (``source`` = ``not
    run`` where it was not), ranked within (cell, protocol) by the mean."""
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    trials = results.trials
    for (sweep, method, study), group in trials.groupby(["sweep", "method", "cell"], sort=True):
        row = _study_row(results, results.sweeps[str(sweep)], group)
        benchmark, scenario, _ = str(study).rsplit("/", 2)
        cell = (
            f"{row.get('reported_benchmark', benchmark)}/{row.get('reported_scenario', scenario)}"
        )
        key = (cell, str(method), labels[str(sweep)])
        if key in found:
            raise AnalysisError(
                f"{method} reported on {cell} under {key[2]} in sweeps {found[key]['sweep']} "
                f"and {sweep}; pass one sweep per method, protocol and benchmark"
            )
        found[key] = row | {"cell": cell, "method": str(method), "protocol": key[2]}
    protocols = sorted(set(labels.values()), key=protocol_sort_key)
    cells = sorted({k[0] for k in found}, key=_cell_key)
    rows = []
    for cell in cells:
        methods = method_order({k[1] for k in found if k[0] == cell})
        for method in methods:
            for protocol in protocols:
                rows.append(found.get((cell, method, protocol)) or _not_run(cell, method, protocol))
    frame = pd.DataFrame(rows)
    ranks = frame.groupby(["cell", "protocol"], sort=False)[f"{METRIC}_mean"].rank(
        ascending=False, method="min"
    )
    frame["rank"] = ranks.astype("Int64")
    return frame


def _cell_key(cell: str) -> tuple:
    benchmark, scenario = cell.rsplit("/", 1)
    return cell_sort_key(benchmark, scenario, 0)


def _study_row(results: Results, info: SweepInfo, rows: pd.DataFrame) -> dict[str, Any]:
    """What one sweep chose for one method in one tuning cell, its test numbers and cost."""
    search = rows[rows["phase"] == "search"]
    finals = rows[rows["phase"] == "final"]
    ranked_first = finals[finals["final_rank"] == 1] if "final_rank" in finals else finals[:0]
    out: dict[str, Any] = {
        "sweep": info.name,
        "searched_on": _where(search.iloc[0]) if len(search) else str(rows["cell"].iloc[0]),
        "search_trials": len(search),
        "final_trials": len(finals),
        "cpu_time_s": _seconds(rows, "cpu_time_s"),
        "gpu_time_s": _seconds(rows, "gpu_time_s"),
    }
    if len(ranked_first):
        done = ranked_first[ranked_first["status"] == COMPLETED].sort_values(
            "train_seed", kind="stable"
        )
        chosen = done.iloc[0] if len(done) else ranked_first.iloc[0]
        values = done[METRIC].dropna()
        seeds = ", ".join(str(int(s)) for s in done.loc[values.index, "train_seed"])
        source = "final"
    else:
        metric, _ = info.objective
        candidates = search[(search["status"] == COMPLETED) & search[metric].notna()]
        if candidates.empty:
            return out | _blank("no completed trial")
        candidates = candidates.sort_values("trial_id").sort_values(
            metric, ascending=info.direction(metric) == "min", kind="stable"
        )
        chosen = candidates.iloc[0]
        values = pd.Series([chosen[METRIC]]).dropna()
        seeds = str(int(chosen["train_seed"]))
        source = "search"
    return out | {
        "source": source,
        "config_id": str(chosen["config_id"]),
        "params": params_text(results, chosen),
        "params_shown": params_shown(results, chosen),
        "reported_on": _where(chosen),
        "reported_benchmark": str(chosen["benchmark"]),
        "reported_scenario": str(chosen["scenario"]),
        "reported_n_tasks": int(chosen["n_tasks"]),
        "task_start": _window(chosen)[0],
        "task_stop": _window(chosen)[1],
        f"{METRIC}_mean": float(values.mean()) if len(values) else math.nan,
        f"{METRIC}_sem": sem(values),
        "n": len(values),
        "seeds": seeds,
    }


def _window(row: pd.Series) -> tuple[int, int]:
    """[task_start, task_stop) a run learned; a sweep before schema 5 ran the whole sequence."""
    n_tasks = int(row["n_tasks"])
    start, stop = row.get("task_start"), row.get("task_stop")
    start = 0 if start is None or pd.isna(start) else int(start)
    stop = n_tasks if stop is None or pd.isna(stop) else int(stop)
    return start, stop


def _where(row: pd.Series) -> str:
    """'permuted-mnist/domain/5, tasks 2-4' or '..., all 5 tasks': the cell a row ran on and
    the tasks it learned (numbered as in the whole sequence)."""
    cell = f"{row['benchmark']}/{row['scenario']}/{int(row['n_tasks'])}"
    start, stop = _window(row)
    if (start, stop) == (0, int(row["n_tasks"])):
        return f"{cell}, all {stop} tasks"
    return f"{cell}, task {start}" if stop - start == 1 else f"{cell}, tasks {start}-{stop - 1}"


def _seconds(rows: pd.DataFrame, column: str) -> float:
    """Summed seconds; NaN where the sweep did not record the column (before schema 4)."""
    if column not in rows:
        return math.nan
    return float(pd.to_numeric(rows[column], errors="coerce").sum(min_count=1))


def _blank(source: str) -> dict[str, Any]:
    return {
        "source": source,
        "config_id": None,
        "params": None,
        "params_shown": None,
        "reported_on": None,
        "reported_benchmark": None,
        "reported_scenario": None,
        "reported_n_tasks": None,
        "task_start": None,
        "task_stop": None,
        f"{METRIC}_mean": math.nan,
        f"{METRIC}_sem": math.nan,
        "n": 0,
        "seeds": None,
    }


def _not_run(cell: str, method: str, protocol: str) -> dict[str, Any]:
    return {
        "cell": cell,
        "method": method,
        "protocol": protocol,
        "sweep": None,
        "searched_on": None,
        "search_trials": None,
        "final_trials": None,
        "cpu_time_s": math.nan,
        "gpu_time_s": math.nan,
    } | _blank(NOT_RUN)


def compare_display(rows: pd.DataFrame) -> pd.DataFrame:
    """The table a reader reads: values to 4 significant digits, accuracy in percent, blanks
    where a method was not run under a protocol; the tasks searched and reported named within
    full (cell and tasks)."""
    records = []
    for _, row in rows.iterrows():
        ran = row["source"] != NOT_RUN
        mean = row[f"{METRIC}_mean"]
        record = {
            "cell": row["cell"],
            "method": row["method"],
            "protocol": row["protocol"],
            "searched on": _within(row["searched_on"], row["cell"]),
            "configuration": _configuration(row),
            "reported on": _within(row["reported_on"], row["cell"]),
            "test avg. acc. (%)": format_pm(mean, row[f"{METRIC}_sem"], int(row["n"]))
            if not math.isnan(mean)
            else ("" if not ran else DASH),
            "rank": "" if pd.isna(row["rank"]) else str(int(row["rank"])),
            "trials (search + final)": f"{int(row['search_trials'])} + {int(row['final_trials'])}"
            if ran
            else "",
            "CPU time": _time(row["cpu_time_s"]) if ran else "",
            "GPU time": _time(row["gpu_time_s"]) if ran else "",
        }
        records.append(record)
    return pd.DataFrame(records)


def _configuration(row: pd.Series) -> str:
    if row["source"] == NOT_RUN:
        return NOT_RUN
    if pd.isna(row["params_shown"]):
        return str(row["source"])  # 'no completed trial'
    suffix = " (best search trial: no final phase)" if row["source"] == "search" else ""
    if str(row["protocol"]).startswith("per-task"):  # chosen inside the run, at every task
        searched = "" if row["params_shown"] == "(defaults)" else f"; {row['params_shown']}"
        return f"lr and stability knob chosen at each task (per_task_choices){searched}{suffix}"
    return str(row["params_shown"]) + suffix


def _within(where: Any, cell: str) -> str:
    """A place without the row's ``cell`` prefix where it starts with it, the whole place
    elsewhere; blank where the frame holds nothing (None reads back as NaN)."""
    if where is None or pd.isna(where):
        return ""
    return str(where).removeprefix(f"{cell}, ")


def _time(seconds: float) -> str:
    """CPU or GPU seconds as a span a reader takes in (``1 h 30 min``, ``1.8 s``; hours to
    three digits read as ``5.13e-4`` for a small sweep); the CSV keeps hours."""
    return NOT_RECORDED if math.isnan(seconds) else format_duration(seconds)


def compare_numbers(rows: pd.DataFrame) -> pd.DataFrame:
    """The numbers behind the table (CSV): accuracy in percent, cost in hours, the searched
    values exact."""
    numbers = rows[
        [
            "cell", "method", "protocol", "sweep", "source", "config_id", "params", "searched_on",
            "reported_benchmark", "reported_scenario", "reported_n_tasks", "task_start",
            "task_stop",
        ]
    ].copy()  # fmt: skip
    numbers[f"{METRIC}_mean{PCT}"] = 100 * rows[f"{METRIC}_mean"]
    numbers[f"{METRIC}_sem{PCT}"] = 100 * rows[f"{METRIC}_sem"]
    numbers["n"] = rows["n"]
    numbers["seeds"] = rows["seeds"]
    numbers["rank"] = rows["rank"]
    numbers["search_trials"] = rows["search_trials"]
    numbers["final_trials"] = rows["final_trials"]
    numbers["cpu_hours"] = rows["cpu_time_s"] / 3600
    numbers["gpu_hours"] = rows["gpu_time_s"] / 3600
    return numbers


def ranking_reading(rows: pd.DataFrame) -> list[str]:
    """For each cell and pair of protocols: the ranking of the methods both ran (by the test
    mean, best first; '=' joins equal means) under each, and whether it changes."""
    lines = []
    cells = list(dict.fromkeys(rows["cell"]))
    for cell in cells:
        mine = rows[(rows["cell"] == cell) & rows[f"{METRIC}_mean"].notna()]
        protocols = sorted(set(rows.loc[rows["cell"] == cell, "protocol"]), key=protocol_sort_key)
        for first, second in combinations(protocols, 2):
            a = mine[mine["protocol"] == first].set_index("method")[f"{METRIC}_mean"]
            b = mine[mine["protocol"] == second].set_index("method")[f"{METRIC}_mean"]
            shared = [m for m in a.index if m in b.index]
            prefix = f"{cell}: " if len(cells) > 1 else ""
            if len(shared) < 2:
                lines.append(
                    f"{prefix}{first} vs {second}: fewer than two methods ranked under both, "
                    "nothing to compare"
                )
                continue
            order_a, order_b = _ranking(a[shared]), _ranking(b[shared])
            verdict = "unchanged" if order_a == order_b else "changes"
            line = (
                f"{prefix}ranking {first}: {_ranking_text(order_a)}; {second}: "
                f"{_ranking_text(order_b)}: {verdict}"
            )
            left_out = method_order((set(a.index) | set(b.index)) - set(shared))
            if left_out:
                line += f" (not under both: {', '.join(left_out)})"
            lines.append(line)
    return lines


def _ranking(means: pd.Series) -> list[tuple[str, ...]]:
    """Methods best first, grouped where their means are equal."""
    order = method_order(means.index)
    groups: dict[float, list[str]] = {}
    for method in order:
        groups.setdefault(float(means[method]), []).append(method)
    return [tuple(groups[v]) for v in sorted(groups, reverse=True)]


def _ranking_text(ranking: list[tuple[str, ...]]) -> str:
    return " > ".join(" = ".join(group) for group in ranking)


def compare_caption(results: Results, protocols: dict[str, list[str]]) -> str:
    """Says what each protocol's search saw and what is in each column."""
    described = []
    for label, sweeps in protocols.items():
        texts = list(dict.fromkeys(t for s in sweeps for t in _seen(results.sweep(s))))
        described.append(f"{label} (sweep {', '.join(sweeps)}): {'; '.join(texts)}")
    return (
        "Selection protocols compared: for each method, the configuration each protocol chose "
        "(the final phase's rank-1 configuration, values to 4 significant digits), where its "
        "final phase was reported (cell and tasks), its test average accuracy there (%, mean ± "
        "SEM over n fresh seeds), the method's rank among the methods of its protocol by that "
        "mean (1 = best), and the cost of its search and final phase (trials, CPU time, "
        "GPU time). Protocols report on different tasks, so compare ranks across protocols, "
        "not accuracies. 'not run': the method was not run under that protocol. What each "
        f"search saw: {' | '.join(described)}."
    )


def _seen(info: SweepInfo) -> list[str]:
    """What the search of a sweep saw and where it reported, per cell, without the protocol's
    name in front (the caption names it)."""
    protocol, settings = _protocol(info)
    if (info.meta.get("selection") or {}).get("described") or protocol == PROTOCOL_ORDER[0]:
        texts = selection_texts(info)
    else:  # a record without its description: say what is known, never end-of-sequence's text
        texts = [f"{settings or 'settings not recorded'}; sweep.json does not describe the cells"]
    return [t.removeprefix(f"{protocol}: ") for t in texts]


def write_comparison(comparison: ProtocolComparison, out: str | Path) -> list[Path]:
    """protocols.md (the table, caption and reading), .csv (the numbers) and .tex in ``out``."""
    paths = write_table(
        comparison.display, out, "protocols", comparison.numbers, comparison.caption
    )
    markdown = paths[0].read_text()
    lines = "\n".join(f"- {line}" for line in comparison.reading)
    paths[0].write_text(f"{comparison.caption}\n\n{markdown}\nReading:\n\n{lines}\n")
    return paths


def console_text(comparison: ProtocolComparison) -> str:
    """What ``compare-protocols`` prints: the protocols, the table, the reading."""
    protocols = "\n".join(
        f"  {label}: sweep {', '.join(sweeps)}" for label, sweeps in comparison.protocols.items()
    )
    reading = "\n".join(f"  {line}" for line in comparison.reading)
    return (
        f"Selection protocols compared\n{protocols}\n\n{to_markdown(comparison.display)}\n"
        f"Reading (test average accuracy; accuracies of different protocols are on different "
        f"tasks, ranks compare):\n{reading}\n"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "results", nargs="+", help="sweep folders, results folders holding sweeps, or globs"
    )
    parser.add_argument(
        "--out", type=Path, help="also write protocols.md, protocols.csv and protocols.tex here"
    )


def run(args: argparse.Namespace) -> int:
    """Print the comparison (and write it with --out); bad input is one line and exit 2."""
    try:
        comparison = compare_protocols(args.results)
        paths = write_comparison(comparison, args.out) if args.out is not None else []
    except (AnalysisError, OSError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    print(console_text(comparison), end="")
    if paths:
        print(f"\ntables: {', '.join(str(p) for p in paths)}")
    return 0
