"""Search-space validation: shipped spaces load, malformed ones are refused before Ray starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sweep_helpers import REPO, TINY_SPACE, write_space

from sweep.__main__ import main
from sweep.space import load_space, scale_notes
from sweep.space.keys import SPACES_DIR
from sweep.yaml_safe import load_yaml

MALFORMED = sorted((Path(__file__).parent / "malformed").glob("*.yaml"))
SHIPPED = sorted(SPACES_DIR.glob("*.yaml"))


def expected_message(path: Path) -> str:
    return path.read_text().splitlines()[0].removeprefix("# expect: ")


@pytest.mark.parametrize("path", MALFORMED, ids=lambda p: p.stem)
def test_malformed_space_is_refused_with_one_line_and_exit_2(path, capsys):
    assert main(["--space", str(path)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {path.name}: ")
    assert expected_message(path) in lines[0]
    assert captured.out == ""


def test_corpus_covers_each_kind_of_mistake():
    names = {p.stem for p in MALFORMED}
    for kind in (
        "unknown_top_key",
        "wrong_type_train",
        "inverted_range",
        "empty_range",
        "loguniform_zero",
        "unknown_hyperparam",
        "range_outside_valid",
        "unknown_benchmark",
        "unknown_scenario",
    ):
        assert kind in names


def test_refusal_happens_before_ray_is_imported():
    code = (
        "import sys; from sweep.__main__ import main; "
        f"rc = main(['--space', {str(MALFORMED[0])!r}]); "
        "assert 'ray' not in sys.modules, 'ray was imported'; sys.exit(rc)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_spaces_are_valid(path):
    spec = load_space(path.name)  # found by name in search_spaces/
    assert spec.params and spec.cells


def test_shipped_spaces_cover_the_issue():
    names = {p.name for p in SHIPPED}
    assert {
        "ewc.yaml",
        "lwf.yaml",
        "si.yaml",
        "baseline.yaml",
        "scenarios.yaml",
        "quickstart.yaml",
    } <= names
    ewc = load_space("ewc.yaml")
    lam = next(p for p in ewc.params if p.name == "lambda")
    assert lam.distribution == "loguniform" and lam.low <= 1 and lam.high >= 1e7
    assert {p.name for p in ewc.params} >= {"lambda", "lr"}
    assert ewc.cells[0].benchmark == "permuted-mnist"
    lwf = load_space("lwf.yaml")
    assert {p.name for p in lwf.params} >= {"temperature", "weight", "lr"}
    assert lwf.cells[0].benchmark == "split-mnist"
    scenarios = load_space("scenarios.yaml")
    assert {c.scenario for c in scenarios.cells} == {"task", "domain", "class"}
    assert len({c.n_tasks for c in scenarios.cells}) == 2
    quick = load_space("quickstart.yaml")
    assert all(c.benchmark.endswith("-digits") for c in quick.cells)


def test_overrides_and_sets_apply_before_validation(tmp_path):
    path = write_space(tmp_path, TINY_SPACE)
    spec = load_space(
        path,
        overrides={"budget.trials": 7, "resources.gpus": 0.5},
        sets=["train.epochs=2", "grid.n_tasks=[2, 4]", "name=other"],
    )
    assert spec.trials == 7 and spec.gpus == 0.5 and spec.train["epochs"] == 2
    assert [c.n_tasks for c in spec.cells] == [2, 4]
    assert spec.name == "other"
    assert spec.base_config("ewc", spec.cells[0])["device"] == "cuda"
    assert spec.raw["budget"]["trials"] == 4  # sweep.json keeps the file as given


def test_population_is_one_unless_set(tmp_path, capsys):
    path = write_space(tmp_path, TINY_SPACE)
    assert load_space(path).population == 1
    spec = load_space(path, sets=["resources.population=16"])
    assert spec.population == 16
    assert spec.fingerprint() == load_space(path).fingerprint()  # a resource: may change on resume
    assert main(["--space", str(path), "--set", "resources.population=8", "--dry-run"]) == 0
    assert "up to 8 configs trained together (population)" in capsys.readouterr().out
    assert main(["--space", str(path), "--set", "resources.population=0", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: space.yaml: resources.population: must be >= 1, got 0; write a whole number "
        "from 1 (one configuration per trial) to 1024"
    ], err


def test_set_value_is_validated_too(tmp_path, capsys):
    path = write_space(tmp_path, TINY_SPACE)
    assert main(["--space", str(path), "--set", "search.lambda.low=0", "--dry-run"]) == 2
    assert "search.lambda.low: log-scale bounds must be > 0" in capsys.readouterr().err


def test_dry_run_prints_the_plan_and_starts_nothing(tmp_path, capsys):
    path = write_space(tmp_path, TINY_SPACE)
    assert (
        main(["--space", str(path), "--dry-run", "--trials", "3", "--out", str(tmp_path / "out")])
        == 0
    )
    out = capsys.readouterr().out
    assert "permuted-digits/domain/3" in out
    assert "hp_lambda: loguniform [1, 10000]" in out
    assert "budget: 3 trials per cell" in out
    assert "per trial: 1 CPU, 0 GPU" in out
    assert not (tmp_path / "out").exists()


def test_linear_search_of_a_log_scale_hyperparameter_gets_a_note(tmp_path, capsys):
    """λ uniform over [0, 1e4]: (1e4 - 1e3) / 1e4 = 90% of trials land in [1e3, 1e4]."""
    linear = TINY_SPACE.replace(
        "{type: loguniform, low: 1, high: 1.0e4}", "{type: uniform, low: 0, high: 1.0e4}"
    )
    assert main(["--space", str(write_space(tmp_path, linear)), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert (
        "note: search.lambda is uniform over [0, 10000], so 90% of its trials fall in the top "
        in out
    )
    assert "`type: loguniform` with low > 0" in out
    # no note for a log search, a narrow linear one (1 decade), or a train setting such as lr
    narrow = linear.replace("low: 0, high: 1.0e4", "low: 1000, high: 1.0e4")
    assert scale_notes(load_space(write_space(tmp_path, narrow))) == []
    assert scale_notes(load_space(write_space(tmp_path, TINY_SPACE))) == []
    lr = TINY_SPACE.replace("lr: 0.01}", "}").replace(
        "high: 1.0e4}\n", "high: 1.0e4}\n  lr: {type: uniform, low: 1.0e-5, high: 0.1}\n"
    )
    assert scale_notes(load_space(write_space(tmp_path, lr))) == []


def test_scientific_notation_reads_as_numbers(tmp_path):
    spec = load_space(write_space(tmp_path, TINY_SPACE.replace("1.0e4", "1e4")))
    assert spec.params[0].high == 10000.0


def test_missing_space_file_names_the_shipped_ones(capsys):
    assert main(["--space", "nope.yaml"]) == 2
    err = capsys.readouterr().err
    assert "nope.yaml: no such file" in err and "quickstart.yaml" in err


def readme_snippets() -> list[str]:
    text = (SPACES_DIR / "README.md").read_text()
    return [block.split("```", 1)[0] for block in text.split("```yaml\n")[1:]]


@pytest.mark.parametrize("snippet", readme_snippets())
def test_each_readme_example_is_a_valid_space(tmp_path, snippet):
    base = """
