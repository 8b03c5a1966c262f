"""What the CLI prints: the plan of a dry run and the table of best configurations at the end."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from contract import tables
from contract.formatting import format_param, format_pm, sem
from contract.schema import CURVES_FILE, META_FILE, TASKS_FILE, TRIALS_FILE
from sweep.space import SweepSpec, scale_notes
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
    report's number format: percent, mean ± SEM (n), parameter values exact."""
    if not tables.exists(folder, TRIALS_FILE):
        return f"no trial finished; nothing written in {folder}"
    df = tables.read_table(folder, TRIALS_FILE).to_pandas()
    names = {p.column: p.name for p in spec.params}
    metric, mode = spec.metrics[0], spec.modes[0]
    lines = ["numbers in percent; final phase: mean ± SEM over its fresh seeds (n seeds)"]
    for (method, cell), group in df.groupby(["method", "cell"], sort=False):
        columns = [p.column for p in spec.params_for(method)]  # hp_* of other methods are null
        search = group[(group.phase == "search") & (group.status == "completed")]
        counts = group[group.phase == "search"].status.value_counts()
        status = ", ".join(f"{n} {status}" for status, n in counts.items())
        lines.append(f"\n{method} on {cell}: search trials {status}")
        if len(search):
            top = search.sort_values("objective", ascending=mode == "min").head(TOP)
            shown = pd.DataFrame({"trial": top["trial_id"]})
            for column in columns:
                shown[names[column]] = top[column].map(format_param)
            shown[f"{metric} (%)"] = top["objective"].map(format_pm)
            shown["test_avg_acc (%)"] = top["test_avg_acc"].map(format_pm)
            shown["tasks"] = top["tasks_completed"].astype(str) + "/" + top["n_tasks"].astype(str)
            lines.append(f"top {len(top)} of the search on {metric} ({mode}):")
            lines.append(_indent(shown.to_string(index=False)))
        final = group[(group.phase == "final") & (group.status == "completed")]
        if len(final):
            lines.append("final phase (fresh seeds):")
            table = _final_table(final, columns, names, metric)
            lines.append(_indent(table.to_string(index=False)))
    lines.append("\nwritten:")
    curves = tables.exists(folder, CURVES_FILE)  # task-free stream runs only
    studies = existing_study_file(folder)
    written = [TRIALS_FILE, TASKS_FILE, CURVES_FILE, META_FILE, studies.name if studies else None]
    lines += [f"  {folder / name}" for name in written if name and (curves or name != CURVES_FILE)]
    lines.append(f"report: clsweep report {folder} --out {folder / 'report'}")
    if curves:
        lines.append(
            f"accuracy over time: python -m analysis curves {folder} --out {folder / 'curves'}"
        )
    return "\n".join(lines)


def _final_table(
    final: pd.DataFrame, columns: list[str], names: dict[str, str], metric: str
) -> pd.DataFrame:
    rows = []
    for (rank, config_id), runs in final.groupby(["final_rank", "config_id"], sort=True):
        row = {"rank": int(rank), "config_id": config_id}
        row.update({names[c]: format_param(runs[c].iloc[0]) for c in columns})
        for value in dict.fromkeys([metric, "val_avg_acc", "test_avg_acc"]):
            row[f"{value} (%)"] = format_pm(runs[value].mean(), sem(runs[value]), len(runs))
        rows.append(row)
    return pd.DataFrame(rows)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
