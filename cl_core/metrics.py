"""Continual-learning metrics of an accuracy matrix, as docs/references.md (Metrics) defines them.

``R[i][j]`` is the accuracy on task j after learning tasks 0..i (T x T); ``b[j]`` is the accuracy
of the untrained model on task j.
"""

from __future__ import annotations

import numpy as np

NAMES = ("avg_acc", "bwt", "fwt", "forgetting", "plasticity")


def average_accuracy(R: np.ndarray) -> np.ndarray:
    """Average accuracy after each task i: mean over j <= i of R[i][j] (length T)."""
    R = np.asarray(R, dtype=float)
    return np.array([R[i, : i + 1].mean() for i in range(len(R))])


def backward_transfer(R: np.ndarray) -> float:
    """BWT = 1/(T-1) * sum_{j<T-1} (R[T-1][j] - R[j][j]) (Lopez-Paz & Ranzato 2017, eq. 3)."""
    R = np.asarray(R, dtype=float)
    T = len(R)
    if T < 2:
        return float("nan")
    return float(np.mean([R[T - 1, j] - R[j, j] for j in range(T - 1)]))


def forward_transfer(R: np.ndarray, b: np.ndarray) -> float:
    """FWT = 1/(T-1) * sum_{j>=1} (R[j-1][j] - b[j]) (Lopez-Paz & Ranzato 2017, eq. 4)."""
    R = np.asarray(R, dtype=float)
    T = len(R)
    if T < 2:
        return float("nan")
    return float(np.mean([R[j - 1, j] - b[j] for j in range(1, T)]))


def forgetting(R: np.ndarray) -> float:
    """Average over j < T-1 of max_{l<T-1} R[l][j] - R[T-1][j] (Chaudhry et al. 2018, eq. 4).

    The max runs over every l < T-1, as docs/references.md (Metrics) states (rows l < j hold the
    accuracy before task j was learned, which is normally lower and so does not change the max).
    """
    R = np.asarray(R, dtype=float)
    T = len(R)
    if T < 2:
        return float("nan")
    return float(np.mean([R[: T - 1, j].max() - R[T - 1, j] for j in range(T - 1)]))


def plasticity(R: np.ndarray) -> float:
    """Learning accuracy: mean_j R[j][j]."""
    return float(np.mean(np.diag(np.asarray(R, dtype=float))))


def summary(R: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """All the metrics of a square matrix R (T x T) and baseline b; a partial run (fewer rows
    than tasks) gets the average accuracy after its last row and NaN for the rest."""
    R = np.asarray(R, dtype=float)
    if R.shape[0] < R.shape[1]:
        out = empty_summary()
        out["avg_acc"] = float(average_accuracy(R)[-1])
        return out
    return {
        "avg_acc": float(average_accuracy(R)[-1]),
        "bwt": backward_transfer(R),
        "fwt": forward_transfer(R, b),
        "forgetting": forgetting(R),
        "plasticity": plasticity(R),
    }


def empty_summary() -> dict[str, float]:
    return dict.fromkeys(NAMES, float("nan"))
