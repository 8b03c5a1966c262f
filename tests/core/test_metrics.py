"""The metrics (docs/references.md, Metrics) on hand-computed matrices."""

import numpy as np
import pytest

from cl_core import metrics

# R[i][j]: accuracy on task j after learning tasks 0..i
R = np.array(
    [
        [0.90, 0.10, 0.20],
        [0.70, 0.80, 0.30],
        [0.50, 0.60, 0.95],
    ]
)
B = np.array([0.10, 0.12, 0.25])


def test_average_accuracy_per_step():
    # (0.9), (0.7+0.8)/2, (0.5+0.6+0.95)/3
    assert metrics.average_accuracy(R) == pytest.approx([0.90, 0.75, 2.05 / 3])


def test_bwt():
    # ((0.5-0.9) + (0.6-0.8)) / 2 = -0.3
    assert metrics.backward_transfer(R) == pytest.approx(-0.3)


def test_fwt():
    # ((R[0][1]-b1) + (R[1][2]-b2)) / 2 = ((0.10-0.12) + (0.30-0.25)) / 2 = 0.015
    assert metrics.forward_transfer(R, B) == pytest.approx(0.015)


def test_forgetting_uses_max_over_earlier_rows():
    # task 0: max(0.9, 0.7) - 0.5 = 0.4; task 1: max(0.1, 0.8) - 0.6 = 0.2 -> 0.3
    assert metrics.forgetting(R) == pytest.approx(0.3)
    peaked = np.array([[0.9, 0.0], [0.95, 0.9]])
    # the peak may come after the task was learned: max(0.9) - 0.95 = -0.05
    assert metrics.forgetting(peaked) == pytest.approx(-0.05)


def test_plasticity():
    assert metrics.plasticity(R) == pytest.approx((0.9 + 0.8 + 0.95) / 3)


def test_summary_of_partial_run_has_only_average():
    out = metrics.summary(R[:2], B)
    assert out["avg_acc"] == pytest.approx(0.75)
    assert np.isnan(out["bwt"]) and np.isnan(out["forgetting"])


def test_single_task_transfer_metrics_are_nan():
    out = metrics.summary(np.array([[0.8]]), np.array([0.1]))
    assert out["avg_acc"] == pytest.approx(0.8)
    assert np.isnan(out["bwt"]) and np.isnan(out["fwt"])
