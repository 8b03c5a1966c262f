"""The cl_core trainer as a Ray Tune function trainable.

It trains the RunConfig the driver built and validated when it launched the trial
(:class:`sweep.trial_config.TrialRun`, sent in the Tune config). It reports once per task
learned, so a scheduler can stop a hopeless trial after a few tasks, with the run's checkpoint
(a trial whose node dies continues from it: :mod:`sweep.trial_checkpoint`). Every report carries
what the driver needs to write the trial's Parquet rows and to tell Optuna the truth (status,
metrics, the accuracy matrix so far, and a task-free stream run's accuracy-over-time curve so
far). A trial that raises or diverges ends with a report that says so; it never stops the sweep.
"""

from __future__ import annotations

import dataclasses
import json
import math
import socket
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import ray
import torch
from ray import tune

from cl_core.checkpoint import CHECKPOINT_FILE
from cl_core.config import RunConfig
from cl_core.data import Dataset, dataset_key, load_dataset
from cl_core.errors import ClsweepError
from cl_core.trainer import Run, RunResult, TaskReport
from cl_core.validation import validated
from contract import METRICS, SPLITS
from contract.schema import COMPLETED, ERROR, PER_TASK_COLUMN
from sweep.console import save_traceback
from sweep.cost import CostMeter
from sweep.curves import CURVE_KEY, encode_curve
from sweep.trial_checkpoint import TrialCheckpoint
from sweep.trial_config import launched

# A trainer in place of cl_core's Run: train_fn(cfg, dataset=..., checkpoint=path) yields one
# report per round and continues from the checkpoint file if it exists (or ignores it).
TrainFn = Callable[..., Iterator[TaskReport]]

# Datasets this worker process has already taken out of the object store, by ObjectRef id: a
# reused worker (reuse_actors) deserializes each dataset once, not once per trial.
_DATASETS: dict[str, Dataset] = {}


def load_datasets(configs: list[RunConfig], data_root: str | None) -> dict[str, Dataset]:
    """Each dataset the sweep needs, loaded once in the driver (before Ray starts, so that a
    missing dataset is a one-line usage error); the runner puts them in the object store."""
    out: dict[str, Dataset] = {}
    for cfg in configs:
        key = dataset_key(cfg)
        if key not in out:
            out[key] = load_dataset(dataclasses.replace(cfg, data_root=data_root))
    return out


def _shared_dataset(ref: ray.ObjectRef) -> Dataset:
    key = ref.hex()
    if key not in _DATASETS:
        _DATASETS[key] = ray.get(ref)
    return _DATASETS[key]


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def run_trial(
    config: dict[str, Any],
    datasets: dict[str, ray.ObjectRef],
    train_fn: TrainFn | None = None,
) -> None:
    """One trial: the RunConfig in its Tune ``config`` (``train_fn``: tests swap the trainer).

    Every report carries the run's checkpoint (a ``train_fn`` gets the file's path as
    ``checkpoint``; per-task selection's writes one); a restarted trial continues from it and
    reports only the tasks after it (:mod:`sweep.trial_checkpoint`)."""
    torch.set_num_threads(1)
    cfg, problem = launched(config)
    tracker = _Tracker(cfg)
    with TrialCheckpoint() as checkpoint:
        checkpoint.resume(tracker)
        try:
            if problem is not None:  # the driver found it invalid: fail as the trainer would
                raise ClsweepError(problem)
            dataset = _shared_dataset(datasets[dataset_key(cfg)])
            tracker.cost.watch(cfg, dataset)
            path = checkpoint.dir / CHECKPOINT_FILE
            if train_fn is not None:
                rounds: Iterator[TaskReport] = train_fn(cfg, dataset=dataset, checkpoint=path)
            else:
                rounds = (r[0] for r in Run([validated(cfg)], dataset, checkpoint=path))
            for n, report in enumerate(rounds, start=1):
                tracker.reports.append(report)
                if n <= checkpoint.rounds:
                    continue  # replayed from the checkpoint: reported before the restart
                if report.tasks_learned > 0 or report.status != "ok":
                    checkpoint.report(tracker.metrics(), n, tracker)
        except Exception as exc:  # a failure of the run is the trial's result, not the sweep's
            save_traceback(exc)
            tune.report(tracker.metrics(error=exc))


class _Tracker:
    """Turns the reports seen so far into one flat, JSON-safe metrics dict for Tune."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.reports: list[TaskReport] = []
        self.started_at = now_iso()
        self.start = time.perf_counter()
        self.cost = CostMeter()  # a population member's is its share (sweep/cost.py)
        # Outside Ray (unit use): the host alone. (get_runtime_context would start a Ray.)
        node = ray.get_runtime_context().get_node_id()[:12] if ray.is_initialized() else ""
        self.node = f"{socket.gethostname()}/{node}" if node else socket.gethostname()

    def metrics(self, error: BaseException | None = None) -> dict[str, Any]:
        ok = [r for r in self.reports if r.status == "ok"]
        last = self.reports[-1] if self.reports else None
        learned = ok[-1].tasks_learned if ok else 0
        if error is not None:
            status = ERROR
            message = "".join(traceback.format_exception_only(error)).strip().splitlines()[-1]
        elif last is not None and last.status != "ok":
            status, message = last.status, last.message
        else:
            status = COMPLETED if learned == self.cfg.learned_tasks else "running"
            message = None
        out: dict[str, Any] = {
            "tasks_learned": learned,
            "tasks_completed": learned,
            "status": status,
            "message": message,
            "device": self._device(),
            "node": self.node,
            "started_at": self.started_at,
            "ended_at": now_iso(),
            "run_wall_s": time.perf_counter() - self.start,
            **self.cost.metrics(),
        }
        out.update(self._summary(ok))
        choices = [getattr(r, "choice", None) for r in self.reports]
        if any(c is not None for c in choices):  # per-task selection (cl_core.per_task)
            out[PER_TASK_COLUMN] = json.dumps([dataclasses.asdict(c) for c in choices if c])
        curve = [p for r in self.reports for p in getattr(r, "curve", ())]
        if curve:  # task-free streams: accuracy over time (sweep/curves.py)
            out[CURVE_KEY] = encode_curve(curve)
        out["matrix"] = json.dumps(
            {
                "val": [r.val_acc for r in ok],
                "test": [r.test_acc for r in ok],
                "loss": [r.train_loss for r in ok],
                "seconds": [r.seconds for r in ok],
            }
        )
        return out

    def _summary(self, ok: list[TaskReport]) -> dict[str, float]:
        nan = float("nan")
        out = {m.column(split): nan for split in SPLITS for m in METRICS.values()}
        if len(ok) < 2:
            return out
        result = RunResult.from_reports(self.cfg, ok)
        for split in SPLITS:
            for name, value in result.metrics(split).items():
                out[f"{split}_{name}"] = float(value) if math.isfinite(value) else nan
        return out

    def _device(self) -> str:
        if self.cfg.device == "cpu" or not torch.cuda.is_available():
            return "cpu"
        return f"cuda:{torch.cuda.current_device()}"
