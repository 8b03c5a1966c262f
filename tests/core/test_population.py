"""Population training: member i reproduces the single-run trainer given config i (the contract of
docs/population.md), stacked optimizers equal torch.optim, divergence, early stopping, per-trial
fallback."""

import logging

import numpy as np
import pytest
import torch
from helpers import flip_tolerance, samples_apart, split_sizes

import cl_core.population.trainer as population_trainer
import cl_core.trainer as single_trainer
from cl_core.config import RunConfig
from cl_core.methods import METHODS, Method
from cl_core.methods.ewc import EWC
from cl_core.params import HyperParam
from cl_core.population import (
    POPULATION_METHODS,
    group_configs,
    population_problem,
    run_population,
    sharing_problem,
    train_population,
)
from cl_core.population.optim import make_stacked_optimizer
from cl_core.trainer import RunResult, train

# our grads are strided views of one tensor on purpose (cl_core/population/network.py)
pytestmark = pytest.mark.filterwarnings("ignore:grad and param do not obey the gradient layout")

DIGITS = dict(benchmark="permuted-digits", scenario="domain", n_tasks=3, hidden=(32,), device="cpu")
SPLIT = dict(DIGITS, benchmark="split-digits", n_tasks=5)


def _single(cfg: RunConfig) -> RunResult:
    return RunResult.from_reports(cfg.validated(), list(train(cfg)))


def _configs(base: dict, members: list[dict]) -> list[RunConfig]:
    return [RunConfig(**{**base, **m}) for m in members]


def _torch_optimizer(cfg: RunConfig, param) -> torch.optim.Optimizer:
    """torch.optim's reference (single-tensor) implementation with ``cfg``'s settings."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            [param], cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, foreach=False
        )
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls([param], cfg.lr, weight_decay=cfg.weight_decay, foreach=False)


@pytest.mark.parametrize("kind", ["adam", "adamw", "sgd"])
def test_stacked_optimizers_match_torch_optim_step_by_step(kind):
    settings = [(1e-3, 0.0, 0.9), (3e-2, 1e-2, 0.5), (0.1, 1e-4, 0.0)]
    cfgs = [
        RunConfig(optimizer=kind, lr=lr, weight_decay=wd, momentum=mu) for lr, wd, mu in settings
    ]
    gen = torch.Generator().manual_seed(0)
    theta = torch.randn(3, 200, generator=gen)
    singles = [torch.nn.Parameter(row.clone()) for row in theta]
    torch_optims = [_torch_optimizer(c, p) for c, p in zip(cfgs, singles, strict=True)]
    stacked = make_stacked_optimizer(cfgs, theta)
    for _ in range(20):
        grad = torch.randn(3, 200, generator=gen)
        stacked.step(theta, grad.clone())
        for i, (p, opt) in enumerate(zip(singles, torch_optims, strict=True)):
            p.grad = grad[i].clone()
            opt.step()
            torch.testing.assert_close(theta[i], p.detach(), rtol=1e-6, atol=1e-8)


def _record_parameters(monkeypatch) -> tuple[list, dict]:
    """Record each run's parameters whenever it is evaluated (after every task)."""
    single, stacked = [], {}
    original_eval = single_trainer._evaluate

    def eval_single(ctx, model, method, learned, loss, start):
        single.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
        return original_eval(ctx, model, method, learned, loss, start)

    original_group_eval = population_trainer._StackedGroup._evaluate

    def eval_group(self, learned, losses, start):
        for pos, member in enumerate(self.ids):
            stacked.setdefault(member, []).append(self.net.theta[pos].detach().clone())
        return original_group_eval(self, learned, losses, start)

    monkeypatch.setattr(single_trainer, "_evaluate", eval_single)
    monkeypatch.setattr(population_trainer._StackedGroup, "_evaluate", eval_group)
    return single, stacked


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("finetune", [{}, {}]),
        ("ewc", [{"lambda": 1e3, "fisher": "empirical"}, {"lambda": 10.0, "fisher": "batch"}]),
        ("si", [{"c": 1.0}, {"c": 10.0, "epsilon": 0.01}]),
        ("lwf", [{"temperature": 2.0}, {"temperature": 1.0, "scaling": "t2"}]),
    ],
)
def test_member_parameters_after_50_steps_equal_single_run(monkeypatch, method, params):
    single, stacked = _record_parameters(monkeypatch)
    base = dict(DIGITS, n_tasks=2, iterations=50, epochs=None, batch_size=16, method=method)
    cfgs = [
        RunConfig(**{**base, "train_seed": i, "lr": 1e-3 * (i + 1)}, method_params=p)
        for i, p in enumerate(params)
    ]
    run_population(cfgs)
    for i, cfg in enumerate(cfgs):
        single.clear()
        _single(cfg)
        assert len(single) == len(stacked[i]) == 3  # untrained, after 50 steps, after 100
        for ours, theirs in zip(stacked[i], single, strict=True):
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
        assert not torch.equal(stacked[i][2], stacked[i][1])  # it did train