method: ewc
search: {momentum: {type: uniform, low: 0.5, high: 0.9}}
grid: {benchmark: permuted-digits, scenario: domain, n_tasks: 3}
"""
    import importlib.util

    for package in ("wandb", "mlflow"):
        if f"- {package}" in snippet and importlib.util.find_spec(package) is None:
            pytest.skip(f"the example needs {package}, not installed here")
    merged = {**load_yaml(base), **load_yaml(snippet)}
    spec = load_space(write_space(tmp_path, yaml.safe_dump(merged)))
    assert spec.cells


def test_benchmark_dependent_settings_are_checked_per_grid_cell(tmp_path):
    """pad32 and the conv net's input size depend on the benchmark: a space is checked against
    its grid's benchmarks, not the RunConfig default (the 8x8 digits)."""
    space = """
method: xdg
train: {model: conv, hidden: "64", iterations: 10, pad32: true}
search:
  lr: {type: loguniform, low: 1.0e-4, high: 1.0e-2}
grid: {benchmark: permuted-mnist, scenario: task, n_tasks: 3}
"""
    spec = load_space(write_space(tmp_path, space))
    assert spec.train["model"] == "conv" and spec.train["pad32"] is True
    digits = space.replace("permuted-mnist", "[permuted-mnist, permuted-digits]")
    assert main(["--space", str(write_space(tmp_path, digits, "d.yaml")), "--dry-run"]) == 2


def test_searched_settings_that_depend_on_each_other_are_checked_together(tmp_path, capsys):
    """A fuzzy stream's transition must fit in its iterations: with both the stream and the
    transition searched, 'fuzzy-boundaries' is valid if some searched transition fits (not only
    the default 1000), and refused when none does."""
    space = """
method: si
train: {hidden: "16", iterations: 200}
search:
  stream: {type: categorical, choices: [academic, fuzzy-boundaries]}
  transition: {type: categorical, choices: [50, 100]}
grid: {benchmark: split-digits, scenario: domain, n_tasks: 5}
"""
    spec = load_space(write_space(tmp_path, space))
    assert {p.name for p in spec.params} == {"stream", "transition"}
    wide = space.replace("[50, 100]", "[500, 1000]")
    assert main(["--space", str(write_space(tmp_path, wide, "w.yaml")), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "search.stream: 'fuzzy-boundaries' is not valid: transition (1000 steps)" in err


def test_a_space_takes_its_fixed_settings_from_a_registry_entry(tmp_path):
    """``from_entry``: the entry's method, cell, train settings and hyperparameters fill what
    the space leaves unset; searched names and the space's own keys win; seeds stay the
    sweep's; a hand-edited entry is refused with exit 2 before Ray."""
    from analysis.registry import entries_from
    from contract.registry import seal, write_entry

    fixture = Path(__file__).parents[1] / "analysis" / "fixtures" / "ewc-choice"
    entry = seal(next(e for e in entries_from([fixture])[0] if e["config"]["method"] == "ewc"))
    write_entry(tmp_path / "entry.yaml", entry)
    config = entry["config"]
    space = write_space(tmp_path, """
from_entry: entry.yaml
train: {batch_size: 16}
search:
  lambda: {type: loguniform, low: 1, high: 1.0e4}
budget: {trials: 2}
""")  # fmt: skip
    spec = load_space(space)
    assert spec.methods == ("ewc",)
    assert spec.cells[0].key == f"{config['benchmark']}/{config['scenario']}/{config['n_tasks']}"
    assert spec.train["lr"] == config["lr"] and spec.train["optimizer"] == config["optimizer"]
    assert spec.train["batch_size"] == 16  # the space's own value wins
    assert "data_seed" not in spec.train and "train_seed" not in spec.train
    assert "lambda" not in spec.hyperparams  # searched
    assert spec.hyperparams["fisher"] == config["method_params"]["fisher"]
    path = tmp_path / "entry.yaml"
    path.write_text(path.read_text().replace("optimizer: adam", "optimizer: sgd"))
    assert main(["--space", str(space), "--dry-run"]) == 2
