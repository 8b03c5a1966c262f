"""Each study's sampler seed derives from the sweep's seed and its cell (issue 10, item 6)."""

from __future__ import annotations

from sweep_helpers import write_space

from sweep.protocol import protocol_record
from sweep.seeds import cell_sampler_seed
from sweep.space import load_space
from sweep.studies import UnitStudies
from sweep.study_storage import open_storage

TWO_CELLS = """
method: ewc
train: {hidden: "16", epochs: 1}
search:
  lambda: {type: loguniform, low: 1, high: 1.0e7}
grid: {benchmark: split-digits, scenario: [task, class], n_tasks: 5}
budget: {trials: 4}
"""


def test_seed_is_reproducible_and_differs_between_cells():
    seed = cell_sampler_seed(0, "ewc", "split-mnist/task/5")
    assert seed == cell_sampler_seed(0, "ewc", "split-mnist/task/5")
    assert 0 <= seed < 2**31
    others = {
        cell_sampler_seed(0, "ewc", "split-mnist/class/5"),
        cell_sampler_seed(0, "si", "split-mnist/task/5"),
        cell_sampler_seed(1, "ewc", "split-mnist/task/5"),
    }
    assert seed not in others and len(others) == 3
    assert cell_sampler_seed(None, "ewc", "split-mnist/task/5") is None  # an unseeded sweep


def test_two_cells_of_one_sweep_get_different_first_trials(tmp_path):
    spec = load_space(write_space(tmp_path, TWO_CELLS))
    shared = open_storage(tmp_path / "study.db")
    first = {}
    for index, (_method, cell) in enumerate(spec.units):
        first[cell.key] = UnitStudies(spec, shared, index).ask()[1]["lambda"]
        alone = open_storage(tmp_path / f"{index}.db")
        assert UnitStudies(spec, alone, index).ask()[1]["lambda"] == first[cell.key]  # reproducible
    assert len(set(first.values())) == 2, first
    recorded = protocol_record(spec)["sampler"]
    assert recorded["seed"] == 0 and "sha256" in recorded["study_seed_derivation"]
    assert recorded["study_seeds"] == {
        f"ewc on {c.key}": cell_sampler_seed(0, "ewc", c.key) for c in spec.cells
    }
