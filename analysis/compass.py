"""CLEVA-Compass entries for the methods of a sweep (``clsweep report --compass``).

The CLEVA-Compass (Mundt, Lang, Delfosse and Kersting, "CLEVA-Compass: A Continual Learning
EValuation Assessment Compass to Promote Research Transparency and Comparability", ICLR 2022,
arXiv:2110.03331) states, per method, its set-up (the inner level: 11 attributes, each 0 = does
not apply, 1 = supervised, 2 = unsupervised) and which measures a comparison reports (the outer
level: 15 booleans). Its repository, github.com/ml-research/CLEVA-Compass, publishes no JSON
Schema; its README ("JSON Data Format") documents the file its ``create_compass.py`` and GUI read:
``{"entries": [{"color", "label", "inner_level", "outer_level"}]}`` with the keys below and
``color`` one of six names. :func:`problems` checks a document against exactly those fields.

The set-up comes from each method's declarations as the sweep recorded them (the hyperparameters
a method declares are the non-null ``hp_`` columns of its rows; their values those of its chosen
configuration) and the scenarios and streams it ran; what the declarations cannot show (a method
that trains several networks) is in :data:`MULTIPLE_MODELS`. The measures come from the sweep:
a measure is marked when its column holds values for that method.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.load import Results
from analysis.order import method_order

COLORS = ("magenta", "green", "blue", "orange", "cyan", "brown")
"""The colours the compass README documents."""
INNER_LEVEL = (
    "multiple_models", "federated", "online", "open_world", "multiple_modalities",
    "active_data_query", "task_order_discovery", "task_agnostic", "episodic_memory", "generative",
    "uncertainty",
)  # fmt: skip
OUTER_LEVEL = (
    "compute_time", "mac_operations", "communication", "forgetting", "forward_transfer",
    "backward_transfer", "openness", "parameters", "memory", "stored_data", "generated_data",
    "optimization_steps", "per_task_metric", "task_order", "data_per_task",
)  # fmt: skip
NOT_APPLICABLE, SUPERVISED, UNSUPERVISED = 0, 1, 2
MULTIPLE_MODELS = {"separate": SUPERVISED, "gen_classifier": UNSUPERVISED}
"""Methods with more than one model: separate networks are picked by the task label
(supervised); the generative classifier's per-class models by their likelihood (unsupervised)."""
MEASURED = {
    "compute_time": ("wall_time_s", "cpu_time_s", "gpu_time_s"),
    "forgetting": ("test_forgetting",),
    "forward_transfer": ("test_fwt",),
    "backward_transfer": ("test_bwt",),
    "parameters": ("trainable_params",),
    "memory": ("peak_memory_bytes",),
    "stored_data": ("stored_samples",),
    "optimization_steps": ("epochs", "iterations"),
    "task_order": ("data_seed",),
    "data_per_task": ("val_fraction",),
}
"""Outer-level measures and the trials.parquet columns that report them (any one holding a value
for the method marks it). The per-task metric is tasks.parquet itself; MAC operations,
communication, openness and generated data are never measured by clsweep."""


def compass_entries(results: Results, sweep: str) -> list[dict[str, Any]]:
    """One compass entry per method of ``sweep``, in the report's method order."""
    trials = results.trials[results.trials["sweep"] == sweep]
    tasks = results.tasks[results.tasks["sweep"] == sweep]
    entries = []
    for k, method in enumerate(method_order(trials["method"].unique())):
        mine = trials[trials["method"] == method]
        entries.append(
            {
                "color": COLORS[k % len(COLORS)],
                "label": f"{method} (clsweep sweep {sweep})",
                "inner_level": inner_level(method, mine),
                "outer_level": outer_level(mine, tasks),
            }
        )
    return entries


def declared(trials: pd.DataFrame) -> dict[str, Any]:
    """The hyperparameters the method declares (the non-null ``hp_`` columns of its rows), with
    the values of its first completed trial (else its first)."""
    done = trials[trials["status"] == "completed"]
    row = (done if len(done) else trials).iloc[0]
    return {
        column.removeprefix("hp_"): row[column]
        for column in trials.columns
        if column.startswith("hp_") and trials[column].notna().any()
    }