# every method with a population form; members differ in lr, weight decay, seeds and every
# hyperparameter the form allows to differ (EWC: Fisher kinds and merges mixed in one population)
CONTRACT_CASES = {
    "finetune-permuted": (
        dict(DIGITS, method="finetune", optimizer="adamw", weight_decay=1e-4),
        [{"lr": 1e-3}, {"lr": 3e-3, "train_seed": 1, "weight_decay": 0.0}],
    ),
    "joint-split-task": (
        dict(SPLIT, scenario="task", method="joint"),
        [{"train_seed": 0}, {"train_seed": 1, "lr": 3e-3}],
    ),
    "ewc-permuted-kinds": (
        dict(DIGITS, method="ewc", epochs=2, batch_size=32),
        [
            {"method_params": {"lambda": 100.0, "fisher": "empirical", "merge": "sum"}},
            {"method_params": {"lambda": 10.0, "fisher": "expected", "merge": "mean"}},
            {
                "method_params": {"lambda": 1e3, "fisher": "sampled", "merge": "online"},
                "train_seed": 1,
            },
            {
                "method_params": {
                    "lambda": 1e4,
                    "fisher": "batch",
                    "half": False,
                    "fisher_samples": 0,
                    "merge": "online",
                    "gamma": 0.5,
                },
                "lr": 3e-4,
            },
        ],
    ),
    "ewc-split-class-separate": (
        dict(SPLIT, scenario="class", method="ewc", optimizer="sgd", lr=0.02),
        [
            {"method_params": {"merge": "separate", "fisher": "empirical", "lambda": 10.0}},
            {"method_params": {"merge": "separate", "fisher": "batch"}, "momentum": 0.0},
        ],
    ),
    "si-split-class": (
        dict(SPLIT, scenario="class", method="si", class_il_units="seen"),
        [
            {"method_params": {"c": 10.0}},
            {"method_params": {"c": 1e4, "epsilon": 0.01}, "train_seed": 1},
        ],
    ),
    "lwf-split-task": (
        dict(SPLIT, scenario="task", method="lwf"),
        [
            {"method_params": {"temperature": 2.0}},
            {"method_params": {"temperature": 4.0, "weight": 3.0, "scaling": "t2"}},
            {"method_params": {"scaling": "none"}, "train_seed": 2},
        ],
    ),
    "lwf-split-task-warmup": (
        dict(SPLIT, scenario="task", method="lwf"),
        [
            {"method_params": {"warmup_epochs": 1}},
            {"method_params": {"warmup_epochs": 1, "temperature": 4.0}, "lr": 3e-3},
        ],
    ),
    "lwf-permuted": (
        dict(DIGITS, method="lwf", epochs=2),
        [{"method_params": {"weight": 1.0}}, {"method_params": {"weight": 0.3}, "lr": 3e-3}],
    ),
}


@pytest.mark.parametrize("case", sorted(CONTRACT_CASES))
def test_members_reproduce_single_runs_accuracy_matrices(case):
    base, members = CONTRACT_CASES[case]
    cfgs = _configs(base, members)
    results = run_population(cfgs)
    for cfg, ours in zip(cfgs, results, strict=True):
        theirs = _single(cfg)
        assert ours.status == theirs.status == "completed"
        sizes = split_sizes(cfg)
        for split in ("val", "test"):
            a, b = getattr(ours, f"acc_{split}"), getattr(theirs, f"acc_{split}")
            assert a.shape == b.shape == (cfg.n_tasks + 1, cfg.n_tasks)
            # in samples of each task's split (tests/helpers.py: what float32 kernels may flip)
            apart = samples_apart(a, b, sizes[split])
            assert (apart <= [flip_tolerance(n) for n in sizes[split]]).all(), (split, apart)
        assert np.allclose(ours.train_loss[1:], theirs.train_loss[1:], rtol=1e-3)
    # the members really differ (a population is not one config M times)
    assert not np.array_equal(results[0].acc_test, results[1].acc_test)


DIVERGE = dict(DIGITS, epochs=3, optimizer="sgd", lr=0.05, method="ewc")


def test_a_diverging_member_is_reported_and_leaves_the_others_bitwise_unchanged():
    good = [RunConfig(**DIVERGE, train_seed=s, method_params={"lambda": 10.0}) for s in (0, 1)]
    # an over-strong penalty with plain SGD explodes on task 1
    bad = RunConfig(**DIVERGE, train_seed=5, method_params={"lambda": 1e13})
    calm = RunConfig(**{**DIVERGE, "lr": 0.01}, train_seed=5, method_params={"lambda": 1.0})
    with_bad = run_population([good[0], bad, good[1]])
    with_calm = run_population([good[0], calm, good[1]])
    assert [r.status for r in with_bad] == ["completed", "diverged", "completed"]
    assert "lower the learning rate" in with_bad[1].message
    assert with_calm[1].status == "completed"
    for i in (0, 2):
        assert np.array_equal(with_bad[i].acc_test, with_calm[i].acc_test)
        assert np.array_equal(with_bad[i].acc_val, with_calm[i].acc_val)
        assert with_bad[i].train_loss == with_calm[i].train_loss
    # the diverged member's reports are the single run's
    alone = _single(bad)
    assert alone.status == "diverged" and len(alone.train_loss) == len(with_bad[1].train_loss)
    assert np.array_equal(alone.acc_test, with_bad[1].acc_test)


