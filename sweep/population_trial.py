"""A Tune trial that trains a population: several plans of one unit at once (cl_core.population).

After each task it reports every member still training in one Tune report: ``members`` holds, per
member trial id, the same metrics a per-trial run reports (:class:`sweep.trainable._Tracker`) plus
the population's id; the report carries the population's checkpoint (one file per group:
:mod:`sweep.trial_checkpoint`). Then it takes the members the driver stopped
(:mod:`sweep.stop_board`) and drops them before the next task. A member that diverges is reported
``diverged`` and leaves; the others go on unchanged. A failure of the whole population is reported
as an error of every member still training. Plans without a population form never come here (the
driver runs them per trial).
"""

from __future__ import annotations

import json
import math
from typing import Any

import ray
import torch
from ray import tune

from cl_core.data import dataset_key
from cl_core.population import train_population
from contract import METRICS, SPLITS
from sweep.console import save_traceback
from sweep.cost import PopulationMeter
from sweep.stop_board import take_stops
from sweep.trainable import TrainFn, _shared_dataset, _Tracker, run_trial
from sweep.trial_checkpoint import TrialCheckpoint
from sweep.trial_config import launched, population_members


def run_launch(
    config: dict[str, Any],
    datasets: dict[str, ray.ObjectRef],
    board: str,
    train_fn: TrainFn | None = None,
) -> None:
    """The sweep's trainable when populations are on: a population, or one plan per trial
    (``train_fn``: as :func:`sweep.trainable.run_trial`'s)."""
    if population_members(config) is None:
        run_trial(config, datasets, train_fn)
    else:
        run_population(config, datasets, board)


def run_population(config: dict[str, Any], datasets: dict[str, ray.ObjectRef], board: str) -> None:
    """The members of ``config`` trained together, each with the RunConfig the driver built for
    it; ``board``: the name of the run's stop board. Every report carries the population's
    checkpoint; a restarted population continues from it, reports only the tasks after it, and
    first drops the members the driver ended meanwhile (posted again on the board)."""
    torch.set_num_threads(1)
    population_id = config["population"]
    launches = population_members(config) or []
    ids = [launch["trial_id"] for launch in launches]
    cfgs = [launched(launch)[0] for launch in launches]  # valid: the driver runs others alone
    trackers = [_Tracker(cfg) for cfg in cfgs]
    meter = PopulationMeter(len(launches))
    for i, tracker in enumerate(trackers):
        tracker.cost = meter.member(i)
    population = None
    with TrialCheckpoint() as checkpoint:
        for tracker in trackers:
            checkpoint.resume(tracker)
        try:
            dataset = _shared_dataset(datasets[dataset_key(cfgs[0])])
            meter.watch(cfgs, dataset)
            population = train_population(cfgs, dataset, checkpoint_dir=checkpoint.dir)
            for n, reports in enumerate(population, start=1):
                meter.share(list(reports))
                members = {}
                for i, report in reports.items():
                    trackers[i].reports.append(report)
                    if report.tasks_learned > 0 or report.status != "ok":
                        members[ids[i]] = {**trackers[i].metrics(), "population": population_id}
                if n < checkpoint.rounds:
                    continue  # replayed from the checkpoint: reported before the restart
                if n > checkpoint.rounds:  # (at the last replayed round: only the stops)
                    if not members:
                        continue
                    report = population_report(population_id, members)
                    checkpoint.report(report, n, trackers[0])
                for trial_id in take_stops(board, population_id):
                    population.stop(ids.index(trial_id))
        except Exception as exc:  # a failure of the population is a result of its members
            save_traceback(exc)
            running = range(len(launches)) if population is None else population.running()
            members = {
                ids[i]: {**trackers[i].metrics(error=exc), "population": population_id}
                for i in running
            }
            if members:  # none left: every member ended before the failure
                tune.report(population_report(population_id, members))


def population_report(population_id: str, members: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One Tune report of a population: the members' metrics (``members``, JSON) and, for Tune's
    own displays and loggers, the members' mean of each metric."""
    out: dict[str, Any] = {"population": population_id, "members": json.dumps(members)}
    out["tasks_learned"] = max(int(m["tasks_learned"]) for m in members.values())
    out["node"] = next(iter(members.values())).get("node")  # where the population runs
    for metric in METRICS.values():
        for split in SPLITS:
            column = metric.column(split)
            values = [m.get(column) for m in members.values()]
            finite = [v for v in values if v is not None and math.isfinite(v)]
            out[column] = sum(finite) / len(finite) if finite else float("nan")
    return out


def report_members(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The members' metrics of a population's report (empty if it never reported)."""
    text = result.get("members")
    return json.loads(text) if text else {}
