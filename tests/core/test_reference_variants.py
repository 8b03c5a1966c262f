"""The three-scenario reference's variants (issue 11), checked against hand computations:
LwF's padded distillation (both normalisations) and 1/t weighting, SI's total-loss path integral
without clipping, and the argmax-label ("predicted") Fisher over the active units. Where a
variant has a float hyperparameter, members of one population differ in it and each member's
number is checked against the hand computation with its own value."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import make_method, member_mlp, mlp_names, population_setup
from torch import nn

from cl_core.context import Batch
from cl_core.methods.fisher import fisher_diagonal
from cl_core.optim import make_optimizer
from cl_core.trainer import RunResult, train

OLD = [[1.0, -1.0, 3.0, 0.5], [0.0, 2.0, -1.0, 1.0]]  # the old model's logits (4 units)
NEW = [[0.2, 0.4, -0.6, 1.0], [1.5, -0.5, 0.3, 0.0]]  # the current model's logits
TARGET = [2, 3]  # both samples belong to task 1 (classes 2, 3)
TEMPERATURES = [2.0, 1.0, 4.0]  # one per member


class FixedLogits(nn.Module):
    """A real module whose output is a given logits table (one row per sample) for every
    member: (M, N, units)."""

    def __init__(self, logits: list[list[float]], members: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(logits).expand(members, -1, -1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[:, : x.shape[-2]]


def _lwf_loss(scenario: str, temperatures=TEMPERATURES, **params) -> list[float]:
    """LwF's loss on task 1 of a 2-classes-per-task digits sequence, for the toy logits: one
    value per member, member m with temperature ``temperatures[m]``."""
    extra = {"class_il_units": "seen"} if scenario == "class" else {}
    members = [{"train_seed": m} for m in range(len(temperatures))]
    _, ctx, _ = population_setup(
        members, benchmark="split-digits", scenario=scenario, n_tasks=5, **extra
    )
    ctx.seen_tasks = 2
    lwf = make_method("lwf", ctx, *({**params, "temperature": t} for t in temperatures))
    m = len(temperatures)
    lwf.old = FixedLogits(OLD, m)
    x = torch.zeros(m, 2, 64)
    target = torch.tensor(TARGET) - (2 if scenario != "class" else 0)
    batch = Batch(x, target.expand(m, -1), 1, torch.tensor(TARGET).expand(m, -1))
    return lwf.loss(FixedLogits(NEW, m), batch, 1).tolist()


def _softmax(z):
    e = np.exp(z - np.max(z, axis=1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _log_softmax(z):
    return np.log(_softmax(z))


def test_lwf_padded_distillation_by_hand_class_il():
    """Class-IL, task 1 of 5, seen units 0..3: p̃ = [softmax(old[:2]/T), 0, 0] against
    log_softmax(new[:4]/T); (1/2)·CE + (1/2)·T²·KD with KD averaged over units (2019) or summed."""
    old, new = np.array(OLD), np.array(NEW)
    ce = -_log_softmax(new)[[0, 1], TARGET].mean()
    reference = dict(scaling="t2", weighting="one-over-t")
    got_mean = _lwf_loss("class", distill="padded-unit-mean", **reference)
    got_sum = _lwf_loss("class", distill="padded-unit-sum", **reference)
    default = _lwf_loss("class")
    for m, temp in enumerate(TEMPERATURES):
        p = np.concatenate([_softmax(old[:, :2] / temp), np.zeros((2, 2))], axis=1)
        cross = -(p * _log_softmax(new / temp))  # (samples, 4 units)
        kd_mean, kd_sum = cross.mean(), cross.sum(1).mean()
        assert got_mean[m] == pytest.approx(0.5 * ce + 0.5 * temp**2 * kd_mean, rel=1e-6)
        assert got_sum[m] == pytest.approx(0.5 * ce + 0.5 * temp**2 * kd_sum, rel=1e-6)
        assert kd_sum == pytest.approx(4 * kd_mean)  # the forms differ by the 4 active units
        # today's default: old units only on both sides, CE + 1 · KD (class-IL, "tasks")
        kd_old = -(_softmax(old[:, :2] / temp) * _log_softmax(new[:, :2] / temp)).sum(1).mean()
        assert default[m] == pytest.approx(ce + kd_old, rel=1e-6)


def test_lwf_padded_distillation_task_il_averages_unit_means_over_old_heads():
    """Task-IL on task 1: one previous head (units 0, 1), nothing padded; the unit mean halves
    the per-scenario term; additive weighting with m = T²."""
    old, new = np.array(OLD), np.array(NEW)
    ce = -_log_softmax(new[:, 2:4])[[0, 1], [0, 1]].mean()
    got = _lwf_loss("task", distill="padded-unit-mean", scaling="t2")
    per_scenario = _lwf_loss("task", distill="per-scenario", scaling="t2")
    for m, temp in enumerate(TEMPERATURES):
        per_head = -(_softmax(old[:, :2] / temp) * _log_softmax(new[:, :2] / temp)).sum(1).mean()
        assert got[m] == pytest.approx(ce + temp**2 * per_head / 2, rel=1e-6)
        assert per_scenario[m] == pytest.approx(ce + temp**2 * per_head, rel=1e-6)


def test_si_total_loss_path_integral_for_plain_sgd():
    """With SGD (Δθ = −η·g) on the second task, the reference variant integrates the gradient of
    the whole loss, penalty included: ω = Σ_steps η·g_total²; the default integrates the task
    loss alone: ω = Σ_steps η·g_task·g_total, with g_total = g_task + 2cΩ(θ−θ*), each member
    with its own c."""
    paths = {}
    cs = [5.0, 0.5, 20.0]
    for variant in ("total-loss-unclamped", "task-loss-clamped"):
        members = [{"train_seed": m} for m in range(3)]
        cfgs, ctx, model = population_setup(members, optimizer="sgd", lr=0.1, momentum=0.0)
        si = make_method("si", ctx, *({"c": c, "path_integral": variant} for c in cs))
        gen = torch.Generator().manual_seed(0)
        si.importance = torch.rand(model.theta.shape, generator=gen)
        si.anchor = model.theta.detach() + 0.05  # a penalty with a gradient
        opt = make_optimizer(cfgs, model.theta)
        si.before_task(model, 1)
        expected = torch.zeros_like(model.theta)
        twice_c = 2 * torch.tensor(cs).unsqueeze(1)
        for batch in ctx.batches([1], 256):
            model.zero_grad_()
            si.loss(model, batch, 1).sum().backward()
            g_task = model.grad.clone()  # the cross-entropy's gradient alone
            g_total = g_task + twice_c * si.importance * (model.theta - si.anchor)
            expected += 0.1 * g_total * (g_total if variant == "total-loss-unclamped" else g_task)
            si.before_step(model, 1)
            torch.testing.assert_close(model.grad, g_total, rtol=1e-5, atol=1e-8)
            opt.step(*model.optimized())
            si.after_step(model, batch, 1)
        torch.testing.assert_close(si.path, expected, rtol=1e-4, atol=1e-9)
        paths[variant] = si.path
    assert not torch.allclose(paths["total-loss-unclamped"], paths["task-loss-clamped"])


@pytest.mark.parametrize(
    ("variant", "clipped"), [("total-loss-unclamped", False), ("task-loss-clamped", True)]
)
def test_si_importance_clipping(variant, clipped):
    """Ω = ω/(Δ²+ε) = −0.3/(0.5² + ε): kept negative by the reference, clipped at 0 by default;
    member 0 with ε = 0.1 (−0.3/0.35), member 1 with ε = 0.05 (−0.3/0.3 = −1)."""
    _, ctx, model = population_setup([{}, {"train_seed": 1}])
    epsilons = [0.1, 0.05]
    si = make_method("si", ctx, *({"epsilon": e, "path_integral": variant} for e in epsilons))
    with torch.no_grad():
        model.theta.fill_(0.0)
    si.before_task(model, 0)
    si.path = torch.full_like(model.theta, -0.3)
    with torch.no_grad():
        model.theta.fill_(0.5)
    si.after_task(model, 0)
    expected = [0.0, 0.0] if clipped else [-0.3 / 0.35, -1.0]
    for m in range(2):
        assert si.importance[m].unique().tolist() == pytest.approx([expected[m]], rel=1e-6)
    assert torch.equal(si.anchor, model.theta)


def test_predicted_fisher_uses_the_argmax_over_the_active_units_only():
    """Class-IL with the seen units active (tasks 0, 1: units 0..3): the predicted Fisher equals a
    batch-of-1 loop at argmax over units 0..3, though the untrained model's argmax over all 10
    units often lies outside them, and it differs from the empirical Fisher; member by member."""
    _, ctx, model = population_setup(
        [{}, {"train_seed": 1}],
        benchmark="split-digits",
        scenario="class",
        n_tasks=5,
        class_il_units="seen",
        val_fraction=0,
    )
    ctx.seen_tasks = 2
    rows = ctx.seq.tasks[1].train_idx[:120]
    with torch.no_grad():
        logits = model(ctx.make_batch(rows.view(1, -1), 1).x[0])
    assert (logits.argmax(-1) >= 4).any(1).all()  # the restriction to the active units matters
    fast = fisher_diagonal(model, ctx, 1, "predicted", samples=0, batch_size=1)
    views = model.params(fast)
    # the loop runs over the same rows fisher_diagonal saw: all of task 1's training rows
    all_rows = ctx.seq.tasks[1].train_idx
    x = ctx.make_batch(all_rows.view(1, -1), 1).x[0]
    for m in range(2):
        mlp = member_mlp(model, m)
        slow = {n: torch.zeros_like(p) for n, p in mlp.named_parameters()}
        for row in range(len(all_rows)):
            mlp.zero_grad()
            logp = F.log_softmax(mlp(x[row : row + 1])[:, :4], dim=1)[0]
            logp[logp.argmax()].backward()
            for n, p in mlp.named_parameters():
                slow[n] += p.grad**2
        for stacked, template in mlp_names(1).items():
            torch.testing.assert_close(
                views[stacked][m], slow[template] / len(all_rows), rtol=1e-4, atol=1e-8
            )
    empirical = fisher_diagonal(model, ctx, 1, "empirical", samples=0, batch_size=1)
    for m in range(2):
        assert not torch.allclose(
            model.params(empirical)["head.weight"][m], views["head.weight"][m]
        )


@pytest.mark.parametrize("scenario", ["task", "domain", "class"])
def test_reference_variants_train_in_every_scenario(scenario):
    """The vdv presets' method defaults on a small digits run: finite, and LwF's distillation
    changes the result."""
    from cl_core.__main__ import build_parser, config_from_args

    def run(method: str, *params: str) -> np.ndarray:
        flags = ["--preset", "vdv-split", "--benchmark", "split-digits", "--scenario", scenario]
        flags += ["--method", method, "--iterations", "15", "--hidden", "32", "--device", "cpu"]
        for p in params:
            flags += ["--param", p]
        cfg = config_from_args(build_parser().parse_args(flags))
        result = RunResult.from_reports(cfg, list(train(cfg)))
        assert result.status == "completed"
        return result.acc_test

    finetune = run("finetune")
    assert not np.array_equal(run("lwf"), finetune)
    for method, params in (("ewc", ()), ("ewc", ("merge=online",)), ("si", ())):
        acc = run(method, *params)
        assert np.all((acc >= 0) & (acc <= 1))
