"""RunConfig is the one source of truth: each field's metadata (cl_core.config.setting) builds
its CLI flag, its Parquet settings column, its population role and its place in a sweep's space.
Every field appears in each place its metadata names, and nowhere else."""

from __future__ import annotations

import dataclasses

from import_checks import CONFIG_ONLY, modules_after

from cl_core.__main__ import FIELDS, build_parser
from cl_core.config import (
    POPULATION_ROLES,
    SHARED_FIELDS,
    SWEEP_ROLES,
    RunConfig,
    cli_flag,
    population_role,
    sweep_role,
)
from contract.schema import SETTINGS
from sweep.protocol import CELL_FIELDS
from sweep.space.keys import NOT_TRAIN_KEYS, TRAIN_KEYS

NAMES = [f.name for f in dataclasses.fields(RunConfig)]


def test_every_field_appears_where_its_metadata_says_and_nowhere_else():
    parser_dests = {action.dest for action in build_parser()._actions}
    columns = dict(SETTINGS)
    for f in dataclasses.fields(RunConfig):
        flag = cli_flag(f.name)
        if flag is None:
            assert f.name not in FIELDS.values()
        else:
            dest = flag.removeprefix("--").replace("-", "_")
            assert FIELDS[dest] == f.name and dest in parser_dests
        assert (f.name in columns) == (f.metadata["column"] is not None), f.name
        assert population_role(f.name) in POPULATION_ROLES
        assert (f.name in SHARED_FIELDS) == (population_role(f.name) == "shared")
        assert sweep_role(f.name) in SWEEP_ROLES
        assert (f.name in TRAIN_KEYS) == (sweep_role(f.name) == "train")
        assert (f.name in NOT_TRAIN_KEYS) == (sweep_role(f.name) != "train")
    # nowhere else: every flag, column and key names a field
    assert set(FIELDS.values()) <= set(NAMES)
    assert set(columns) <= set(NAMES) and list(columns) == [n for n in NAMES if n in columns]
    assert set(CELL_FIELDS) <= set(NAMES)


def test_the_roles_the_rest_of_the_project_relies_on():
    """Hand-checked: members differ in lr, weight decay, momentum and seed; the grid sets the
    cell; the selection protocol the task window; seeds and every trainer setting are columns."""
    assert {n for n in NAMES if population_role(n) == "member"} == {
        "lr", "weight_decay", "momentum", "train_seed"
    }  # fmt: skip
    assert (
        NOT_TRAIN_KEYS["n_tasks"] == "grid.n_tasks" and NOT_TRAIN_KEYS["task_start"] == "selection"
    )
    assert {"lr", "data_seed", "train_seed", "hidden", "tf32", "task_start"} <= set(dict(SETTINGS))
    assert {"device", "data_root", "eval_batch_size", "benchmark"}.isdisjoint(dict(SETTINGS))


def test_the_config_module_is_the_bottom_layer():
    """cl_core.config imports no torch and no other cl_core module but errors (contract reads
    its settings columns from it in a torch-free install)."""
    heavy, core = modules_after("import cl_core.config")
    assert heavy == [] and core == CONFIG_ONLY
