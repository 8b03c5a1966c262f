"""What the CLI prints: the plan of a dry run and the table of best configurations at the end."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from contract import tables
from contract.schema import META_FILE, STUDY_FILE, TASKS_FILE, TRIALS_FILE
from sweep.space import SweepSpec

TOP = 5


def plan_text(spec: SweepSpec, address: str | None) -> str:
    """The resolved plan: cells, trials, search, resources (nothing is started)."""
    per_cell = spec.trials + spec.final_top_k * spec.final_seeds
    lines = [
        f"sweep {spec.name} ({spec.file}): method {', '.join(spec.methods)}",
        f"cells ({len(spec.cells)}), run at the same time, each searched on its own:",
        *(f"  {c.key}" for c in spec.cells),
        "searched:",
        *(f"  {p.column}: {_dist(p)}" for p in spec.params),
        f"fixed train settings: {spec.train or '(defaults)'}",
        f"fixed hyperparameters: {spec.hyperparams or '(defaults)'}",
        "objective: "
        + ", ".join(f"{m} ({d})" for m, d in zip(spec.metrics, spec.modes, strict=True)),
        f"sampler: {spec.sampler} (seed {spec.sampler_seed})",
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
        + (f"; at most {spec.max_concurrent} at once" if spec.max_concurrent else ""),
        f"loggers: {', '.join(lg.name for lg in spec.loggers) or 'none'}",
        f"ray: {address or f'local ({os.cpu_count()} CPUs here)'}",
        f"trials in all: {per_cell * len(spec.units)} "
        f"({len(spec.units)} {'study' if len(spec.units) == 1 else 'studies'} (method x cell) "
        f"x ({spec.trials} search + "
        f"{spec.final_top_k * spec.final_seeds} final))",
    ]
    return "\n".join(lines)


def _dist(p) -> str:
    if p.distribution == "categorical":
        return f"categorical {list(p.choices)}"
    step = f" step {p.step:g}" if p.step else ""
    log = " log" if p.log and p.distribution == "int" else ""
    return f"{p.distribution} [{p.low:g}, {p.high:g}]{step}{log}"


def best_table(spec: SweepSpec, folder: Path) -> str:
    """Best search configs per cell (on the objective) and final-phase test means."""
    if not tables.exists(folder, TRIALS_FILE):
        return f"no trial finished; nothing written in {folder}"
    df = tables.read_table(folder, TRIALS_FILE).to_pandas()
    columns = [p.column for p in spec.params]
    metric, mode = spec.metrics[0], spec.modes[0]
    lines = []
    pd.set_option("display.width", 160)
    for (method, cell), group in df.groupby(["method", "cell"], sort=False):
        search = group[(group.phase == "search") & (group.status == "completed")]
        counts = group[group.phase == "search"].status.value_counts().to_dict()
        lines.append(f"\n{method} on {cell}: search trials by status {counts}")
        if len(search):
            top = search.sort_values("objective", ascending=mode == "min").head(TOP)
            shown = top[["trial_id", *columns, "objective", "test_avg_acc", "tasks_completed"]]
            lines.append(f"top {len(top)} on {metric} ({mode}):")
            lines.append(shown.rename(columns={"objective": metric}).to_string(index=False))
        final = group[(group.phase == "final") & (group.status == "completed")]
        if len(final):
            agg = (
                final.groupby(["final_rank", "config_id", *columns])
                .test_avg_acc.agg(["mean", "std", "count"])
                .reset_index()
                .sort_values("final_rank")
            )
            lines.append("final phase (fresh seeds), test_avg_acc:")
            lines.append(agg.to_string(index=False))
    lines.append("\nwritten:")
    for name in (TRIALS_FILE, TASKS_FILE, META_FILE, STUDY_FILE):
        lines.append(f"  {folder / name}")
    return "\n".join(lines)
