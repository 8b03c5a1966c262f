"""The protocol of a sweep, as a reader of a paper needs it: what was fixed, what was searched and
how, with which seeds, code and packages, when.

It comes from sweep.json: its ``protocol`` record (every fixed setting as the trials ran with it,
the sampler and each study's seed, budget, early stopping, final phase) where the sweep wrote one;
for older sweeps without it, from the space file as given plus the settings trials.parquet
recorded for every trial. Each part is a small table of text, so the HTML and the PDF show the
same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from analysis.load import Param, Results, SweepInfo
from analysis.order import cell_sort_key, method_order, ordered_studies, scenario_label
from contract.formatting import format_param

OUTCOME_COLUMNS = {
    "schema_version", "sweep", "trial_id", "phase", "cell", "config_id", "final_rank", "method",
    "benchmark", "scenario", "n_tasks", "status", "message", "tasks_completed", "objective",
    "wall_time_s", "device", "node", "started_at", "ended_at", "study",
}  # fmt: skip
"""trials.parquet columns that are not configuration (identifiers, outcome, metrics aside)."""
METRIC_NAMES = ("avg_acc", "bwt", "fwt", "forgetting", "plasticity")
NOT_RECORDED = "not recorded in sweep.json"


@dataclass
class SweepProtocol:
    """The protocol of one sweep as tables of text (columns ``item``, ``value`` or wider)."""

    name: str
    record: pd.DataFrame
    """Where it came from: space file, command, dates, git commit, versions, devices, trials."""
    search: pd.DataFrame
    """How it searched: methods, cells, objective, sampler and seed, budget, early stopping,
    final phase, validation fraction, seeds, resources."""
    searched: pd.DataFrame
    """The searched space: parameter, distribution, range or choices, scale."""
    fixed: pd.DataFrame
    """Every fixed setting: (method,) setting, value, set by."""
    study_seeds: pd.DataFrame | None
    """The sampler seed of each study (method on cell), where sweep.json records them."""


def sweep_protocol(results: Results, name: str) -> SweepProtocol:
    """The protocol of sweep ``name`` of ``results``."""
    info = results.sweep(name)
    trials = results.trials[results.trials["sweep"] == info.name]
    recorded = info.meta.get("protocol") or {}
    return SweepProtocol(
        name=info.name,
        record=_items(_record(info, trials)),
        search=_items(_search(info, trials, recorded)),
        searched=_searched(info.params),
        fixed=_fixed(info, trials, recorded),
        study_seeds=_study_seeds(trials, recorded),
    )


END_OF_SEQUENCE_TEXT = (
    "end-of-sequence: searched on the validation data of every task at the end of the "
    "sequence; final phase on the same cell with fresh seeds"
)


END_OF_SEQUENCE = "end-of-sequence"


def protocol_name(info: SweepInfo) -> str:
    """The selection protocol sweep ``info`` ran (before it was recorded: end-of-sequence)."""
    selection = info.meta.get("selection") or {}
    return str(selection.get("protocol") or END_OF_SEQUENCE)


def selection_texts(info: SweepInfo) -> list[str]:
    """What the search of sweep ``info`` saw and what its final phase reports, one line per
    cell (sweep.json ``selection``; sweeps written before it had end-of-sequence)."""
    selection = info.meta.get("selection") or {}
    described = selection.get("described") or {}
    return list(dict.fromkeys(described.values())) or [END_OF_SEQUENCE_TEXT]


def selection_caption(results: Results) -> str:
    """One sentence for a table caption: the selection protocol of each sweep shown."""
    names = list(dict.fromkeys(results.trials["sweep"]))
    parts = []
    for name in names:
        texts = "; ".join(selection_texts(results.sweep(name)))
        parts.append(texts if len(names) == 1 else f"sweep {name}: {texts}")
    return "Selection protocol: " + " | ".join(parts) + "."


def _items(pairs: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(pairs, columns=["item", "value"])


def _record(info: SweepInfo, trials: pd.DataFrame) -> list[tuple[str, str]]:
    meta = info.meta
    versions = meta.get("versions") or {}
    resumed = meta.get("resumed") or []
    counts = trials.groupby(["phase", "status"]).size()
    trial_text = "; ".join(
        f"{phase}: " + ", ".join(f"{n} {status}" for status, n in counts[phase].items())
        for phase in ("search", "final")
        if phase in counts.index.get_level_values(0)
    )
    devices = sorted(trials["device"].dropna().astype(str).unique()) if "device" in trials else []
    return [
        ("sweep", info.name),
        ("folder", str(info.path)),
        ("space file", str(meta.get("space_file") or NOT_RECORDED)),
        ("command", str(meta.get("command") or NOT_RECORDED)),
        *((f"resumed ({k + 1})", f"{r.get('at', '')}: {r.get('command', '')}") for k, r in
          enumerate(resumed)),
        ("started", _date(meta.get("started_at"))),
        ("ended", _ended(meta.get("started_at"), meta.get("ended_at"))),
        ("git commit", str(meta.get("git_commit") or NOT_RECORDED)),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items()) or NOT_RECORDED),
        ("devices", ", ".join(devices) or "not recorded"),
        ("selection protocol", "; ".join(selection_texts(info))),
        ("trials", trial_text or "none"),
    ]  # fmt: skip


def _search(
    info: SweepInfo, trials: pd.DataFrame, recorded: dict[str, Any]
) -> list[tuple[str, str]]:
    space = info.meta.get("space") or {}
    objective = info.meta.get("objective") or {}
    metrics = objective.get("metrics") or [info.objective[0]]
    modes = objective.get("modes") or [info.objective[1]]
    cells = sorted(
        {(r.benchmark, r.scenario, int(r.n_tasks)) for r in trials.itertuples(index=False)},
        key=lambda c: cell_sort_key(*c),
    )
    search = trials[trials["phase"] == "search"]
    return [
        ("methods", ", ".join(method_order(trials["method"].unique()))),
        (
            f"cells ({len(cells)}), each searched on its own",
            "; ".join(f"{b}/{s}/{n} ({scenario_label(s)})" for b, s, n in cells),
        ),
        (
            "objective",
            ", ".join(
                f"{m} ({'maximised' if d == 'max' else 'minimised'})"
                for m, d in zip(metrics, modes, strict=False)
            )
            + "; on validation data",
        ),
        ("sampler", _sampler(space, recorded)),
        ("budget", _budget(space, recorded)),
        ("early stopping", _early_stopping(space, recorded, metrics[0])),
        ("final phase", _final(space, recorded)),
        ("validation fraction", _constant(search, "val_fraction", "of each task's training set")),
        ("seeds (search)", _search_seeds(search)),
        ("resources per trial", _resources(space, recorded)),
    ]


def _sampler(space: dict[str, Any], recorded: dict[str, Any]) -> str:
    sampler = recorded.get("sampler")
    if sampler:
        seed = sampler.get("seed")
        text = f"{sampler['name']}, seed {seed}" if seed is not None else f"{sampler['name']}, "
        if seed is None:
            return text + "unseeded (not reproducible)"
        derivation = sampler.get("study_seed_derivation")
        if derivation:
            text += f"; each study's sampler seed derived from it: {derivation}"
        return text
    given = space.get("sampler")
    if isinstance(given, dict):
        return f"{given.get('name', 'tpe')}, seed {given.get('seed', NOT_RECORDED)}"
    return f"{given or 'not set in the space'} (seed {NOT_RECORDED})"


def _budget(space: dict[str, Any], recorded: dict[str, Any]) -> str:
    budget = recorded.get("budget") or {}
    trials = budget.get("trials_per_cell", (space.get("budget") or {}).get("trials"))
    limit = budget.get("time_limit_s", (space.get("budget") or {}).get("time_limit_s"))
    text = f"{trials} search trials per study" if trials else f"trials per study {NOT_RECORDED}"
    return text + (f", at most {format_param(float(limit))} s per study" if limit else "")


def _early_stopping(space: dict[str, Any], recorded: dict[str, Any], metric: str) -> str:
    early = (
        recorded["early_stopping"] if "early_stopping" in recorded else space.get("early_stopping")
    )
    if not early:
        return "off: every search trial learns every task"
    return (
        f"{str(early.get('scheduler', 'asha')).upper()} on {metric} after each task: every trial "
        f"learns at least {early.get('grace_tasks', 1)} task(s), then the best "
        f"1/{format_param(float(early.get('reduction_factor', 2)))} go on at each rung; a stopped "
        "trial is told to Optuna as pruned and its value (an average over fewer tasks) is not "
        "compared with completed ones"
    )


def _final(space: dict[str, Any], recorded: dict[str, Any]) -> str:
    final = recorded.get("final") or space.get("final") or {}
    top_k = final.get("top_k", 0)
    if not top_k:
        return "off: the search trials themselves are reported (one seed each)"
    seeds = final.get("seeds")
    base = final.get("seed_base")
    seed_text = (
        f"seeds {', '.join(str(base + k) for k in range(seeds))} (data seed = train seed)"
        if seeds and base is not None
        else "fresh seeds"
    )
    return (
        f"the top {top_k} configuration(s) of each study re-run with {seeds or '?'} "
        f"{seed_text}; the best on mean validation is reported on test"
    )


def _resources(space: dict[str, Any], recorded: dict[str, Any]) -> str:
    resources = recorded.get("resources") or space.get("resources") or {}
    text = f"{resources.get('cpus', 1):g} CPU, {resources.get('gpus', 0):g} GPU"
    if resources.get("max_concurrent"):
        text += f", at most {resources['max_concurrent']} at once"
    return text


def _constant(trials: pd.DataFrame, column: str, unit: str = "") -> str:
    if column not in trials:
        return "not recorded"
    values = trials[column].dropna().unique()
    text = ", ".join(format_param(v) for v in values) or "not recorded"
    return f"{text} {unit}".strip()


def _search_seeds(search: pd.DataFrame) -> str:
    return (
        f"data seed {_constant(search, 'data_seed')} (scenario: permutations, class order, "
        f"validation split), train seed {_constant(search, 'train_seed')} (initialisation, "
        "batch order)"
    )


def _searched(params: list[Param]) -> pd.DataFrame:
    rows = []
    for p in params:
        if p.choices:
            values = "choices " + ", ".join(format_param(c) for c in p.choices)
            scale = "categorical"
        else:
            values = f"[{format_param(p.low)}, {format_param(p.high)}]"
            scale = "log" if p.log else "linear"
        rows.append((p.name, p.distribution, values, scale, p.column, ", ".join(p.methods)))
    columns = ["parameter", "distribution", "range", "scale", "column", "searched for"]
    frame = pd.DataFrame(rows, columns=columns)
    if len({p.methods for p in params}) < 2:  # every parameter searched for every method
        frame = frame.drop(columns="searched for")
    return frame


def _fixed(info: SweepInfo, trials: pd.DataFrame, recorded: dict[str, Any]) -> pd.DataFrame:
    """Every fixed setting: from the ``protocol`` record, else space file + trials.parquet."""
    rows = []
    if recorded.get("fixed"):
        for method, groups in recorded["fixed"].items():
            for group in ("train", "hyperparams"):
                for setting, entry in (groups.get(group) or {}).items():
                    kind = "hyperparameter" if group == "hyperparams" else "train"
                    rows.append((method, kind, setting, _text(entry["value"]), entry["set_by"]))
    else:
        rows = _fixed_from_files(info, trials)
    frame = pd.DataFrame(rows, columns=["method", "kind", "setting", "value", "set by"])
    if frame["method"].nunique() <= 1:
        frame = frame.drop(columns="method")
    return frame


def _fixed_from_files(info: SweepInfo, trials: pd.DataFrame) -> list[tuple]:
    space = info.meta.get("space") or {}
    searched = {p.column for p in info.params}
    search = trials[trials["phase"] == "search"]
    metrics = {f"{s}_{m}" for s in ("val", "test") for m in METRIC_NAMES}
    rows = []
    for method in method_order(search["method"].unique()):
        mine = search[search["method"] == method]
        given = {
            **{("train", k): v for k, v in (space.get("train") or {}).items()},
            **{("hyperparameter", k): v for k, v in (space.get("hyperparams") or {}).items()},
        }
        seen = set()
        for (kind, setting), value in given.items():
            rows.append((method, kind, setting, _text(value), "space"))
            seen.add(setting)
        for column in mine.columns:
            if column in OUTCOME_COLUMNS or column in metrics or column in searched:
                continue
            setting = column.removeprefix("hp_")
            values = mine[column].dropna().unique()
            if setting in seen or len(values) != 1:
                continue
            kind = "hyperparameter" if column.startswith("hp_") else "train"
            rows.append((method, kind, setting, _text(values[0]), "trials.parquet"))
    return rows


def _study_seeds(trials: pd.DataFrame, recorded: dict[str, Any]) -> pd.DataFrame | None:
    seeds = (recorded.get("sampler") or {}).get("study_seeds")
    if not seeds:
        return None
    order = [s for s in ordered_studies(trials) if s in seeds]
    order += [s for s in seeds if s not in order]
    return pd.DataFrame(
        [(study, _text(seeds[study])) for study in order], columns=["study", "sampler seed"]
    )


def _text(value: Any) -> str:
    """A setting's value as a reader would re-type it."""
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return ",".join(_text(v) for v in value)
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    return format_param(value)


def _date(text: str | None) -> str:
    parsed = _parse(text)
    return parsed.strftime("%Y-%m-%d %H:%M:%S UTC") if parsed else str(text or NOT_RECORDED)


def _ended(started: str | None, ended: str | None) -> str:
    if not ended:
        return "not recorded (still running, or interrupted)"
    begin, end = _parse(started), _parse(ended)
    if begin and end:
        return f"{_date(ended)} (after {_duration((end - begin).total_seconds())})"
    return _date(ended)


def _parse(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"
