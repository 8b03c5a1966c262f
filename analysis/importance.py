"""Hyperparameter importance from the trials table, through Optuna's importance evaluators.

The Optuna study of a sweep lives in ``study.db`` on the cluster, but a laptop with the Parquet
files has only trials.parquet. We rebuild an in-memory study from it (``optuna.trial.create_trial``
+ ``Study.add_trials``) so that the results do not depend on the database being copied. Optuna is
imported inside the function: loading, tables and the other plots work without it.
"""

from __future__ import annotations

import warnings
from typing import Any

import pandas as pd

from analysis.load import COMPLETED, STUDY, AnalysisError, Param, Results

EVALUATORS = ("fanova", "ped-anova", "mdi")
"""fANOVA (Hutter et al. 2014, random-forest variance decomposition), PED-ANOVA (Watanabe et al.
2023, Pearson divergence of top-quantile densities), MDI (mean decrease in impurity of a forest)."""
MIN_TRIALS = 3


def param_importances(
    results: Results, sweep: str, study: str | None = None, evaluator: str = "fanova"
) -> pd.Series:
    """Importance of each searched hyperparameter for the sweep's objective, summing to 1.

    Uses the completed search-phase trials of one study (``<method> on <cell>``: each is searched
    on its own, so pooling them would mix different objectives); ``study`` may be omitted when the
    sweep has one. Returns a Series indexed by parameter name, most important first, with the
    number of trials it rests on in ``.attrs["n_trials"]``.
    """
    import optuna

    if evaluator not in EVALUATORS:
        raise AnalysisError(f"unknown importance evaluator {evaluator!r}; use one of {EVALUATORS}")
    info = results.sweep(sweep)
    trials = results.trials
    trials = trials[(trials["sweep"] == info.name) & (trials["phase"] == "search")]
    studies = sorted(trials[STUDY].unique())
    if study is None and len(studies) > 1:
        raise AnalysisError(f"sweep {sweep} holds several studies; pass study=, one of {studies}")
    study = study or (studies[0] if studies else None)
    done = trials[(trials[STUDY] == study) & (trials["status"] == COMPLETED)]
    done = done.dropna(subset=["objective"])
    # the parameters searched in this study (one searched for other methods only is null here)
    params = [p for p in info.params if done[p.column].notna().any()] if len(done) else []
    if not info.params:
        raise AnalysisError(f"sweep {sweep} searched no hyperparameters; no importance to compute")
    if len(done) < MIN_TRIALS:
        raise AnalysisError(
            f"importance needs at least {MIN_TRIALS} completed search trials; sweep {sweep} "
            f"({study}) has {len(done)}"
        )
    metric, mode = info.objective
    distributions = {p.name: _distribution(p, done[p.column]) for p in params}
    frozen = [
        optuna.trial.create_trial(
            value=float(row["objective"]),
            params={p.name: _python(row[p.column], distributions[p.name]) for p in params},
            distributions=distributions,
        )
        for _, row in done.iterrows()
    ]
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" line per call
    try:
        rebuilt = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
        rebuilt.add_trials(frozen)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            values = optuna.importance.get_param_importances(
                rebuilt, evaluator=_evaluator(evaluator)
            )
    finally:
        optuna.logging.set_verbosity(verbosity)
    series = pd.Series(values, dtype=float, name=evaluator)
    series.index.name = "parameter"
    series = series.reindex([p.name for p in params], fill_value=0.0)
    series = series.sort_values(ascending=False)
    series.attrs["n_trials"] = len(done)  # importance from few trials is noise; say how few
    return series


def _evaluator(name: str) -> Any:
    """Seeded evaluators, so that a report is reproducible."""
    from optuna import importance

    if name == "fanova":
        return importance.FanovaImportanceEvaluator(seed=0)
    if name == "mdi":
        return importance.MeanDecreaseImpurityImportanceEvaluator(seed=0)
    return importance.PedAnovaImportanceEvaluator()


def _distribution(param: Param, values: pd.Series) -> Any:
    """The Optuna distribution of a searched parameter, widened to the values actually tried."""
    from optuna import distributions as d

    if param.is_categorical(values):
        tried = [v.item() if hasattr(v, "item") else v for v in values.dropna()]
        return d.CategoricalDistribution(list(dict.fromkeys([*param.choices, *tried])))
    low = min(v for v in (param.low, values.min()) if v is not None)
    high = max(v for v in (param.high, values.max()) if v is not None)
    if param.integer:
        return d.IntDistribution(int(low), int(high), log=param.log)
    return d.FloatDistribution(float(low), float(high), log=param.log)


def _python(value: Any, distribution: Any) -> Any:
    """numpy scalars -> the Python type the distribution holds (Optuna compares by equality)."""
    from optuna import distributions as d

    if isinstance(distribution, d.CategoricalDistribution):
        return value.item() if hasattr(value, "item") else value
    return int(value) if isinstance(distribution, d.IntDistribution) else float(value)
