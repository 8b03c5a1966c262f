"""What the CLI prints: the plan of a dry run and the table of best configurations at the end."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from contract import tables
from contract.formatting import (
    format_count,
    format_duration,
    format_pm,
    format_short,
    sem,
)
from contract.schema import CURVES_FILE, META_FILE, TASKS_FILE, TRIALS_FILE, tasks_in_run
from sweep.console import RAY_LOG
from sweep.space import SweepSpec, scale_notes
from sweep.space.spec import END_OF_SEQUENCE
from sweep.study_storage import existing_study_file

TOP = 5


def plan_text(spec: SweepSpec, address: str | None) -> str:
    """The resolved plan: cells, trials, search, resources (nothing is started)."""
    per_cell = spec.trials + spec.final_top_k * spec.final_seeds
    lines = [
        f"sweep {spec.name} ({spec.file}): method {', '.join(spec.methods)}",
        f"cells ({len(spec.cells)}), run at the same time, each searched on its own:",
        *(f"  {c.key}" for c in spec.cells),
        "searched:",
        *(f"  {p.column}: {_dist(p)}{_only(spec, p)}" for p in spec.params),
        f"fixed train settings: {spec.train or '(defaults)'}",
        f"fixed hyperparameters: {spec.hyperparams or '(defaults)'}",
        "objective: "
        + ", ".join(f"{m} ({d})" for m, d in zip(spec.metrics, spec.modes, strict=True)),
        f"sampler: {spec.sampler} (seed {spec.sampler_seed}; each study's seed derived from it "
        "and its cell: sweep.json, protocol.sampler)",
        f"budget: {spec.trials} trials per cell"
        + (f", at most {spec.time_limit_s:g} s per cell" if spec.time_limit_s else ""),
        "early stopping: "
        + (
            f"ASHA on {spec.metrics[0]} per task, grace {spec.early_stopping['grace_tasks']} "
            f"task(s), reduction factor {spec.early_stopping['reduction_factor']:g}"
            if spec.early_stopping
            else "off"
        ),
        "selection protocol: "
        + "; ".join(dict.fromkeys(spec.selection.describe(c) for c in spec.cells)),
        "final phase: "
        + (
            f"top {spec.final_top_k} configs x {spec.final_seeds} seeds "
            f"(from {spec.final_seed_base}), reported on test"
            if spec.final_top_k
            else "off"
        ),
        f"per trial: {spec.cpus:g} CPU, {spec.gpus:g} GPU"
        + (f"; at most {spec.max_concurrent} at once" if spec.max_concurrent else "")
        + (
            f"; up to {spec.population} configs trained together (population)"
            if spec.population > 1
            else ""
        ),
        f"loggers: {', '.join(lg.name for lg in spec.loggers) or 'none'}",
        f"ray: {address or f'local ({os.cpu_count()} CPUs here)'}",
        f"trials in all: {per_cell * len(spec.units)} "
        f"({len(spec.units)} {'study' if len(spec.units) == 1 else 'studies'} (method x cell) "
        f"x ({spec.trials} search + "
        f"{spec.final_top_k * spec.final_seeds} final))",
        *scale_notes(spec),
    ]
    return "\n".join(lines)


def _only(spec: SweepSpec, p) -> str:
    """Which methods a parameter is searched for, when not all of the space's methods."""
    only = [m for m in spec.methods if p.applies_to(m)]
    return f" (for {', '.join(only)} only)" if len(only) < len(spec.methods) else ""


def _dist(p) -> str:
    if p.distribution == "categorical":
        return f"categorical {list(p.choices)}"
    step = f" step {p.step:g}" if p.step else ""
    log = " log" if p.log and p.distribution == "int" else ""
    return f"{p.distribution} [{p.low:g}, {p.high:g}]{step}{log}"


