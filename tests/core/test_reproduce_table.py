"""The three-scenario reproduction table: mean ± SEM, the difference in SEMs, partial tables."""

import json
import math

import pytest

from benchmarks.reproduce_three_scenarios import cell, run_path, table


def test_cell_by_hand():
    # values 98, 99, 100: mean 99, sample sd 1, SEM 1/sqrt(3); published 98.64 ± 0.22
    text, z = cell([98.0, 99.0, 100.0], (98.64, 0.22))
    sem = 1 / math.sqrt(3)
    assert text == f"{99.0:6.2f} ± {sem:4.2f}"
    assert z == pytest.approx((99.0 - 98.64) / math.sqrt(sem**2 + 0.22**2))


def test_cell_with_one_or_no_seed_has_no_difference():
    assert cell([], (50.0, 1.0)) == ("-", None)
    assert cell([97.8], (97.94, 0.03)) == (" 97.80", None)


def _write(out, method, scenario, seed, acc, status="completed"):
    path = run_path(out, method, scenario, seed)
    path.write_text(json.dumps({"status": status, "metrics": {"test": {"avg_acc": acc}}}))


def test_table_flags_cells_outside_two_sem_and_skips_unfinished_runs(tmp_path):
    # Joint class-IL: 90, 91, 92 against 97.94 ± 0.03 -> -6.94 / 0.578 = -12.0 SEM, flagged
    for seed, acc in zip((1, 2, 3), (0.90, 0.91, 0.92), strict=True):
        _write(tmp_path, "Joint", "class", seed, acc)
    # None task-IL: within the spread (87, 88 against 87.19 ± 0.94); seed 3 diverged
    _write(tmp_path, "None", "task", 1, 0.87)
    _write(tmp_path, "None", "task", 2, 0.88)
    _write(tmp_path, "None", "task", 3, 0.10, status="diverged")
    text = table("split", tmp_path, [1, 2, 3])
    joint = next(line for line in text.splitlines() if line.startswith("| Joint |"))
    assert " 91.00 ± 0.58 | 97.94 ± 0.03 | -12.0 * |" in joint
    none = next(line for line in text.splitlines() if line.startswith("| None |"))
    assert " 87.50 ± 0.50 (n=2) | 87.19 ± 0.94 | +0.3 |" in none
    assert "Outside 2 SEM: Joint class-IL (-12.0)" in text
