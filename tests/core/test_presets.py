"""Presets: per-scenario defaults are what the docstring says, explicit settings win."""

import pytest

from cl_core.__main__ import build_parser, config_from_args, main
from cl_core.presets import (
    PRESETS,
    VDV_DOC,
    VDV_LATER_STRENGTHS,
    VDV_STRENGTHS,
    preset_config,
    vdv_method_defaults,
)


def _cfg(*flags: str):
    return config_from_args(build_parser().parse_args(list(flags)))


def _doc_table() -> list[list[str]]:
    """Rows of the strengths table in the vdv docstring (header excluded)."""
    lines = VDV_DOC.split("experiment  scenario")[1].split("\n\n")[0].splitlines()[1:]
    return [line.split() for line in lines]


def test_vdv_docstring_table_is_what_the_presets_use():
    rows = _doc_table()
    assert len(rows) == 6
    for experiment, scenario, ewc_lambda, o_lambda, gamma, online_lambda, si_c in rows:
        defaults = vdv_method_defaults(experiment)
        assert VDV_STRENGTHS[experiment][scenario] == (
            float(ewc_lambda),
            float(o_lambda),
            float(gamma),
            float(si_c),
        )
        ewc = defaults("ewc", scenario, {})
        assert ewc["lambda"] == float(ewc_lambda) and ewc["merge"] == "separate"
        online = defaults("ewc", scenario, {"merge": "online"})
        assert online["lambda"] == pytest.approx(float(online_lambda))
        assert online["gamma"] == float(gamma) and online["merge"] == "online"
        assert defaults("si", scenario, {})["c"] == float(si_c)


@pytest.mark.parametrize("scenario", ["task", "domain", "class"])
def test_vdv_split_method_defaults_per_scenario(scenario):
    """Spot values from param_values.py (9945f84) and the choices the docstring lists."""
    ewc_lambda = {"task": 1e7, "domain": 1e6, "class": 1e8}[scenario]
    si_c = {"task": 50.0, "domain": 500.0, "class": 0.5}[scenario]
    cfg = _cfg("--preset", "vdv-split", "--scenario", scenario, "--method", "ewc")
    assert cfg.method_params == {
        "fisher": "predicted",
        "fisher_samples": 0,
        "half": True,
        "merge": "separate",
        "lambda": ewc_lambda,
    }
    assert cfg.class_il_units == ("seen" if scenario == "class" else "all")
    si = _cfg("--preset", "vdv-split", "--scenario", scenario, "--method", "si").method_params
    assert si == {"c": si_c, "epsilon": 0.1, "path_integral": "total-loss-unclamped"}
    lwf = _cfg("--preset", "vdv-split", "--scenario", scenario, "--method", "lwf").method_params
    assert lwf["distill"] == "padded-unit-mean" and lwf["weighting"] == "one-over-t"
    assert lwf["scaling"] == "t2" and lwf["temperature"] == 2.0
    assert _cfg("--preset", "vdv-split", "--scenario", scenario).method_params == {}


def test_vdv_run_settings():
    split = _cfg("--preset", "vdv-split")
    assert (split.benchmark, split.scenario, split.n_tasks, split.hidden) == (
        "split-mnist",
        "task",
        5,
        (400, 400),
    )
    assert (split.iterations, split.epochs, split.lr, split.batch_size) == (2000, None, 1e-3, 128)
    assert split.val_fraction == 0.1 and not split.reset_optimizer and not split.pad32
    perm = _cfg("--preset", "vdv-permuted", "--scenario", "domain")
    assert (perm.n_tasks, perm.hidden, perm.iterations, perm.lr) == (10, (1000, 1000), 5000, 1e-4)
    assert perm.pad32 and perm.first_task_unpermuted  # data seed 0
    assert not _cfg("--preset", "vdv-permuted", "--seed", "2").first_task_unpermuted


def test_explicit_flags_override_vdv_preset_defaults():
    cfg = _cfg(
        "--preset", "vdv-split", "--scenario", "class", "--method", "ewc",
        "--param", "lambda=5", "--param", "fisher=empirical",
        "--class-il-units", "all", "--val-fraction", "0", "--hidden", "100", "--epochs", "1",
    )  # fmt: skip
    assert cfg.method_params["lambda"] == "5" and cfg.method_params["fisher"] == "empirical"
    assert cfg.method_params["merge"] == "separate"  # not given: the preset's
    assert cfg.class_il_units == "all" and cfg.val_fraction == 0.0 and cfg.hidden == (100,)
    assert cfg.epochs == 1 and cfg.iterations is None
    online = _cfg(
        "--preset", "vdv-split", "--method", "ewc",
        "--param", "merge=online", "--param", "gamma=0.5",
    )  # fmt: skip
    assert online.method_params["gamma"] == "0.5"
    assert online.method_params["lambda"] == pytest.approx(1e8 * 0.5)  # λ_ref · the γ in use
    lwf = _cfg("--preset", "vdv-split", "--method", "lwf", "--param", "distill=per-scenario")
    assert lwf.method_params["distill"] == "per-scenario"
    assert lwf.method_params["weighting"] == "one-over-t"


def test_vdv_fromp_tau_and_bir_gate_prop_per_experiment_and_scenario():
    """The 2022 param_values.py values (tau; dg_prop), as the docstring's second table states."""
    table = VDV_DOC.split("experiment  scenario  fromp tau")[1].split("\n\n")[0].splitlines()[1:]
    rows = [line.split() for line in table]
    assert rows == [
        ["split", "task", "0.01", "0.0"],
        ["split", "domain", "10", "0.1"],
        ["split", "class", "1000", "0.1"],
        ["permuted", "task", "1", "0.0"],
        ["permuted", "domain", "1", "0.5"],
        ["permuted", "class", "1", "0.7"],
    ]
    for experiment, scenario, tau, gate_prop in rows:
        assert VDV_LATER_STRENGTHS[experiment][scenario] == (float(tau), float(gate_prop))
        preset = PRESETS[f"vdv-{experiment}"]
        assert preset.method_defaults("fromp", scenario, {}) == {"tau": float(tau)}
        assert preset.method_defaults("bir", scenario, {}) == {"gate_prop": float(gate_prop)}
        for method in ("dgr", "gen_classifier"):  # the methods' own defaults
            assert preset.method_defaults(method, scenario, {}) == {}
    cfg = preset_config("vdv-permuted", scenario="class", method="bir")
    assert cfg.method_params == {"gate_prop": 0.7} and cfg.class_il_units == "seen"
    given = preset_config("vdv-permuted", {"gate_prop": 0.2}, scenario="class", method="bir")
    assert given.method_params == {"gate_prop": 0.2}  # explicit wins
    assert PRESETS["classic-permuted"].method_defaults("fromp", "domain", {}) == {}


def test_preset_config_api_matches_the_cli():
    api = preset_config("vdv-split", {"c": 3.0}, scenario="domain", method="si", val_fraction=0.0)
    cli = _cfg(
        "--preset", "vdv-split", "--scenario", "domain", "--method", "si",
        "--param", "c=3.0", "--val-fraction", "0",
    )  # fmt: skip
    assert api.to_dict() == {**cli.to_dict(), "method_params": {**cli.method_params, "c": 3.0}}


def test_list_presets_prints_every_preset_with_its_sources(capsys):
    assert main(["--list-presets"]) == 0
    out = capsys.readouterr().out
    for name in PRESETS:
        assert f"--preset {name}" in out
    assert "param_values.py" in out and "86802a8" in out and "--val-fraction 0" in out
