"""The three hooks by which one Ray Tune run drives every cell of a sweep (:mod:`sweep.units`).

- :class:`UnitSearcher` (a Tune ``Searcher``) hands Tune the next trial of whichever unit should
  run next (:meth:`SweepState.next_launch`: its Tune config carries the trial's RunConfig), or
  nothing while every slot is busy, or FINISHED.
- :class:`UnitScheduler` (a Tune ``FIFOScheduler``) stops a trial when its unit's ASHA rungs or
  time limit say so (:meth:`SweepState.decide`); each unit has its own rungs.
- :class:`Recorder` (a Tune ``Callback``) passes every report to :meth:`SweepState.on_report`
  (callbacks see every report, the one that stopped a trial included; Tune's searcher hook does
  not) and every ended trial to :meth:`SweepState.on_end`, and prints the status block.

Populations (``resources.population`` > 1): a Tune trial may train several plans; its config says
so (:func:`sweep.trial_config.population_config`). The scheduler hands each of its reports to
:meth:`SweepState.on_population_report` (members decided, reported to Optuna, ended ones recorded)
and posts the members to drop on the stop board (:mod:`sweep.stop_board`) before the trial goes
on; the Recorder ends the population's remaining members when its Tune trial ends.

Why one Tune run for all cells, not one per cell: cells then share the cluster as trials end
(no cell's tail leaves slots idle), there is one Ray set-up instead of one per cell and phase, and
a cell's final phase starts as soon as its own search ends. Tune pickles its searcher, scheduler
and callbacks into its experiment folder; the state is left out of those copies (resuming rebuilds
it from Parquet and the studies, not from Tune's experiment state). Why Ray's OptunaSearch and
ASHA scheduler are not used: docs/design.md, "The custom searcher" and "The ASHA rungs".
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections import deque
from typing import Any

from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from sweep.failures import node_gone
from sweep.interrupt import sigint_received
from sweep.population_trial import report_members
from sweep.status import StatusPrinter, progress, status_text
from sweep.trial_config import TrialPlan, population_config, population_members
from sweep.units import FINISHED, SweepState


def _launch_id(trial: Trial) -> str:
    """The driver's id of a Ray trial: its plan's trial id, or its population's id."""
    return trial.config.get("population") or trial.config["trial_id"]


def _failure(trial: Trial) -> tuple[Any, bool | None]:
    """What Tune saw fail (the exception, else its text) and whether the trial's node is gone."""
    error: Any = None
    with contextlib.suppress(Exception):  # unreadable error files: the text, or nothing
        error = trial.get_pickled_error()
    if error is None:
        with contextlib.suppress(Exception):
            error = trial.get_error()
    last = trial.last_result or {}
    node = last.get("node")
    return error, node_gone(node) if node else None


def remove_checkpoint(checkpoint: tune.Checkpoint | None) -> None:
    """Remove a trial's checkpoint that is of no further use: an older one, or the last one of
    an ended trial (a re-run by --resume starts over)."""
    if checkpoint is None:
        return
    with contextlib.suppress(Exception):  # already gone, or storage unreachable: nothing lost
        checkpoint.filesystem.delete_dir(checkpoint.path)


class _NotPickled:
    """Tune writes its searcher, scheduler and callbacks to tuner.pkl; the live state stays out."""

    state: SweepState | None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "state": None, "board": None}


