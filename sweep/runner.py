"""Runs a validated sweep: every cell at once in one Ray Tune run; resumable; one sweep per folder.

Before Ray starts: the folder is locked (:mod:`sweep.lock`; every write checks the claim first),
a resume is checked (the space must match, the results must be readable, nothing is overwritten:
:mod:`sweep.resume`), the datasets are loaded and the trial's resources checked against the
machine. Then one Tune run executes
every unit (a method in a cell) concurrently (:mod:`sweep.units`, :mod:`sweep.tune_glue`); each
trial lands in Parquet as it ends. At the end the Parquet parts are compacted and sweep.json gets
its end time.

Resuming never restores Tune's experiment state: the sweep's state is what the folder holds
(Parquet rows and the Optuna studies, read by :mod:`sweep.resume`), so a fresh Tune run continues
it, in a new ``ray/run-*`` folder.
Tune's experiment checkpoint, whose cost grows with every trial run, is therefore written only at
the end of a run.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from cl_core.config import RunConfig
from cl_core.errors import ClsweepError
from contract import tables
from sweep import resources
from sweep.console import RAY_LOG, FailureLines, ray_log_to
from sweep.lock import SweepLock
from sweep.results import write_sweep_json
from sweep.resume import check_folder, open_store
from sweep.space import SweepSpec
from sweep.trainable import TrainFn, load_datasets, now_iso
from sweep.units import SweepState

# Tune's experiment state is not used to resume (see the module docstring); writing it every few
# seconds costs time proportional to the trials run so far.
CHECKPOINT_PERIOD_S = str(10**9)
WAIT_FOR_RESOURCES_S = 300.0


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
    num_cpus: int | None = None  # local Ray only; None = the CPUs this process may use
    train_fn: TrainFn | None = None  # tests and benchmarks swap the cl_core trainer
    wait_for_resources_s: float = WAIT_FOR_RESOURCES_S
    quiet: bool = False  # no status block (benchmarks)
    study_storage: str = "auto"  # a new sweep's Optuna storage (sweep.study_storage)


def sweep_folder(spec: SweepSpec, options: Options) -> Path:
    return Path(options.out).expanduser().resolve() / spec.name


def make_folder(folder: Path) -> bool:
    """Create the sweep folder; True if it was created now. Unwritable: a usage error."""
    if folder.exists() and not folder.is_dir():
        raise ClsweepError(f"{folder} is a file, not a folder; choose another --out or --name")
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise ClsweepError(
            f"cannot write to {folder} ({exc.strerror or exc}); choose a writable --out"
        ) from None
    return created


def run_sweep(spec: SweepSpec, options: Options) -> Path:
    """Run (or resume) every unit of the sweep; return the sweep folder."""
    folder = sweep_folder(spec, options)
    created = make_folder(folder)
    lock = SweepLock(folder)
    try:
        lock.acquire()
    except ClsweepError:
        if created:
            _remove_if_empty(folder)
        raise
    started = False
    owns_ray = False
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our status block says it all
    with ray_log_to(folder / RAY_LOG):  # Ray's own messages: a file, not the console
        try:
            check_folder(spec, folder, options.resume)
            tables.clean_tmp(folder)
            store = open_store(spec, folder)
            if not options.quiet:
                store.listeners.append(FailureLines(folder))
            datasets = _load_datasets(spec, options)
            if not options.address:
                capacity = resources.Capacity(
                    options.num_cpus or resources.local_cpus(), resources.local_gpus()
                )
                resources.check_local(spec, capacity)
            else:  # only a connected cluster says what it offers (it may still grow)
                owns_ray = _init_ray(options, None)
                import ray

                capacity = resources.wait_for_cluster(
                    spec, ray.cluster_resources, options.wait_for_resources_s
                )
            store.before_write = lock.check  # a sweep that lost its folder stops writing
            state = SweepState(
                spec, folder, store, capacity.trials_at_once(spec), backend=options.study_storage
            )
            start_time = now_iso()
            lock.check()
            write_sweep_json(spec, folder, options.command, start_time, None)
            started = True
            try:
                _run_on_ray(spec, options, folder, state, datasets, capacity)
            finally:
                state.close()
                store.compact()
            lock.check()
            write_sweep_json(spec, folder, options.command, start_time, now_iso())
            _remove_if_empty(folder / tables.TMP_DIR)
        finally:
            if owns_ray:
                shutdown_ray()
            lock.release()
            if created and not started:
                _remove_if_empty(folder)
    return folder


def _remove_if_empty(folder: Path) -> None:
    """Remove ``folder`` (and an empty .tmp inside) if nothing else is in it."""
    tmp = folder / tables.TMP_DIR
    if tmp.is_dir() and not any(tmp.iterdir()):
        tmp.rmdir()
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def _load_datasets(spec: SweepSpec, options: Options) -> dict[str, Any]:
    """Each dataset once, in the driver, before Ray (a missing one is a one-line error)."""
    data_root = options.data_root or os.environ.get("CLSWEEP_DATA")
    data_root = str(Path(data_root).expanduser().resolve()) if data_root else None
    configs = [
        RunConfig.from_dict(spec.base_config(m, c, phase))
        for m, c in spec.units
        for phase in ("search", "final")
    ]
    return load_datasets(configs, data_root)


def _run_on_ray(
    spec: SweepSpec,
    options: Options,
    folder: Path,
    state: SweepState,
    loaded: dict[str, Any],
    capacity: resources.Capacity | None,
) -> None:
    """Start a local Ray (or use the one connected) and run the sweep."""
    os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = CHECKPOINT_PERIOD_S
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"  # loggers come from the space
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # A failed trial is one line of the Recorder's (sweep.failures), not Ray's stack trace.
    os.environ["TUNE_PRINT_ALL_TRIAL_ERRORS"] = "0"
    if state.finished():
        print(f"{spec.name}: every trial is recorded; nothing to run", flush=True)
        return
    import ray

    owns_ray = _init_ray(options, capacity)
    try:
        _fit(spec, options, folder, state, {k: ray.put(v) for k, v in loaded.items()})
    finally:
        if owns_ray:
            shutdown_ray()


def _init_ray(options: Options, capacity: resources.Capacity | None) -> bool:
    """Connect to ``--address`` or start a local Ray on loopback; False if one was running."""
    import ray

    if ray.is_initialized():
        return False
    if options.address:
        ray.init(address=options.address, include_dashboard=False, log_to_driver=False)
        return True
    start_watchdog()
    # Loopback is chosen by the environment, read when Ray is imported (see stay_on_loopback).
    # address="local": always a new instance, never another user's Ray found on this machine.
    ray.init(
        address="local",
        num_cpus=int(capacity.cpus) if capacity else options.num_cpus,
        include_dashboard=False,
        log_to_driver=False,
    )
    return True


def shutdown_ray() -> None:
    """``ray.shutdown()``, without its wait for the autoscaler monitor of a local instance.

    Ray's shutdown asks each of its processes to exit and waits up to a second for each; the
    monitor (idle here: a local instance has no autoscaling) takes all of that second, a
    measured 1.0 of the 1.4 s a shutdown takes on 2 cores. It holds nothing of the sweep's, so
    it is killed first. That needs Ray's private node handle (``ray._private.worker``): this is
    the one place the sweep uses it, and a Ray that moves it falls back to the plain shutdown.
    """
    import ray

    try:
        from ray._private import ray_constants, worker

        node = worker._global_node
        if node is not None and ray_constants.PROCESS_TYPE_MONITOR in node.all_processes:
            node._kill_process_type(
                ray_constants.PROCESS_TYPE_MONITOR,
                allow_graceful=False,
                check_alive=False,
                wait=True,
            )
    except (ImportError, AttributeError, TypeError, RuntimeError):
        pass  # another Ray version: its own shutdown does it all
    ray.shutdown()


_WATCHDOG: subprocess.Popen | None = None


def start_watchdog() -> None:
    """One watchdog per driver process (Linux): it ends the Ray processes this driver started
    if the driver dies without shutting Ray down (:mod:`sweep.watchdog`)."""
    global _WATCHDOG
    if _WATCHDOG is not None and _WATCHDOG.poll() is None:
        return
    if not Path("/proc/self/stat").exists():
        return
    _WATCHDOG = subprocess.Popen(
        [sys.executable, "-m", "sweep.watchdog", str(os.getpid())],
        cwd=str(Path(__file__).resolve().parent.parent),
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=True,
    )


def _fit(
    spec: SweepSpec, options: Options, folder: Path, state: SweepState, datasets: dict[str, Any]
) -> None:
    from ray import tune

    from sweep.interrupt import sigint_received, watching_sigint
    from sweep.loggers import logger_callbacks
    from sweep.trainable import run_trial
    from sweep.tune_glue import Recorder, UnitScheduler, UnitSearcher

    run = f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    board = None
    if spec.population > 1:
        from sweep.population_trial import run_launch
        from sweep.stop_board import StopBoard

        board = StopBoard(f"clsweep-stops-{spec.name}-{run}")
        if spec.early_stopping:
            board.start()
        trainable = tune.with_parameters(
            run_launch, datasets=datasets, board=board.name, train_fn=options.train_fn
        )
    else:
        train_fn = options.train_fn or spec.selection.train_fn()
        trainable = tune.with_parameters(run_trial, datasets=datasets, train_fn=train_fn)
    trainable = tune.with_resources(trainable, {"cpu": spec.cpus, "gpu": spec.gpus})
    tuner = tune.Tuner(
        trainable,
        param_space={},
        tune_config=tune.TuneConfig(
            search_alg=UnitSearcher(state),
            scheduler=UnitScheduler(state, board),
            num_samples=-1,
            reuse_actors=True,
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=run,
            storage_path=str(folder / "ray"),
            verbose=0,
            callbacks=[
                Recorder(state, board, quiet=options.quiet),
                *logger_callbacks(spec, folder),
            ],
            # A trial whose worker or node goes away restarts from its checkpoint (the
            # trainables' own failures are reports, never Tune failures). The Recorder keeps
            # only the latest checkpoint of a trial and removes it when the trial ends (Tune's
            # num_to_keep would write the experiment state after every checkpoint).
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        ),
    )
    # Tune lets a custom searcher have one pending trial at a time: trials would start one by one,
    # and a slow-starting worker would never get one. The state caps live trials itself.
    os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = str(max(state.capacity, 1))
    # Tune's result grid looks for per-trial result files that only its csv/json loggers write;
    # the sweep's results are in Parquet, so its "failed to fetch metrics" warning is noise.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    with watching_sigint():
        try:
            tuner.fit()
        finally:
            if board is not None:
                board.close()
        interrupted = sigint_received()
    if interrupted or not state.finished():
        raise SweepInterrupted(
            f"interrupted; finished trials are saved in {folder}; "
            "run the same command with --resume to continue"
        )


def _trial_dirname(trial: Any) -> str:
    """Trial folders named by the Parquet trial id (Tune's default embeds the whole config)."""
    return str(trial.config.get("trial_id", trial.trial_id))
