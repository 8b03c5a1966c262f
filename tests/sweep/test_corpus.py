"""A corpus of malformed spaces, each refused by the contract: exit 2, one line on stderr that
names the file and the key, nothing on stdout, before Ray starts.

The cases are generated from one valid base space (each replaces or adds one top-level key, or
is a whole text), so each is a single mistake a user can make; ``tests/sweep/malformed/`` holds
more, as files. ``test_corpus_size`` states how many there are.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from sweep.__main__ import main

BASE = {
    "method": "ewc",
    "search": "{lambda: {type: loguniform, low: 1, high: 1.0e4}}",
    "grid": "{benchmark: permuted-digits, scenario: domain, n_tasks: 3}",
}
S = "{lambda: {type: loguniform, low: 1, high: 1.0e4}}"  # the base search, for combinations


def space(**keys: str) -> str:
    """The base space with top-level keys replaced or added (value None removes a key)."""
    merged = {**BASE, **keys}
    return "".join(f"{k}: {v}\n" for k, v in merged.items() if v is not None)


def search(text: str) -> str:
    return space(search=text)


CASES: list[tuple[str, str | bytes, str]] = []  # (id, file content, key the message names)


def case(name: str, content: str | bytes, key: str) -> None:
    CASES.append((name, content, key))


# -- the file itself --------------------------------------------------------------------------
case("binary_nul", b"method: ewc\x00\x01\x02", "binary file")
case("not_utf8", b"method: ewc\nname: caf\xe9\n", "not UTF-8")
case("latin1_file", "méthod: ewc\n".encode("latin-1"), "not UTF-8")
case("too_large", "description: " + "x" * 1_100_000, "too large")
case("tab_indent", "method: ewc\ngrid:\n\tbenchmark: x\n", "cannot parse YAML")
case("unclosed_bracket", space(grid="[permuted-digits"), "cannot parse YAML")
case("unclosed_brace", space(search="{lambda: {type: uniform"), "cannot parse YAML")
case("two_documents", space() + "---\nmethod: si\n", "cannot parse YAML")
case("python_tag", space(name="!!python/object/apply:os.system [ls]"), "cannot parse YAML")
case("unknown_tag", space(name="!custom thing"), "cannot parse YAML")
case("top_level_list", "- method: ewc\n", "(top level)")
case("top_level_scalar", "ewc\n", "(top level)")
case("top_level_number", "42\n", "(top level)")
case("empty_file", "", "method: missing")
case("only_comments", "# nothing here\n", "method: missing")
case("duplicate_top_key", space() + "method: si\n", "appears twice")
case("duplicate_nested_key", space(grid="{benchmark: a, benchmark: b}"), "appears twice")
case("duplicate_search_key", search("{lr: {type: uniform, low: 0.1, high: 0.2}, lr: {}}"), "twice")
case("duplicate_dist_key", search("{lambda: {type: uniform, low: 1, low: 2, high: 3}}"), "twice")
case(
    "alias_bomb",
    "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
    "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    "e: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n" + space(),
    "aliases expand",
)
case("recursive_alias", "description: &a [*a]\n" + space(), "refers to the value that contains")
case("deep_list", space(description="[" * 40 + "]" * 40), "nesting deeper")
case("deep_mapping", space(train="".join("{a: " for _ in range(30)) + "1" + "}" * 30), "nesting")
case("huge_integer", space(budget="{trials: " + "9" * 5000 + "}"), "cannot be read")
case("complex_key", "? [a, b]\n: 1\n" + space(), "cannot parse YAML")
# -- name ---------------------------------------------------------------------------------------
for label, value in [
    ("dotdot", "'..'"), ("dot", "'.'"), ("parent_path", "../escape"), ("slash", "a/b"),
    ("empty", "''"), ("space", "'a b'"), ("number", "5"), ("bool", "true"), ("list", "[a]"),
    ("mapping", "{a: 1}"), ("too_long", "x" * 101), ("leading_dash", "-x"),
    ("hidden", ".hidden"), ("unicode", "café"), ("newline", '"a\\nb"'), ("null_byte", '"a\\0b"'),
]:  # fmt: skip
    case(f"name_{label}", space(name=value), "name:")
# -- description ------------------------------------------------------------------------------
for label, value in [("number", "5"), ("list", "[a, b]"), ("mapping", "{a: 1}")]:
    case(f"description_{label}", space(description=value), "description:")
# -- method -----------------------------------------------------------------------------------
for label, value in [
    ("missing", None), ("unknown", "ewk"), ("empty_list", "[]"), ("twice", "[ewc, ewc]"),
    ("mapping", "{ewc: 1}"), ("nested_list", "[[ewc]]"), ("number", "5"), ("bool", "true"),
    ("mixed", "[ewc, 5]"), ("null", "null"),
]:  # fmt: skip
    case(f"method_{label}", space(method=value), "method")
# -- train --------------------------------------------------------------------------------------
for label, value, key in [
    ("not_mapping", "[lr]", "train:"), ("scalar", "fast", "train:"),
    ("unknown_key", "{lrate: 0.1}", "train.lrate"), ("device", "{device: cuda}", "train.device"),
    ("benchmark", "{benchmark: split-mnist}", "train.benchmark"),
    ("data_root", "{data_root: /x}", "train.data_root"),
    ("lr_bool", "{lr: true}", "train.lr"), ("lr_text", "{lr: fast}", "train.lr"),
    ("lr_inf", "{lr: .inf}", "train.lr"), ("lr_nan", "{lr: .nan}", "train.lr"),
    ("lr_negative", "{lr: -0.1}", "train"), ("lr_list", "{lr: [0.1]}", "train.lr"),
    ("epochs_zero", "{epochs: 0}", "train"), ("epochs_float", "{epochs: 1.5}", "train.epochs"),
    ("epochs_bool", "{epochs: true}", "train.epochs"),
    ("epochs_absurd", "{epochs: 100000000}", "train.epochs"),
    ("iterations_absurd", "{iterations: 10000000000}", "train.iterations"),
    ("batch_overflow", "{batch_size: 100000000000000000000000}", "train.batch_size"),
    ("batch_zero", "{batch_size: 0}", "train"), ("hidden_nested", "{hidden: [[1]]}", "train"),
    ("hidden_text", "{hidden: 'a,b'}", "train"), ("hidden_mapping", "{hidden: {a: 1}}", "train"),
    ("optimizer_unknown", "{optimizer: rmsprop}", "train"),
    ("optimizer_list", "{optimizer: [adam]}", "train.optimizer"),
    ("val_fraction_one", "{val_fraction: 1.5}", "train"),
    ("momentum_one", "{momentum: 1}", "train"),
    ("reset_text", "{reset_optimizer: 'yes please'}", "train.reset_optimizer"),
    ("reset_number", "{reset_optimizer: 1}", "train.reset_optimizer"),
    ("seed_float", "{data_seed: 1.5}", "train.data_seed"),
    ("seed_overflow", "{train_seed: 100000000000000000000}", "train.train_seed"),
    ("epochs_and_iterations", "{epochs: 1, iterations: 10}", "train"),
    ("weight_decay_negative", "{weight_decay: -1}", "train"),
    ("class_il_units", "{class_il_units: some}", "train"),
]:  # fmt: skip
    case(f"train_{label}", space(train=value), key)
# -- hyperparams ------------------------------------------------------------------------------
for label, value, key in [
    ("not_mapping", "[lambda]", "hyperparams:"), ("unknown", "{lamda: 1}", "hyperparams.lamda"),
    ("other_method", "{temperature: 2}", "hyperparams.temperature"),
    ("lambda_bool", "{fisher_samples: true}", "hyperparams.fisher_samples"),
    ("lambda_inf", "{gamma: .inf}", "hyperparams.gamma"),
    ("lambda_negative", "{gamma: -1}", "hyperparams.gamma"),
    ("fisher_number", "{fisher: 5}", "hyperparams.fisher"),
    ("fisher_unknown", "{fisher: diagonal}", "hyperparams.fisher"),
    ("fisher_list", "{fisher: [batch]}", "hyperparams.fisher"),
    ("half_number", "{half: 1}", "hyperparams.half"),
    ("half_text", "{half: 'yes'}", "hyperparams.half"),
    ("merge_unknown", "{merge: average}", "hyperparams.merge"),
    ("samples_float", "{fisher_samples: 1.5}", "hyperparams.fisher_samples"),
]:  # fmt: skip
    case(f"hyperparams_{label}", space(hyperparams=value), key)
# -- search -----------------------------------------------------------------------------------
for label, value, key in [
    ("missing", None, "search"), ("empty", "{}", "search"), ("list", "[lambda]", "search:"),
    ("entry_scalar", "{lambda: 5}", "search.lambda"),
    ("entry_list", "{lambda: [1, 2]}", "search.lambda"),
    ("no_type", "{lambda: {low: 1, high: 2}}", "search.lambda.type"),
    ("unknown_type", "{lambda: {type: normal, low: 1, high: 2}}", "search.lambda.type"),
    ("type_list", "{lambda: {type: [uniform], low: 1, high: 2}}", "search.lambda.type"),
    ("type_mapping", "{lambda: {type: {a: 1}, low: 1, high: 2}}", "search.lambda.type"),
    ("no_low", "{lambda: {type: uniform, high: 2}}", "search.lambda.low"),
    ("no_high", "{lambda: {type: uniform, low: 1}}", "search.lambda.high"),
    ("inverted", "{lambda: {type: uniform, low: 5, high: 2}}", "search.lambda"),
    ("empty_range", "{lambda: {type: uniform, low: 2, high: 2}}", "search.lambda"),
    ("low_bool", "{lambda: {type: uniform, low: true, high: 2}}", "search.lambda.low"),
    ("high_bool", "{lambda: {type: uniform, low: 0, high: true}}", "search.lambda.high"),
    ("low_text", "{lambda: {type: uniform, low: '1', high: 2}}", "search.lambda.low"),
    ("low_minus_inf", "{lambda: {type: uniform, low: -.inf, high: 2}}", "search.lambda.low"),
    ("high_inf", "{lambda: {type: loguniform, low: 1, high: .inf}}", "search.lambda.high"),
    ("high_nan", "{lambda: {type: uniform, low: 1, high: .nan}}", "search.lambda.high"),
    ("high_huge", "{lambda: {type: uniform, low: 1, high: 1e400}}", "search.lambda.high"),
    ("log_zero", "{lambda: {type: loguniform, low: 0, high: 2}}", "search.lambda.low"),
    ("log_negative", "{lr: {type: loguniform, low: -1, high: 2}}", "search.lr.low"),
    ("int_float_low", "{epochs: {type: int, low: 0.5, high: 3}}", "search.epochs.low"),
    ("int_bool", "{epochs: {type: int, low: false, high: 3}}", "search.epochs.low"),
    ("step_zero", "{lr: {type: uniform, low: 0.1, high: 0.2, step: 0}}", "search.lr.step"),
    ("step_negative", "{lr: {type: uniform, low: 0.1, high: 0.2, step: -1}}", "search.lr.step"),
    ("step_too_big", "{lr: {type: uniform, low: 0.1, high: 0.2, step: 5}}", "search.lr.step"),
    ("step_not_divisor", "{lr: {type: uniform, low: 0.1, high: 0.2, step: 0.03}}", "search.lr"),
    ("step_bool", "{lr: {type: uniform, low: 0.1, high: 0.2, step: true}}", "search.lr.step"),
    ("step_with_log", "{epochs: {type: int, low: 1, high: 9, step: 2, log: true}}", "epochs.step"),
    ("log_text", "{epochs: {type: int, low: 1, high: 9, log: 'yes'}}", "search.epochs.log"),
    ("log_on_uniform", "{lr: {type: uniform, low: 0.1, high: 0.2, log: true}}", "search.lr.log"),
    ("choices_missing", "{fisher: {type: categorical}}", "search.fisher.choices"),
    ("choices_empty", "{fisher: {type: categorical, choices: []}}", "search.fisher.choices"),
    ("choices_text", "{fisher: {type: categorical, choices: batch}}", "search.fisher.choices"),
    ("choices_mapping", "{fisher: {type: categorical, choices: [{a: 1}]}}", "fisher.choices"),
    ("choices_nested", "{fisher: {type: categorical, choices: [[batch]]}}", "fisher.choices"),
    ("choices_twice", "{fisher: {type: categorical, choices: [batch, batch]}}", "fisher.choices"),
    ("choices_nan", "{lr: {type: categorical, choices: [0.1, .nan]}}", "search.lr.choices"),
    ("choices_inf", "{lr: {type: categorical, choices: [.inf]}}", "search.lr.choices"),
    ("choices_unknown", "{fisher: {type: categorical, choices: [batch, diag]}}", "search.fisher"),
    ("float_hp_text_choice", "{lambda: {type: categorical, choices: [a, b]}}", "lambda.choices"),
    ("float_hp_bool_choice", "{lambda: {type: categorical, choices: [true]}}", "lambda.choices"),
    ("bool_hp_number_choice", "{half: {type: categorical, choices: [1, 0]}}", "half.choices"),
    ("choice_hp_uniform", "{fisher: {type: uniform, low: 0, high: 1}}", "search.fisher.type"),
    ("int_hp_uniform", "{fisher_samples: {type: uniform, low: 1, high: 9}}", "samples.type"),
    ("outside_valid", "{gamma: {type: uniform, low: 0.5, high: 5}}", "search.gamma"),
    ("unknown_param", "{lamda: {type: uniform, low: 1, high: 2}}", "search.lamda"),
    ("other_method_param", "{temperature: {type: uniform, low: 1, high: 2}}", "temperature"),
    ("extra_dist_key", "{lambda: {type: uniform, low: 1, high: 2, mean: 1}}", "lambda.mean"),
    ("hidden_int", "{hidden: {type: int, low: 1, high: 5}}", "search.hidden.type"),
    ("setting_invalid", "{batch_size: {type: int, low: 0, high: 5}}", "search.batch_size"),
    ("int_setting_text", '{epochs: {type: categorical, choices: ["3 2"]}}', "epochs.choices"),
    ("int_setting_float_choice", "{epochs: {type: categorical, choices: [1.5]}}", "epochs.choices"),
    ("float_setting_bool_choice", "{lr: {type: categorical, choices: [true]}}", "lr.choices"),
    ("key_number", "{1: {type: uniform, low: 1, high: 2}}", "search.1"),
    ("key_null", "{null: {type: uniform, low: 1, high: 2}}", "search.None"),
]:  # fmt: skip
    case(f"search_{label}", search(value) if value is not None else space(search=None), key)
case(
    "search_and_train",
    space(train="{lr: 0.1}", search="{lr: {type: uniform, low: 0.1, high: 1}}"),
    "search.lr",
)
case("search_and_fixed", space(hyperparams="{lambda: 5}"), "search.lambda")
# -- grid -------------------------------------------------------------------------------------
for label, value, key in [
    ("missing", None, "grid.benchmark"), ("not_mapping", "[permuted-digits]", "grid:"),
    ("no_scenario", "{benchmark: permuted-digits, n_tasks: 3}", "grid.scenario"),
    ("no_tasks", "{benchmark: permuted-digits, scenario: domain}", "grid.n_tasks"),
    ("benchmark_unknown", "{benchmark: permuted-cifar, scenario: domain, n_tasks: 3}", "benchmark"),
    ("benchmark_number", "{benchmark: 5, scenario: domain, n_tasks: 3}", "grid.benchmark"),
    ("benchmark_nested", "{benchmark: [[split-mnist]], scenario: domain, n_tasks: 3}", "benchmark"),
    ("benchmark_mapping", "{benchmark: {a: 1}, scenario: domain, n_tasks: 3}", "grid.benchmark"),
    ("benchmark_empty", "{benchmark: [], scenario: domain, n_tasks: 3}", "grid.benchmark"),
    ("scenario_unknown", "{benchmark: permuted-digits, scenario: online, n_tasks: 3}", "scenario"),
    ("scenario_bool", "{benchmark: permuted-digits, scenario: no, n_tasks: 3}", "grid.scenario"),
    ("tasks_zero", "{benchmark: permuted-digits, scenario: domain, n_tasks: 0}", "grid.n_tasks"),
    ("tasks_negative", "{benchmark: permuted-digits, scenario: domain, n_tasks: -2}", "n_tasks"),
    ("tasks_float", "{benchmark: permuted-digits, scenario: domain, n_tasks: 2.0}", "n_tasks"),
    ("tasks_bool", "{benchmark: permuted-digits, scenario: domain, n_tasks: true}", "n_tasks"),
    ("tasks_text", "{benchmark: permuted-digits, scenario: domain, n_tasks: '3'}", "n_tasks"),
    ("tasks_absurd", "{benchmark: permuted-digits, scenario: domain, n_tasks: 1000000}", "tasks"),
    ("tasks_empty", "{benchmark: permuted-digits, scenario: domain, n_tasks: []}", "n_tasks"),
    ("tasks_inf", "{benchmark: permuted-digits, scenario: domain, n_tasks: .inf}", "n_tasks"),
    ("split_uneven", "{benchmark: split-digits, scenario: domain, n_tasks: 3}", "grid.n_tasks"),
    ("cell_twice", "{benchmark: permuted-digits, scenario: [domain, domain], n_tasks: 3}", "grid"),
    ("extra_key", "{benchmark: permuted-digits, scenario: domain, n_tasks: 3, seed: 1}", "seed"),
]:  # fmt: skip
    case(f"grid_{label}", space(grid=value), key)
# -- objective --------------------------------------------------------------------------------
for label, value, key in [
    ("test_metric", "{metric: test_avg_acc}", "objective.metric"),
    ("unknown_metric", "{metric: val_accuracy}", "objective.metric"),
    ("metric_mapping", "{metric: {a: 1}}", "objective.metric"),
    ("metric_nested", "{metric: [[val_avg_acc]]}", "objective.metric"),
    ("metric_empty", "{metric: []}", "objective.metric"),
    ("metric_twice", "{metric: [val_avg_acc, val_avg_acc]}", "objective.metric"),
    ("mode_unknown", "{metric: val_avg_acc, mode: maximise}", "objective.mode"),
    ("mode_number", "{metric: val_avg_acc, mode: 1}", "objective.mode"),
    ("mode_count", "{metric: val_avg_acc, mode: [max, min]}", "objective.mode"),
    ("mode_nested", "{metric: val_avg_acc, mode: [[max]]}", "objective.mode"),
    ("not_mapping", "val_avg_acc", "objective:"),
    ("unknown_key", "{metrics: x}", "objective.metrics"),
]:  # fmt: skip
    case(f"objective_{label}", space(objective=value), key)
case("objective_no_validation", space(train="{val_fraction: 0}"), "train.val_fraction")
# -- sampler ----------------------------------------------------------------------------------
for label, value, key in [
    ("unknown", "tpes", "sampler"), ("number", "5", "sampler"), ("list", "[tpe]", "sampler"),
    ("name_list", "{name: [tpe]}", "sampler"), ("seed_negative", "{name: tpe, seed: -1}", "seed"),
    ("seed_bool", "{name: tpe, seed: true}", "sampler.seed"),
    ("seed_huge", "{name: tpe, seed: 10000000000000}", "sampler.seed"),
    ("seed_float", "{name: tpe, seed: 1.5}", "sampler.seed"),
    ("unknown_key", "{name: tpe, seeds: 1}", "sampler.seeds"),
    ("grid_continuous", "grid", "search.lambda"),
]:  # fmt: skip
    case(f"sampler_{label}", space(sampler=value), key)
case("sampler_cmaes_two_objectives", space(sampler="cmaes",
     objective="{metric: [val_avg_acc, val_forgetting]}"), "sampler")  # fmt: skip
# -- budget -----------------------------------------------------------------------------------
for label, value, key in [
    ("zero", "{trials: 0}", "budget.trials"), ("negative", "{trials: -5}", "budget.trials"),
    ("float", "{trials: 1.5}", "budget.trials"), ("bool", "{trials: true}", "budget.trials"),
    ("text", "{trials: '10'}", "budget.trials"), ("absurd", "{trials: 10000000}", "budget.trials"),
    ("inf", "{trials: .inf}", "budget.trials"), ("time_zero", "{time_limit_s: 0}", "time_limit_s"),
    ("time_negative", "{time_limit_s: -1}", "time_limit_s"),
    ("time_inf", "{time_limit_s: .inf}", "time_limit_s"),
    ("time_bool", "{time_limit_s: true}", "time_limit_s"),
    ("time_text", "{time_limit_s: 1h}", "time_limit_s"),
    ("time_absurd", "{time_limit_s: 1e12}", "time_limit_s"),
    ("unknown_key", "{trails: 5}", "budget.trails"), ("not_mapping", "10", "budget:"),
]:  # fmt: skip
    case(f"budget_{label}", space(budget=value), key)
case(
    "budget_total_absurd",
    space(budget="{trials: 100000}", grid="{benchmark: [permuted-digits, permuted-mnist, "
          "permuted-fashion], scenario: [task, domain, class], n_tasks: [2, 3, 4, 6]}"),
    "budget.trials",
)  # fmt: skip
# -- early stopping ---------------------------------------------------------------------------
for label, value, key in [
    ("true", "true", "early_stopping"), ("text", "asha", "early_stopping"),
    ("list", "[asha]", "early_stopping"), ("scheduler", "{scheduler: hyperband}", "scheduler"),
    ("scheduler_mapping", "{scheduler: {a: 1}}", "early_stopping.scheduler"),
    ("grace_zero", "{grace_tasks: 0}", "grace_tasks"),
    ("grace_bool", "{grace_tasks: true}", "grace"),
    ("grace_long", "{grace_tasks: 3}", "early_stopping.grace_tasks"),
    ("factor_one", "{reduction_factor: 1}", "reduction_factor"),
    ("factor_half", "{reduction_factor: 0.5}", "reduction_factor"),
    ("factor_inf", "{reduction_factor: .inf}", "reduction_factor"),
    ("factor_absurd", "{reduction_factor: 1000000}", "reduction_factor"),
    ("unknown_key", "{grace: 1}", "early_stopping.grace"),
]:  # fmt: skip
    case(f"early_{label}", space(early_stopping=value), key)
case("early_on_forgetting", space(early_stopping="{scheduler: asha}",
     objective="{metric: [val_forgetting, val_avg_acc]}"), "objective.metric")  # fmt: skip
# -- resources --------------------------------------------------------------------------------
for label, value, key in [
    ("cpus_zero", "{cpus: 0}", "resources.cpus"), ("cpus_negative", "{cpus: -1}", "cpus"),
    ("cpus_tiny", "{cpus: 0.0001}", "resources.cpus"), ("cpus_bool", "{cpus: true}", "cpus"),
    ("cpus_inf", "{cpus: .inf}", "resources.cpus"), ("cpus_text", "{cpus: '2'}", "cpus"),
    ("gpus_negative", "{gpus: -1}", "resources.gpus"), ("gpus_fraction", "{gpus: 1.5}", "gpus"),
    ("gpus_tiny", "{gpus: 0.001}", "resources.gpus"), ("gpus_bool", "{gpus: true}", "gpus"),
    ("gpus_nan", "{gpus: .nan}", "resources.gpus"),
    ("concurrent_zero", "{max_concurrent: 0}", "max_concurrent"),
    ("concurrent_float", "{max_concurrent: 1.5}", "max_concurrent"),
    ("concurrent_bool", "{max_concurrent: true}", "max_concurrent"),
    ("unknown_key", "{memory: 4}", "resources.memory"), ("not_mapping", "[1]", "resources:"),
    ("population_zero", "{population: 0}", "resources.population"),
    ("population_negative", "{population: -4}", "resources.population"),
    ("population_float", "{population: 2.5}", "resources.population"),
    ("population_bool", "{population: true}", "resources.population"),
    ("population_text", "{population: '16'}", "resources.population"),
    ("population_huge", "{population: 100000}", "resources.population"),
]:  # fmt: skip
    case(f"resources_{label}", space(resources=value), key)
# -- final phase ------------------------------------------------------------------------------
for label, value, key in [
    ("top_negative", "{top_k: -1}", "final.top_k"), ("top_bool", "{top_k: true}", "top_k"),
    ("top_beyond_budget", "{top_k: 50}", "final.top_k"), ("seeds_zero", "{seeds: 0}", "seeds"),
    ("seeds_absurd", "{seeds: 100000}", "final.seeds"), ("seeds_float", "{seeds: 1.5}", "seeds"),
    ("seed_base_negative", "{seed_base: -1}", "seed_base"),
    ("seed_base_overflow", "{seed_base: 9223372036854775807}", "final.seed_base"),
    ("unknown_key", "{topk: 1}", "final.topk"), ("not_mapping", "3", "final:"),
]:  # fmt: skip
    case(f"final_{label}", space(final=value), key)
# -- loggers ----------------------------------------------------------------------------------
for label, value in [
    ("unknown", "[tensorbord]"), ("number", "5"), ("nested", "[[tensorboard]]"),
    ("bad_setting", "[{tensorboard: {dir: x}}]"), ("twice", "[csv, csv]"),
    ("two_in_one", "[{csv: {}, json: {}}]"), ("settings_list", "[{csv: [a]}]"),
]:  # fmt: skip
    case(f"loggers_{label}", space(loggers=value), "loggers")
for package in ("wandb", "mlflow"):
    if importlib.util.find_spec(package) is None:
        case(f"loggers_{package}_missing", space(loggers=f"[{package}]"), "loggers")
# -- other top-level keys ---------------------------------------------------------------------
case("unknown_top_key", space(serach=S), "serach")
case("top_key_number", space() + "5: x\n", "5: unknown key")
case("top_key_bool", space() + "true: x\n", "True: unknown key")


def test_corpus_size():
    files = list((Path(__file__).parent / "malformed").glob("*.yaml"))
    assert len(CASES) >= 150, len(CASES)
    assert len({c[0] for c in CASES}) == len(CASES)  # unique ids
    print(f"{len(CASES)} generated malformed spaces + {len(files)} files")


@pytest.mark.parametrize(("name", "content", "key"), CASES, ids=[c[0] for c in CASES])
def test_malformed_space_is_refused(tmp_path, capsys, name, content, key):
    path = tmp_path / f"{name}.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    blocked = {m: sys.modules.pop(m) for m in list(sys.modules) if m.split(".")[0] == "ray"}
    sys.modules["ray"] = None  # any import of Ray now fails: refusals must come before it
    try:
        status = main(["--space", str(path), "--out", str(tmp_path / "out")])
    finally:
        del sys.modules["ray"]
        sys.modules.update(blocked)
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert status == 2, captured
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: {path.name}: ") or lines[0].startswith("error: "), lines
    assert path.name in lines[0]
    assert key in lines[0], lines[0]
    assert captured.out == ""
    assert not (tmp_path / "out").exists()  # nothing written