def test_stopped_member_trains_no_further_task_and_others_continue_unchanged():
    cfgs = [RunConfig(**DIGITS, method="ewc", train_seed=s, lr=1e-3 * (s + 1)) for s in range(3)]
    full = run_population(cfgs)
    population = train_population(cfgs)
    seen: dict[int, list[int]] = {i: [] for i in range(3)}
    reports = {i: [] for i in range(3)}
    for batch in population:
        for i, report in batch.items():
            seen[i].append(report.tasks_learned)
            reports[i].append(report)
        if 1 in batch and batch[1].tasks_learned == 1:
            population.stop(1)
    assert seen == {0: [0, 1, 2, 3], 1: [0, 1], 2: [0, 1, 2, 3]}
    assert population.status == {0: "completed", 1: "stopped", 2: "completed"}
    for i in (0, 2):
        result = RunResult.from_reports(cfgs[i], reports[i])
        assert np.array_equal(result.acc_test, full[i].acc_test)
    partial = RunResult.from_reports(cfgs[1], reports[1])
    assert np.array_equal(partial.acc_test, full[1].acc_test[:2])


class Unbatched(Method):
    """A method no population form knows (as any method added before its population form)."""

    name = "unbatched"


def test_a_method_without_population_form_runs_per_trial_with_a_one_line_notice(
    monkeypatch, caplog
):
    monkeypatch.setitem(METHODS, "unbatched", Unbatched)
    pop_cfg = RunConfig(**DIGITS, method="finetune")
    other = RunConfig(**DIGITS, method="unbatched", train_seed=1)
    assert population_problem(pop_cfg) is None
    assert population_problem(other) == "method 'unbatched' has no population form"
    with caplog.at_level(logging.WARNING, logger="cl_core.population"):
        results = run_population([pop_cfg, other, pop_cfg])
    notices = [r.getMessage() for r in caplog.records if r.name == "cl_core.population"]
    assert notices == [
        "population: 1 config(s) [1] run per trial: method 'unbatched' has no population form"
    ]
    # the fallback member is the single run itself, in step with the population
    assert np.array_equal(results[1].acc_test, _single(other).acc_test)
    assert np.array_equal(results[0].acc_test, results[2].acc_test)
    assert results[1].status == "completed"


def test_a_hyperparameter_value_the_form_does_not_handle_falls_back(monkeypatch):
    form = POPULATION_METHODS["ewc"]
    params = {name: hp.default for name, hp in EWC.hyperparams.items()}
    assert form.problem({**params, "fisher": "batch"}) is None
    assert form.problem({**params, "fisher": "predicted"}) == (
        "ewc fisher='predicted' has no population form"
    )
    # an option added to the method later: fine at its default, per trial otherwise
    monkeypatch.setitem(EWC.hyperparams, "variant", HyperParam("variant", "int", 0, "new"))
    assert form.problem({**params, "variant": 0}) is None
    assert form.problem({**params, "variant": 1}) == "ewc variant=1 has no population form"


def test_sharing_rules_name_what_differs():
    a = RunConfig(**DIGITS, method="ewc").validated()
    faster = RunConfig(**{**DIGITS, "lr": 0.1}, method="ewc", train_seed=4).validated()
    assert sharing_problem([a, faster]) is None
    b = RunConfig(**{**DIGITS, "hidden": (64,)}, method="ewc").validated()
    assert sharing_problem([a, faster, b]) == (
        "config 2: hidden differs ((64,) vs (32,)); members must share it"
    )
    c = RunConfig(**DIGITS, method="ewc", method_params={"merge": "separate"}).validated()
    assert sharing_problem([a, c]) == (
        "config 1: ewc settings (('separate_terms', True),) differ from "
        "(('separate_terms', False),); members must share them"
    )
    d = RunConfig(**DIGITS, method="si").validated()
    assert (
        sharing_problem([a, d]) == "config 1: method differs ('si' vs 'ewc'); members must share it"
    )
    groups = group_configs([a, b, a, c, d, faster])
    assert groups == [([0, 2, 5], None), ([1], None), ([3], None), ([4], None)]


def test_population_speed_benchmark_runs_on_the_device_code_path(capsys):
    """The benchmark's CPU run takes the code path ``--device cuda`` takes on a GPU."""
    from benchmarks.population_speed import main

    main(["--sizes", "2", "--repeats", "1", "--per-trial", "1", "--epochs", "1", "--tasks", "2"])
    out = capsys.readouterr().out
    assert "N=   2: population" in out and "max |Δ final acc| 0.00 pts" in out
    assert "| 2 |" in out
    main(["--compare-backends", "--sizes", "2", "--repeats", "1", "--epochs", "1", "--tasks", "2"])
    assert "vmap/bmm x" in capsys.readouterr().out
