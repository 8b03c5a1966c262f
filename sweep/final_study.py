"""The final phase's Optuna study: each re-run recorded in study.db next to the search study.

The final phase runs fixed configs (no sampler), so nothing asks Optuna for them; this callback
adds each ended trial to ``<sweep>:<method>:<cell>:final`` with its config, seed and outcome, so
optuna-dashboard shows the seed spread of the best configs beside the search.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState
from ray import tune

from sweep.searcher import distributions, storage_url, study_name, trial_outcome
from sweep.space import SweepSpec


class FinalStudyCallback(tune.Callback):
    """Adds each ended final-phase trial to its study once (also across resumes)."""

    def __init__(self, spec: SweepSpec, method: str, cell_key: str, storage: str) -> None:
        self.spec, self.method, self.cell_key, self.storage = spec, method, cell_key, storage
        self.study: optuna.Study | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "study": None}

    def setup(self, **info: Any) -> None:
        many = len(self.spec.metrics) > 1
        directions = ["maximize" if m == "max" else "minimize" for m in self.spec.modes]
        self.study = optuna.create_study(
            storage=storage_url(self.storage),
            study_name=study_name(self.spec, self.method, self.cell_key, "final"),
            load_if_exists=True,
            **({"directions": directions} if many else {"direction": directions[0]}),
        )

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._add(trial, error=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._add(trial, error=True)

    def _add(self, trial: Any, error: bool) -> None:
        if self.study is None:
            self.setup()
        done = {t.user_attrs.get("trial_id") for t in self.study.get_trials(deepcopy=False)}
        if trial.trial_id in done:
            return
        final = trial.config["final"]
        state, values = trial_outcome(trial.last_result, error, list(self.spec.metrics))
        seeds = optuna.distributions.IntDistribution(
            self.spec.final_seed_base, self.spec.final_seed_base + self.spec.final_seeds - 1
        )
        self.study.add_trial(
            optuna.trial.create_trial(
                state=state if state != TrialState.PRUNED else TrialState.FAIL,
                values=values,
                params={**final["values"], "seed": final["seed"]},
                distributions={**distributions(self.spec.params_for(self.method)), "seed": seeds},
                user_attrs={
                    "trial_id": trial.trial_id,
                    "config_id": final["config_id"],
                    "final_rank": final["rank"],
                },
            )
        )