def best_table(spec: SweepSpec, folder: Path) -> str:
    """Best search configs per cell (on the objective) and the final phase's means, in the
    report's number format: percent to 0.1, mean ± SEM (n), parameter values to 4 significant
    digits (exact in trials.parquet). Each table says what it ranks by."""
    if not tables.exists(folder, TRIALS_FILE):
        return f"no trial finished; nothing written in {folder}"
    df = tables.read_table(folder, TRIALS_FILE).to_pandas()
    names = {p.column: p.name for p in spec.params}
    metric, mode = spec.metrics[0], spec.modes[0]
    lines = [
        "numbers in percent; final phase: mean ± SEM over its fresh seeds (n seeds); parameters "
        "to 4 significant digits (exact in trials.parquet)"
    ]
    for (method, cell), group in df.groupby(["method", "cell"], sort=False):
        columns = [p.column for p in spec.params_for(method)]  # hp_* of other methods are null
        search = group[(group.phase == "search") & (group.status == "completed")]
        counts = group[group.phase == "search"].status.value_counts()
        status = ", ".join(f"{n} {status}" for status, n in counts.items())
        lines.append(f"\n{method} on {cell}: search trials {status}")
        if spec.selection.protocol != END_OF_SEQUENCE:
            where = next(c for c in spec.cells if c.key == cell)
            lines.append(f"selection protocol {spec.selection.describe(where)}")
        if len(search):
            top = search.sort_values("objective", ascending=mode == "min").head(TOP)
            shown = pd.DataFrame({"trial": top["trial_id"]})
            for column in columns:
                shown[names[column]] = top[column].map(format_short)
            shown[f"{metric} (%)"] = top["objective"].map(format_pm)
            shown["test_avg_acc (%)"] = top["test_avg_acc"].map(format_pm)
            shown["tasks"] = [
                f"{row['tasks_completed']}/{tasks_in_run(row)}" for row in top.to_dict("records")
            ]
            lines.append(
                f"top {len(top)} of the search, ranked by {metric} "
                f"({'highest' if mode == 'max' else 'lowest'} first; one seed each):"
            )
            lines.append(_indent(shown.to_string(index=False)))
        final = group[(group.phase == "final") & (group.status == "completed")]
        if len(final):
            lines.append(
                f"final phase, ranked by mean {metric} over its fresh seeds "
                f"({'highest' if mode == 'max' else 'lowest'} first; rank 1 is the one reported; "
                "search rank: its place in the search):"
            )
            table = _final_table(final, columns, names, metric, mode)
            lines.append(_indent(table.to_string(index=False)))
        lines.append(cost_line(group))
    lines.append("\nwritten:")
    curves = tables.exists(folder, CURVES_FILE)  # task-free stream runs only
    studies = existing_study_file(folder)
    written = [TRIALS_FILE, TASKS_FILE, CURVES_FILE, META_FILE, studies.name if studies else None]
    lines += [f"  {folder / name}" for name in written if name and (curves or name != CURVES_FILE)]
    if (folder / RAY_LOG).exists():
        lines.append(f"  {folder / RAY_LOG} (Ray's own messages)")
    lines.append(f"report: clsweep report {folder} --out {folder / 'report'}")
    if curves:
        lines.append(
            f"accuracy over time: python -m analysis curves {folder} --out {folder / 'curves'}"
        )
    return "\n".join(lines)


def _final_table(
    final: pd.DataFrame, columns: list[str], names: dict[str, str], metric: str, mode: str
) -> pd.DataFrame:
    """The final phase's configurations, ranked by their mean ``metric`` over the fresh seeds
    (the number the report selects on), so that the rank and the shown mean agree."""
    groups = final.groupby(["final_rank", "config_id"], sort=True)
    order = groups[metric].mean().sort_values(ascending=mode == "min", kind="stable")
    rows = []
    for rank, (search_rank, config_id) in enumerate(order.index, start=1):
        runs = groups.get_group((search_rank, config_id))
        row = {"rank": rank, "search rank": int(search_rank), "config_id": config_id}
        row.update({names[c]: format_short(runs[c].iloc[0]) for c in columns})
        for value in dict.fromkeys([metric, "val_avg_acc", "test_avg_acc"]):
            row[f"{value} (%)"] = format_pm(runs[value].mean(), sem(runs[value]), len(runs))
        rows.append(row)
    return pd.DataFrame(rows)


def cost_line(trials: pd.DataFrame) -> str:
    """What a study cost: its trials' summed time, CPU- and GPU-hours, the search's share, and
    the size of what it trained (docs/results-schema.md, cost columns)."""
    search = trials["phase"] == "search"
    cpu = trials["cpu_time_s"].sum()
    share = f" (search {100 * trials.loc[search, 'cpu_time_s'].sum() / cpu:.0f}%)" if cpu else ""
    gpu = trials["gpu_time_s"].sum()
    sizes = trials[["trainable_params", "stored_samples"]].max()
    return (
        f"cost: {int(search.sum())} search + {int((~search).sum())} final trials, "
        f"{format_duration(trials['wall_time_s'].sum())} of trial time, "
        f"{format_duration(cpu)} of CPU time{share}"
        + (f", {format_duration(gpu)} of GPU time" if gpu else "")
        + f"; {format_count(sizes['trainable_params'])} trainable parameters, "
        f"{format_count(sizes['stored_samples'])} stored samples"
    )


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
