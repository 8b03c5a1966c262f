"""The best-config registry (issue 18, item 3): entry format and integrity, which configuration
``clsweep best`` chooses from hand-made results, the --force rule, and bad input (exit 2)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from import_checks import CONFIG_ONLY, modules_after

from analysis.registry import entries_from, protocol_of
from clsweep.cli import main
from clsweep.run_entry import core_argv
from contract import tables
from contract.registry import (
    RegistryError,
    content_hash,
    dumps,
    entry_path,
    loads,
    read_entry,
    seal,
    write_entry,
)
from contract.schema import SCHEMA_VERSION, TASKS_SCHEMA, trials_schema

REPO = Path(__file__).resolve().parents[1]
HYPERPARAMS = [("lambda", "float"), ("fisher_samples", "int"), ("fisher", "choice")]
SETTINGS = dict(optimizer="adam", lr=0.01, weight_decay=0.0, momentum=0.9, batch_size=32,
                epochs=2, iterations=None, model="mlp", hidden="32", conv_weights=None,
                freeze_conv=False, reset_optimizer=False, val_fraction=0.1, class_il_units="all",
                first_task_unpermuted=False, pad32=False, stream="none", update_every=100,
                transition=1000, eval_every=0)  # fmt: skip


def row(trial_id: str, phase: str, config_id: str, lam: float, val: float, test: float,
        status: str = "completed", rank: int | None = None, seed: int = 0,
        method: str = "ewc", cell: str = "permuted-digits/domain/3", **extra) -> dict:  # fmt: skip
    benchmark, scenario, n_tasks = cell.split("/")
    return {
        "schema_version": SCHEMA_VERSION, "sweep": "hand", "trial_id": trial_id, "phase": phase,
        "cell": cell, "config_id": config_id, "final_rank": rank, "method": method,
        "benchmark": benchmark, "scenario": scenario, "n_tasks": int(n_tasks),
        "data_seed": seed, "train_seed": seed, **SETTINGS,
        "hp_lambda": lam, "hp_fisher_samples": 1000, "hp_fisher": "empirical",
        "status": status, "tasks_completed": 3, "val_avg_acc": val, "test_avg_acc": test,
        "val_forgetting": 1 - val, "objective": val, "device": "cpu", **extra,
    }  # fmt: skip


def make_sweep(folder: Path, rows: list[dict], name: str = "hand", **meta) -> Path:
    """A sweep folder as python -m sweep writes it: Parquet parts with the contract's schema,
    and a sweep.json holding what clsweep best reads."""
    folder.mkdir(parents=True)
    for r in rows:
        r["sweep"] = name
    trials = pa.Table.from_pylist(rows, schema=trials_schema(HYPERPARAMS))
    tables.write_part(folder, "trials.parquet", trials, "part")
    tables.write_part(folder, "tasks.parquet", TASKS_SCHEMA.empty_table(), "part")
    sweep_json = {
        "schema_version": SCHEMA_VERSION, "name": name, "space_file": None,
        "space": {"method": "ewc"}, "fingerprint": "f00d", "command": "python -m sweep",
        "objective": {"metrics": ["val_avg_acc"], "modes": ["max"]},
        "versions": {"clsweep": "0.1.0"}, "git_commit": "abc123",
        "started_at": "2026-01-01T00:00:00Z", "ended_at": "2026-01-01T00:01:00Z", **meta,
    }  # fmt: skip
    (folder / "sweep.json").write_text(json.dumps(sweep_json))
    return folder


def search_and_final(stopped: int = 1) -> list[dict]:
    """Four search trials (+ stopped ones); the final phase re-ran the two best with 3 seeds.
    Rank 2's fresh seeds happen to score higher on validation: the entry must still hold
    rank 1, the configuration the sweep chose."""
    rows = [
        row("s0", "search", "aaa", 1.5, 0.60, 0.58),
        row("s1", "search", "bbb", 250.0, 0.80, 0.75),  # the best: rank 1
        row("s2", "search", "ccc", 40.0, 0.70, 0.69),  # rank 2
        row("s3", "search", "ddd", 9.0, 0.65, 0.66),
    ]
    rows += [
        row(f"x{i}", "search", f"st{i}", 3.0, 0.3, 0.3, status="stopped") for i in range(stopped)
    ]
    scores = {1000: (0.70, 0.71), 1001: (0.72, 0.74), 1002: (0.74, 0.80)}  # rank 1: val, test
    for seed, (v1, t1) in scores.items():
        rows.append(row(f"f1-{seed}", "final", "bbb", 250.0, v1, t1, rank=1, seed=seed))
        rows.append(row(f"f2-{seed}", "final", "ccc", 40.0, 0.9, 0.9, rank=2, seed=seed))
    return rows


def test_final_phase_rank_1_is_chosen_with_its_seeds(tmp_path):
    folder = make_sweep(tmp_path / "hand", search_and_final())
    (entry,), notes = entries_from([folder], now="2026-01-02T00:00:00Z")
    assert notes == []
    config, selection, final = entry["config"], entry["selection"], entry["final"]
    assert config["method_params"] == {"fisher": "empirical", "fisher_samples": 1000,
                                       "lambda": 250.0}  # fmt: skip
    assert isinstance(config["method_params"]["fisher_samples"], int)
    assert (config["data_seed"], config["train_seed"]) == (1000, 1000)  # the first final seed
    assert {k: config[k] for k in SETTINGS} == SETTINGS
    cell = (config["benchmark"], config["scenario"], config["n_tasks"])
    assert cell == ("permuted-digits", "domain", 3)
    assert selection["config_id"] == "bbb" and selection["protocol"] == "end-of-sequence"
    assert (selection["search_trials"], selection["search_completed"]) == (5, 4)
    assert selection["search_value"] == 0.80 and selection["search_trial_ids"] == ["s1"]
    assert selection["objective"] == {"metric": "val_avg_acc", "mode": "max"}
    assert final["ran"] and final["metric"] == "test_avg_acc"
    assert final["seeds"] == [1000, 1001, 1002] and final["values"] == [0.71, 0.74, 0.80]
    values = np.array([0.71, 0.74, 0.80])
    assert math.isclose(final["mean"], values.mean())
    assert math.isclose(final["sem"], values.std(ddof=1) / math.sqrt(3))
    assert math.isclose(final["val_mean"], 0.72)
    provenance = entry["provenance"]
    assert provenance["sweep"] == "hand" and provenance["git_commit"] == "abc123"
    assert provenance["clsweep_version"] == "0.1.0" and provenance["fingerprint"] == "f00d"
    assert provenance["space_sha256"].startswith("sha256:") and entry["written_at"]


def test_without_final_phase_the_best_search_trial_in_the_objectives_direction(tmp_path):
    rows = search_and_final()[:5]
    meta = {"objective": {"metrics": ["val_forgetting"], "modes": ["min"]}}
    folder = make_sweep(tmp_path / "hand", rows, **meta)
    (entry,), _ = entries_from([folder])
    assert entry["config"]["method_params"]["lambda"] == 250.0  # forgetting 0.20, the lowest
    assert entry["selection"]["objective"] == {"metric": "val_forgetting", "mode": "min"}
    assert entry["selection"]["search_value"] == pytest.approx(0.20)
    assert entry["final"]["ran"] is False and "no final phase" in entry["final"]["note"]
    assert entry["final"]["seeds"] == [] and entry["final"]["metric"] == "test_forgetting"
    assert (entry["config"]["data_seed"], entry["config"]["train_seed"]) == (0, 0)


def test_one_entry_per_method_cell_and_protocol_at_its_path(tmp_path):
    rows = search_and_final()
    rows.append(row("t0", "search", "eee", 5.0, 0.5, 0.5, cell="split-digits/class/5"))
    rows.append(
        row(
            "l0",
            "search",
            "fff",
            5.0,
            0.5,
            0.5,
            method="lwf",
            hp_lambda=None,
            hp_fisher=None,
            hp_fisher_samples=None,
        )
    )
    rows.append(row("e0", "search", "ggg", 5.0, 0.5, 0.5, status="error", method="si"))
    selection = {"protocol": "first-tasks", "k": 2}
    folder = make_sweep(tmp_path / "hand", rows, selection=selection)
    assert main(["best", str(folder), "--into", str(tmp_path / "reg")]) == 0
    found = sorted(str(p.relative_to(tmp_path / "reg")) for p in (tmp_path / "reg").rglob("*"))
    assert [f for f in found if f.endswith(".yaml")] == [
        "permuted-digits/domain-3/ewc.first-tasks.yaml",
        "permuted-digits/domain-3/lwf.first-tasks.yaml",
        "split-digits/class-5/ewc.first-tasks.yaml",
    ]
    lwf = read_entry(tmp_path / "reg/permuted-digits/domain-3/lwf.first-tasks.yaml")
    assert "lambda" not in lwf["config"]["method_params"]  # null hp_ columns are other methods'
    assert lwf["selection"]["protocol_settings"] == {"k": 2}
    assert protocol_of({}) == ("end-of-sequence", {})


def test_round_trip_keeps_every_value_and_the_hash(tmp_path):
    (entry,), _ = entries_from([make_sweep(tmp_path / "hand", search_and_final())])
    sealed = seal(entry)
    assert sealed["integrity"] == content_hash(sealed)
    assert list(sealed)[0] == "clsweep_registry_entry" and list(sealed)[-1] == "integrity"
    path = entry_path(tmp_path / "reg", sealed)
    assert path == tmp_path / "reg/permuted-digits/domain-3/ewc.end-of-sequence.yaml"
    write_entry(path, sealed)
    back = read_entry(path)
    assert back == sealed  # floats, ints, dates as strings, nulls: all read back the same
    assert back["written_at"] == entry["written_at"] and isinstance(back["written_at"], str)
    assert content_hash(back) == sealed["integrity"]
    assert loads(dumps(back), "again") == sealed


def test_a_hand_edit_is_detected(tmp_path):
    (entry,), _ = entries_from([make_sweep(tmp_path / "hand", search_and_final())])
    path = tmp_path / "e.yaml"
    write_entry(path, seal(entry))
    text = path.read_text()
    path.write_text(text.replace("lambda: 250.0", "lambda: 251.0"))
    with pytest.raises(RegistryError, match=r"e\.yaml: integrity hash mismatch.*--force"):
        read_entry(path)
    path.write_text(text.replace("  lr: 0.01\n", "  lr: 0.01\n  lr_decay: 0.5\n"))
    with pytest.raises(RegistryError, match="unknown key config.lr_decay"):
        read_entry(path)
    path.write_text(text.replace("written_at:", "comment: hi\nwritten_at:"))
    with pytest.raises(RegistryError, match="unknown key 'comment'"):
        read_entry(path)
    path.write_text(text.replace("# Run it", "# a comment changes no content; run it"))
    assert read_entry(path)["integrity"] == seal(entry)["integrity"]


def support_sweep(folder: Path, name: str, stopped: int, seeds: int) -> Path:
    rows = [r for r in search_and_final(stopped) if r["phase"] == "search" or r["final_rank"] == 1]
    rows = [r for r in rows if r["phase"] == "search" or r["train_seed"] < 1000 + seeds]
    return make_sweep(folder / name, rows, name=name)


def test_force_rule(tmp_path, capsys):
    big = support_sweep(tmp_path, "big", stopped=4, seeds=3)  # 8 trials, 3 seeds
    small = support_sweep(tmp_path, "small", stopped=0, seeds=3)  # 4 trials, 3 seeds
    fewer_seeds = support_sweep(tmp_path, "fewer", stopped=6, seeds=2)  # 10 trials, 2 seeds
    same = support_sweep(tmp_path, "same", stopped=4, seeds=3)
    reg = tmp_path / "reg"
    path = reg / "permuted-digits/domain-3/ewc.end-of-sequence.yaml"

    def best(*args: Path | str) -> int:
        return main(["best", *map(str, args), "--into", str(reg)])

    assert best(big) == 0 and read_entry(path)["provenance"]["sweep"] == "big"
    capsys.readouterr()
    for worse in (small, fewer_seeds):  # fewer trials; more trials but fewer seeds
        before = path.read_bytes()
        assert best(worse) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(path) in err and "--force" in err
        assert "8 search trials, 3 final seeds, sweep big" in err
        assert path.read_bytes() == before
    assert best(same) == 0 and read_entry(path)["provenance"]["sweep"] == "same"  # equal support
    assert best(small, "--force") == 0 and read_entry(path)["provenance"]["sweep"] == "small"
    assert best(big) == 0 and read_entry(path)["provenance"]["sweep"] == "big"  # better support
    capsys.readouterr()
    assert best(big, small) == 2  # two sweeps for one entry in one command: the same rule
    assert "--force" in capsys.readouterr().err
    path.write_text(path.read_text().replace("lambda: 250.0", "lambda: 1.0"))
    assert best(big) == 2 and "integrity hash mismatch" in capsys.readouterr().err
    assert best(big, "--force") == 0 and read_entry(path)


def test_core_argv_gives_the_exact_configuration():
    config = {"benchmark": "split-digits", "scenario": "class", "n_tasks": 5, "method": "ewc",
              "method_params": {"lambda": 0.1 + 0.2, "half": True, "fisher_samples": 7},
              "data_seed": 1000, "train_seed": 1000, "lr": 1e-05, "epochs": None,
              "iterations": 3, "hidden": "100,100", "freeze_conv": False}  # fmt: skip
    argv = core_argv(config, seed=7)
    assert argv[argv.index("--data-seed") + 1] == argv[argv.index("--train-seed") + 1] == "7"
    assert "lambda=0.30000000000000004" in argv and "half=true" in argv
    assert float(argv[argv.index("--lr") + 1]) == 1e-05 and "--epochs" not in argv
    assert (
        argv[argv.index("--tasks") + 1] == "5" and argv[argv.index("--freeze-conv") + 1] == "false"
    )
    from cl_core.__main__ import build_parser, config_from_args
    from cl_core.methods import METHODS
    from cl_core.params import resolve

    cfg = config_from_args(build_parser().parse_args(argv))
    params = resolve(METHODS["ewc"].hyperparams, cfg.method_params, "ewc")
    assert params["lambda"] == 0.1 + 0.2 and params["half"] is True
    assert params["fisher_samples"] == 7 and isinstance(params["fisher_samples"], int)
    assert (cfg.lr, cfg.iterations, cfg.epochs, cfg.hidden) == (1e-05, 3, None, (100, 100))


def test_bad_input_is_one_line_and_exit_2_before_any_training(tmp_path, capsys):
    (entry,), _ = entries_from([make_sweep(tmp_path / "hand", search_and_final())])
    good = tmp_path / "reg" / "e.yaml"
    write_entry(good, seal(entry))
    edited = tmp_path / "reg" / "edited.yaml"
    edited.write_text(good.read_text().replace("lambda: 250.0", "lambda: 25.0"))
    unknown = tmp_path / "reg" / "unknown.yaml"
    unknown.write_text(good.read_text().replace("final:\n", "final:\n  best: true\n"))
    space = tmp_path / "reg" / "space.yaml"
    space.write_text("method: ewc\n")
    (tmp_path / "notasweep").mkdir()
    cases = {
        ("best", str(tmp_path / "missing"), "--into", str(tmp_path / "r")): "does not exist",
        ("best", str(tmp_path / "notasweep"), "--into", str(tmp_path / "r")): "is not a sweep",
        ("best", str(tmp_path / "hand"), "--into", str(good)): "is a file",
        ("best", str(tmp_path / "hand")): "--into",
        ("run", "--config", str(tmp_path / "noreg" / "e.yaml")): "registry folder",
        ("run", "--config", str(tmp_path / "reg" / "nope.yaml")): "entries there: e.yaml",
        ("run", "--config", str(tmp_path / "reg")): "is a folder",
        ("run", "--config", str(space)): "is not a registry entry",
        ("run", "--config", str(unknown)): "unknown key final.best",
        ("run", "--config", str(edited)): "integrity hash mismatch",
        ("run", "--config", str(good), "--lr", "0.1"): "unrecognized arguments: --lr",
    }
    for argv, message in cases.items():
        try:
            code = main(list(argv))
        except SystemExit as done:  # argparse's errors exit, as every clsweep CLI's
            code = done.code
        assert code == 2, argv
        out, err = capsys.readouterr()
        assert err.startswith("error: ") and err.count("\n") == 1, (argv, err)
        assert message in err and out == "", (argv, err)
    assert not (tmp_path / "r").exists()


def test_best_and_entries_need_neither_torch_nor_ray():
    """docs/design.md: analysis imports the contract only; the registry format is contract."""
    heavy, core = modules_after("import analysis.registry, contract.registry, clsweep.cli", REPO)
    assert heavy == [] and core == CONFIG_ONLY