def inner_level(method: str, trials: pd.DataFrame) -> dict[str, int]:
    """The set-up of ``method`` as its declarations and the cells it ran show it."""
    hp = declared(trials)
    level = dict.fromkeys(INNER_LEVEL, NOT_APPLICABLE)
    level["multiple_models"] = MULTIPLE_MODELS.get(method, NOT_APPLICABLE)
    streams = set(trials["stream"].dropna()) if "stream" in trials else set()
    if streams - {"none"}:  # task-free: updated as the stream arrives, no boundaries told
        level["online"] = UNSUPERVISED
    if set(trials["scenario"]) - {"task"}:  # predicts without the task label (domain, class)
        level["task_agnostic"] = UNSUPERVISED
    if int(hp.get("budget") or 0) > 0:
        by_label = hp.get("selection") == "herding" or "budget_per" not in hp  # class means, FROMP
        level["episodic_memory"] = SUPERVISED if by_label else UNSUPERVISED
    if "z_dim" in hp:  # a VAE: of p(x | y) if conditional or one per class, else of p(x)
        conditional = bool(hp.get("conditional")) or "likelihood" in hp
        level["generative"] = SUPERVISED if conditional else UNSUPERVISED
    return level


def outer_level(trials: pd.DataFrame, tasks: pd.DataFrame) -> dict[str, bool]:
    """The measures the sweep reports for these trials."""
    level = dict.fromkeys(OUTER_LEVEL, False)
    for measure, columns in MEASURED.items():
        level[measure] = any(c in trials and trials[c].notna().any() for c in columns)
    level["per_task_metric"] = bool(tasks["trial_id"].isin(trials["trial_id"]).any())
    return level


def problems(document: Any) -> list[str]:
    """What in ``document`` departs from the compass README's documented fields (empty: none)."""
    if not isinstance(document, dict) or set(document) != {"entries"}:
        return ["the document must be an object with the one key 'entries'"]
    if not isinstance(document["entries"], list):
        return ["'entries' must be a list"]
    found = []
    for k, entry in enumerate(document["entries"]):
        where = f"entries[{k}]"
        if not isinstance(entry, dict):
            found.append(f"{where} is not an object")
            continue
        keys = {"color", "label", "inner_level", "outer_level"}
        if set(entry) != keys:
            found.append(f"{where} has keys {sorted(entry)}, expected {sorted(keys)}")
            continue
        if entry["color"] not in COLORS:
            found.append(f"{where}.color {entry['color']!r} is not one of {COLORS}")
        if not isinstance(entry["label"], str) or not entry["label"]:
            found.append(f"{where}.label must be a non-empty string")
        for name, keys, ok in (
            ("inner_level", INNER_LEVEL, lambda v: type(v) is int and v in (0, 1, 2)),
            ("outer_level", OUTER_LEVEL, lambda v: type(v) is bool),
        ):
            level = entry[name]
            if not isinstance(level, dict) or set(level) != set(keys):
                found.append(f"{where}.{name} must have exactly the keys {', '.join(keys)}")
                continue
            found += [f"{where}.{name}.{key} = {v!r}" for key, v in level.items() if not ok(v)]
    return found


def write_compass(results: Results, out: str | Path) -> list[Path]:
    """``<out>/compass/<sweep>.json`` (every method, the file ``create_compass.py --data``
    reads) and ``<out>/compass/<sweep>/<method>.json`` (one entry each, as the compass
    repository keeps methods); return the paths."""
    folder = Path(out) / "compass"
    written = []
    for sweep in sorted(results.sweeps):
        entries = compass_entries(results, sweep)
        for document, path in [
            ({"entries": entries}, folder / f"{sweep}.json"),
            *(
                ({"entries": [entry]}, folder / sweep / f"{entry['label'].split(' ')[0]}.json")
                for entry in entries
            ),
        ]:
            found = problems(document)
            if found:  # a bug here, not bad input: the entries are built from fixed keys
                raise AssertionError(f"compass entry departs from the format: {found}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(document, indent=2) + "\n")
            written.append(path)
    return written
