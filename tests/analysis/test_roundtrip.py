"""Today's writer, today's reader: a real sweep (local Ray, the real trainer on digits) read back
by analysis, so that a writer change that breaks the reader fails here (the frozen fixtures of
fixtures/ only prove that schema-1 sweeps stay readable)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.load import load_results
from analysis.plots import average_accuracy
from analysis.report import build_report
from analysis.tables import best_configs
from cl_core.metrics import average_accuracy as core_average_accuracy
from contract import METRICS, SCHEMA_VERSION

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sweep"))
from sweep_helpers import finished_sweep, write_space  # noqa: E402

SPACE = """
method: ewc
train: {hidden: "16", epochs: 1, batch_size: 64, lr: 0.01}
search:
  lambda: {type: loguniform, low: 1, high: 1.0e4}
grid: {benchmark: permuted-digits, scenario: [domain, class], n_tasks: 3}
sampler: {name: tpe, seed: 0}
budget: {trials: 3}
final: {top_k: 1, seeds: 2}
loggers: []
"""


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A sweep written by python -m sweep's own writer on a real local Ray."""
    import ray

    from sweep.runner import Options, run_sweep
    from sweep.space import load_space

    tmp = tmp_path_factory.mktemp("roundtrip")
    spec = load_space(write_space(tmp, SPACE, "roundtrip.yaml"))
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
    )
    try:
        folder = run_sweep(spec, Options(out=tmp / "out", command="pytest", quiet=True))
    finally:
        ray.shutdown()
    return folder


def test_reader_loads_every_row_the_writer_wrote(written):
    results = load_results(written)
    trials = pd.read_parquet(written / "trials.parquet")
    tasks = pd.read_parquet(written / "tasks.parquet")
    assert len(results.trials) == len(trials) == 2 * (3 + 2)
    assert len(results.tasks) == len(tasks)
    info = results.sweep("roundtrip")
    assert info.meta["schema_version"] == SCHEMA_VERSION
    assert [p.column for p in info.params] == ["hp_lambda"] and info.params[0].log
    assert info.objective == ("val_avg_acc", "max")
    for _, row in results.completed.iterrows():
        matrix = results.matrix("roundtrip", row.trial_id, "test")
        assert matrix.shape == (4, 3)
        assert row.test_avg_acc == pytest.approx(average_accuracy(matrix[1:])[-1])


def test_best_configs_and_report_from_a_fresh_sweep(written, tmp_path):
    best = best_configs(load_results(written))
    assert len(best) == 2 and set(best.source) == {"final"} and set(best.n) == {2}
    report = build_report(written, tmp_path / "report")
    assert report.html.is_file() and report.pdf.is_file() and report.tables


def test_directions_come_from_sweep_json(written, tmp_path):
    """Which way is better is what the sweep recorded, not a guess from the metric's name."""
    copy = tmp_path / "copy"
    shutil.copytree(written, copy, ignore=shutil.ignore_patterns("ray", "study.db"))
    info = load_results(copy).sweep()
    assert info.direction("val_forgetting") == METRICS["forgetting"].direction == "min"
    assert info.direction("val_bwt") == "max"
    meta = json.loads((copy / "sweep.json").read_text())
    meta["metrics"]["val_bwt"]["direction"] = "min"
    (copy / "sweep.json").write_text(json.dumps(meta))
    results = load_results(copy)
    assert results.sweep().direction("val_bwt") == "min"
    lowest = best_configs(results, select_on="val_bwt")
    highest = best_configs(load_results(written), select_on="val_bwt")
    for (_, low), (_, high) in zip(lowest.iterrows(), highest.iterrows(), strict=True):
        assert low.val_score <= high.val_score


def test_a_sweep_read_mid_way_parts_not_yet_compacted(tmp_path):
    """Readers see the part folders a running sweep writes as one table."""
    space = write_space(tmp_path, SPACE, "parts.yaml")
    folder = finished_sweep(tmp_path / "out", space, compact=False)
    assert len(list((folder / "trials.parquet").glob("*.parquet"))) == 10  # one part per trial
    results = load_results(folder)
    assert len(results.trials) == 10 and results.trials.trial_id.is_unique


def test_analysis_average_accuracy_is_cl_cores():
    R = np.random.default_rng(0).random((5, 5))
    assert np.allclose(average_accuracy(R), core_average_accuracy(R))