class UnitSearcher(_NotPickled, Searcher):
    def __init__(self, state: SweepState) -> None:
        super().__init__(metric=state.spec.metrics[0], mode=state.spec.modes[0])
        self.state = state

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        runs = self.state.next_launch(trial_id)
        if runs == FINISHED:
            return Searcher.FINISHED
        if runs is None:
            return None
        if len(runs) == 1:
            return runs[0].to_config()
        return population_config(trial_id, runs)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        """Nothing: the Recorder records and tells Optuna (Parquet first, then Optuna)."""

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: the state is rebuilt from the sweep folder on resume."""

    def restore(self, checkpoint_path: str) -> None:
        """Nothing to restore (see save)."""


class UnitScheduler(_NotPickled, FIFOScheduler):
    def __init__(self, state: SweepState, board: Any = None) -> None:
        super().__init__()
        self.state = state
        self.board = board  # a StopBoard when populations are on
        self._supports_buffered_results = False  # every report decided on as it comes
        self._queue: deque[Trial] = deque()

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        self._queue.append(trial)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        if population_members(trial.config) is not None:
            return self._population_result(trial, result)
        plan = TrialPlan.from_config(trial.config)
        if self.state.decide(plan, result):
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def _population_result(self, trial: Trial, result: dict) -> str:
        """Decide, report and record each member; the stopped ones leave before the next task.

        The trial itself always continues: a population whose members all stopped or ended
        finishes by itself, so that Tune can reuse its worker (a stopped trial's is not)."""
        launch = trial.config["population"]
        stops = self.state.on_population_report(launch, report_members(result))
        if stops:
            self.board.post(launch, stops)  # there before the trial goes on
        return TrialScheduler.CONTINUE

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        """The oldest pending trial, without walking every trial of the run (Tune's FIFO does,
        which grows with the trials already run)."""
        while self._queue and self._queue[0].status != Trial.PENDING:
            self._queue.popleft()
        return self._queue[0] if self._queue else None

    def debug_string(self) -> str:
        return "clsweep: one ASHA per cell"


class Recorder(_NotPickled, tune.Callback):
    def __init__(self, state: SweepState, board: Any = None, quiet: bool = False) -> None:
        self.state = state
        self.board = board  # a StopBoard when populations are on
        self._checkpoints: dict[str, tune.Checkpoint] = {}  # Tune trial id -> latest checkpoint
        self.status = StatusPrinter(self._status, self._print if not quiet else lambda _: None)

    def _status(self) -> tuple[str, str]:
        state = self.state
        rows = progress(state)
        elapsed = time.monotonic() - state.started
        block = status_text(
            state.spec.name, state.spec.metrics[0], rows, elapsed, state.ended_this_run
        )
        key = repr([(r["phase"], r["done"], r["running"], r["best"]) for r in rows])
        return block, key

    @staticmethod
    def _print(text: str) -> None:
        print(text, file=sys.stdout, flush=True)

    def on_trial_result(self, iteration: int, trials: list, trial: Trial, result: dict, **info):
        if population_members(trial.config) is None:  # a population's: the scheduler's job
            self.state.on_report(TrialPlan.from_config(trial.config), result)

    def on_trial_complete(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
        self._end(trial, None)

    def _end(self, trial: Trial, error: str | None) -> None:
        last = dict(trial.last_result or {})
        if population_members(trial.config) is None:
            self.state.on_end(TrialPlan.from_config(trial.config), last, error)
        else:
            self.state.on_population_end(trial.config["population"], report_members(last), error)
        remove_checkpoint(self._checkpoints.pop(trial.trial_id, None))
        remove_checkpoint(trial.checkpoint)

    def on_checkpoint(
        self, iteration: int, trials: list, trial: Trial, checkpoint: tune.Checkpoint, **info: Any
    ) -> None:
        """A trial's newest checkpoint replaces its previous one (a restart needs only it)."""
        previous = self._checkpoints.get(trial.trial_id)
        self._checkpoints[trial.trial_id] = checkpoint
        if previous is not None and previous.path != checkpoint.path:
            remove_checkpoint(previous)

    def on_trial_error(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
        if sigint_received():  # killed by Ctrl-C, not failed: --resume runs it again
            return
        error, gone = _failure(trial)
        self._end(trial, self.state.failure_message(_launch_id(trial), error, gone))

    def on_trial_recover(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
        """Tune restarts the trial from its checkpoint (its worker or node went away): one
        console line; a population's members that ended meanwhile are posted on the stop board
        again, since the checkpoint it restarts from predates their stop."""
        if sigint_received():
            return
        launch = _launch_id(trial)
        self.state.on_restart(launch, *_failure(trial))
        members = population_members(trial.config)
        if members is not None and self.board is not None:
            ended = self.state.recorded_members(launch, [m["trial_id"] for m in members])
            if ended:
                self.board.post(launch, ended)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self.status.tick()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.status.tick(force=True)
