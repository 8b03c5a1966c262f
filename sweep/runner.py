"""Runs a validated sweep on Ray Tune: one Tuner per scenario cell and phase, resumable.

Each cell is searched on its own (its own Optuna study in study.db and its own Tune experiment
under ``<out>/<name>/ray/``); then the final phase re-runs each cell's top-k configs with fresh
seeds. ``resume`` restores every experiment Tune can restore (finished ones return at once) and
starts the rest, so killing the driver at any point and re-running with ``--resume`` continues.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from cl_core.config import RunConfig
from cl_core.errors import ClsweepError
from sweep import searcher as searchers
from sweep.final_study import FinalStudyCallback
from sweep.interrupt import sigint_received, watching_sigint
from sweep.results import ResultsCallback, ResultsStore, record_cut_trials, write_sweep_json
from sweep.space import Cell, SweepSpec
from sweep.trainable import TrainFn, load_datasets, now_iso, run_trial
from sweep.trial_config import final_point, param_space

# Tune checkpoints its experiment state every 10 s or more by default; a driver killed in that
# window would re-run trials on resume. Every 2 s costs little for sweeps of this size.
CHECKPOINT_PERIOD_S = "2"


class SweepInterrupted(Exception):
    """The driver was interrupted (Ctrl-C); the sweep can be resumed."""


@dataclass
class Options:
    """How to run a spec: where to write, which Ray, which data."""

    out: Path = Path("results")
    address: str | None = None
    data_root: str | None = None
    resume: bool = False
    command: str = field(
        default_factory=lambda: shlex.join(["python", "-m", "sweep", *sys.argv[1:]])
    )
    num_cpus: int | None = None  # local Ray only; None = the machine's
    train_fn: TrainFn | None = None  # tests and benchmarks swap the cl_core trainer


def sweep_folder(spec: SweepSpec, options: Options) -> Path:
    return Path(options.out).resolve() / spec.name


def check_folder(spec: SweepSpec, options: Options) -> Path:
    """Refuse to overwrite a sweep without --resume, and to resume one that does not exist."""
    folder = sweep_folder(spec, options)
    exists = (folder / "sweep.json").exists()
    if exists and not options.resume:
        raise ClsweepError(
            f"{folder} already holds a sweep; add --resume to continue it or "
            "--name NEW to start another"
        )
    if options.resume and not exists:
        raise ClsweepError(f"--resume: no sweep in {folder}; run without --resume to start it")
    return folder


def init_ray(options: Options) -> bool:
    """Connect to ``--address`` or start a local Ray on loopback; False if one was running."""
    if ray.is_initialized():
        return False
    if options.address:
        ray.init(address=options.address, include_dashboard=False, log_to_driver=False)
        return True
    # Loopback is chosen by the environment, read when Ray is imported (see stay_on_loopback).
    ray.init(num_cpus=options.num_cpus, include_dashboard=False, log_to_driver=False)
    return True


def run_sweep(spec: SweepSpec, options: Options) -> Path:
    """Run (or resume) every phase of every cell; return the sweep folder."""
    folder = check_folder(spec, options)
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", CHECKPOINT_PERIOD_S)
    # Progress is one line per ended trial (ResultsCallback); Tune's own tables and Optuna's
    # per-study log lines would bury it.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data_root = options.data_root or os.environ.get("CLSWEEP_DATA")
    data_root = str(Path(data_root).expanduser().resolve()) if data_root else None
    configs = [RunConfig.from_dict(spec.base_config(m, c)) for m, c in _units(spec)]
    loaded = load_datasets(configs, data_root)
    started = now_iso()
    write_sweep_json(spec, folder, options.command, started, None)
    owns_ray = init_ray(options)
    try:
        # Once per dataset into the object store: every node reads it from there.
        datasets = {key: ray.put(dataset) for key, dataset in loaded.items()}
        del loaded
        for method, cell in _units(spec):
            _run_phase(spec, options, folder, method, cell, "search", datasets)
            if spec.final_top_k:
                _run_phase(spec, options, folder, method, cell, "final", datasets)
    finally:
        if owns_ray:
            ray.shutdown()
    write_sweep_json(spec, folder, options.command, started, now_iso())
    return folder


def _units(spec: SweepSpec) -> list[tuple[str, Cell]]:
    """(method, cell) pairs, each searched on its own."""
    return [(method, cell) for method in spec.methods for cell in spec.cells]


def _run_phase(
    spec: SweepSpec,
    options: Options,
    folder: Path,
    method: str,
    cell: Cell,
    phase: str,
    datasets: dict[str, Any],
) -> None:
    store = ResultsStore(spec, folder)
    name = f"{method}-{cell.slug}-{phase}"
    label = f"{method} {cell.key} {phase}"
    storage = folder / "ray"
    path = storage / name
    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial,
            datasets=datasets,
            recorded=store.recorded_reports(),
            train_fn=options.train_fn,
        ),
        {"cpu": spec.cpus, "gpu": spec.gpus},
    )
    total = spec.trials if phase == "search" else len(_final_points(spec, method, cell, store))
    if tune.Tuner.can_restore(path):
        print(f"== {label}: resuming {path}", flush=True)
        # Errored trials run again unless recorded: a Ctrl-C also kills the running trials,
        # which then count as errored; a recorded one re-reports its row instead (run_trial).
        tuner = tune.Tuner.restore(
            str(path), trainable=trainable, resume_unfinished=True, resume_errored=True
        )
    else:
        space, tune_config = _phase_setup(spec, method, cell, phase, folder, store)
        if total == 0:
            print(f"== {label}: no completed search trial to re-run", flush=True)
            return
        print(f"== {label}: {total} trials", flush=True)
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune_config,
            run_config=tune.RunConfig(
                name=name,
                storage_path=str(storage),
                verbose=0,
                callbacks=_callbacks(spec, method, cell, phase, folder, total, label),
                failure_config=tune.FailureConfig(max_failures=0),
            ),
        )
    start = time.monotonic()
    with watching_sigint():
        grid = tuner.fit()
        interrupted = sigint_received()
    out_of_time = (
        phase == "search"
        and spec.time_limit_s is not None
        and (time.monotonic() - start >= spec.time_limit_s)
    )
    if out_of_time:
        record_cut_trials(spec, folder, grid)
    elif interrupted or grid.num_terminated + grid.num_errors < total:
        # Tune turns SIGINT into a graceful stop that returns: fewer ended trials than planned.
        raise SweepInterrupted(
            f"interrupted during {label}; finished trials are saved in "
            f"{folder}; run the same command with --resume to continue"
        )
    if phase == "search":
        reports = ResultsStore(spec, folder).recorded_reports()
        searchers.close_study(spec, method, cell.key, str(folder / "study.db"), reports)


def _callbacks(
    spec: SweepSpec, method: str, cell: Cell, phase: str, folder: Path, total: int, label: str
) -> list[tune.Callback]:
    """Parquet rows for every phase; the final phase also records its runs in study.db."""
    callbacks: list[tune.Callback] = [ResultsCallback(spec, str(folder), total, label)]
    if phase == "final":
        callbacks.append(FinalStudyCallback(spec, method, cell.key, str(folder / "study.db")))
    return callbacks


def _phase_setup(
    spec: SweepSpec, method: str, cell: Cell, phase: str, folder: Path, store: ResultsStore
) -> tuple[dict[str, Any], tune.TuneConfig]:
    space = param_space(spec, method, cell, phase)
    common: dict[str, Any] = {
        "reuse_actors": True,
        "max_concurrent_trials": spec.max_concurrent,
        "trial_dirname_creator": _trial_dirname,
    }
    if phase == "final":
        points = _final_points(spec, method, cell, store)
        space["final"] = tune.grid_search(points)
        return space, tune.TuneConfig(num_samples=1, **common)
    scheduler = FIFOScheduler()
    if spec.early_stopping:
        scheduler = ASHAScheduler(
            time_attr="tasks_learned",
            metric=spec.metrics[0],
            mode=spec.modes[0],
            max_t=cell.n_tasks,
            grace_period=spec.early_stopping["grace_tasks"],
            reduction_factor=spec.early_stopping["reduction_factor"],
        )
    config = tune.TuneConfig(
        search_alg=searchers.make_searcher(spec, method, cell.key, str(folder / "study.db")),
        scheduler=scheduler,
        num_samples=spec.trials,
        time_budget_s=spec.time_limit_s,
        **common,
    )
    return space, config


def _final_points(
    spec: SweepSpec, method: str, cell: Cell, store: ResultsStore
) -> list[dict[str, Any]]:
    """The top-k distinct completed search configs, each with ``final_seeds`` fresh seeds."""
    rows = [
        r
        for r in store.trials
        if r["method"] == method
        and r["cell"] == cell.key
        and r["phase"] == "search"
        and r["status"] == "completed"
        and r["objective"] is not None
    ]
    rows.sort(key=lambda r: r["objective"], reverse=spec.modes[0] == "max")
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["config_id"] not in best and len(best) < spec.final_top_k:
            best[row["config_id"]] = {p.name: row[p.column] for p in spec.params_for(method)}
    return [
        final_point(values, cid, rank, spec.final_seed_base + seed)
        for rank, (cid, values) in enumerate(best.items(), start=1)
        for seed in range(spec.final_seeds)
    ]


def _trial_dirname(trial: Any) -> str:
    """Short trial folder names (Tune's default embeds the whole config)."""
    return trial.trial_id
