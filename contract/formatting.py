"""How clsweep writes results for people: percent, ± SEM, n; parameter values exactly.

One format for every place a number reaches a reader (the sweep's console summary, the report,
its tables), so that the same result never looks different in two places. Files for machines
keep full precision; this module is only for text. It imports numpy alone, so the sweep and the
analysis (which never imports torch or Ray) can both use it.
"""

from __future__ import annotations

import math

import numpy as np

DASH = "–"
"""What a missing number reads as."""
SIGNIFICANT_EXACT_RANGE = (1e-3, 1e4)
"""Parameter values inside this range are written positionally, outside it in scientific form."""


def sem(values: object) -> float:
    """Standard error of the mean: sample std (ddof=1) / sqrt(n); NaN for fewer than two values.

    The ± of the three-scenario literature (van de Ven et al. 2022; docs/references.md,
    The three-scenario protocol).
    """
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) < 2:
        return math.nan
    return float(np.std(values, ddof=1) / math.sqrt(len(values)))


def format_pm(mean: float | None, sem_value: float | None = math.nan, n: int | None = None) -> str:
    """A fraction as '72.3 ± 1.2 (n=3)' in percent; no ± without an SEM; '–' without a mean."""
    if mean is None or math.isnan(mean):
        return DASH
    text = f"{100 * mean:.1f}"
    if sem_value is not None and not math.isnan(sem_value):
        text += f" ± {100 * sem_value:.1f}"
    return text if n is None else f"{text} (n={n})"


def format_param(value: object) -> str:
    """A hyperparameter value exactly: the shortest text that reads back as the same float.

    ``50.98612345678901``, ``5.923816857481925e+6``, ``0.001``, ``true``; a reader can re-type it
    and re-run the configuration (a rounded 51 is another configuration).
    """
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if number == 0:
            return "0"
        if math.isnan(number) or math.isinf(number):
            return str(number)
        low, high = SIGNIFICANT_EXACT_RANGE
        if low <= abs(number) < high:
            return np.format_float_positional(number, unique=True, trim="-")
        return np.format_float_scientific(number, unique=True, trim="-", exp_digits=1)
    return str(value)
