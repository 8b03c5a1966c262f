"""How clsweep writes results for people: percent to 0.1, ± SEM, n; parameters to 4 digits.

One format for every place a number reaches a reader (the sweep's console summary, the report,
its tables), so that the same result never looks different in two places. A number is shown at
the precision it deserves: an accuracy to 0.1 point (one sample of a 1,000-sample split), a
searched value to 4 significant digits (:func:`format_short`; 24.85, not 24.851390021858226).
Files for machines (Parquet, CSV, sweep.json, the protocol record) keep the exact value
(:func:`format_param`: the shortest text that reads back as the same float). It imports numpy
alone, so the sweep and the analysis (which never imports torch or Ray) can both use it.
"""

from __future__ import annotations

import math

import numpy as np

DASH = "–"
"""What a missing number reads as."""
SIGNIFICANT_EXACT_RANGE = (1e-3, 1e4)
"""Parameter values inside this range are written positionally, outside it in scientific form."""
SHOWN_DIGITS = 4
"""Significant digits of a searched value shown to a reader (:func:`format_short`)."""


def sem(values: object) -> float:
    """Standard error of the mean: sample std (ddof=1) / sqrt(n); NaN for fewer than two values.

    The ± of the three-scenario literature (van de Ven et al. 2022; docs/references.md, The
    three-scenario protocol).
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


def format_short(value: object, digits: int = SHOWN_DIGITS) -> str:
    """A parameter value for a reader: ``digits`` significant digits, trailing zeros dropped.

    ``24.85``, ``0.001``, ``1.829e+5``, ``true``, ``64``; integers and words stay whole. Tables
    and the console show this; the exact value (:func:`format_param`) stays in the files.
    """
    if isinstance(value, (bool, np.bool_, int, np.integer)) or not isinstance(
        value, (float, np.floating)
    ):
        return format_param(value)
    number = float(value)
    if number == 0 or math.isnan(number) or math.isinf(number):
        return format_param(number)
    low, high = SIGNIFICANT_EXACT_RANGE
    if low <= abs(number) < high:
        decimals = max(digits - 1 - math.floor(math.log10(abs(number))), 0)
        text = f"{number:.{decimals}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    mantissa, exponent = f"{number:.{digits - 1}e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".") if "." in mantissa else mantissa
    return f"{mantissa}e{int(exponent):+d}"


def format_duration(seconds: float | None) -> str:
    """A span of time for a reader: ``42.0 s``, ``3 min 05 s``, ``2 h 07 min``; '–' if unknown."""
    if seconds is None or not math.isfinite(seconds):
        return DASH
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def format_hours(seconds: float | None) -> str:
    """Seconds as hours to 3 significant digits (CPU-hours, GPU-hours); '–' if unknown."""
    if seconds is None or not math.isfinite(seconds):
        return DASH
    return format_short(seconds / 3600, 3)


def format_count(value: float | None) -> str:
    """A count with thousands separators (``1,391,786``); '–' if unknown."""
    if value is None or not math.isfinite(float(value)):
        return DASH
    return f"{int(value):,}"
