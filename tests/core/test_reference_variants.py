"""The three-scenario reference's variants (issue 11), checked against hand computations:
LwF's padded distillation (both normalisations) and 1/t weighting, SI's total-loss path integral
without clipping, and the argmax-label ("predicted") Fisher over the active units."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import digits_setup
from torch import nn

from cl_core.context import Batch
from cl_core.methods.fisher import fisher_diagonal
from cl_core.methods.lwf import LwF
from cl_core.methods.si import SI
from cl_core.params import resolve
from cl_core.trainer import RunResult, train

OLD = [[1.0, -1.0, 3.0, 0.5], [0.0, 2.0, -1.0, 1.0]]  # the old model's logits (4 units)
NEW = [[0.2, 0.4, -0.6, 1.0], [1.5, -0.5, 0.3, 0.0]]  # the current model's logits
TARGET = [2, 3]  # both samples belong to task 1 (classes 2, 3)


class FixedLogits(nn.Module):
    """A real module whose output is a given logits table (one row per sample)."""

    def __init__(self, logits: list[list[float]]) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(logits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[: len(x)]


def _lwf_loss(scenario: str, **params) -> float:
    """LwF's loss on task 1 of a 2-classes-per-task digits sequence, for the toy logits."""
    extra = {"class_il_units": "seen"} if scenario == "class" else {}
    _, ctx, _ = digits_setup(benchmark="split-digits", scenario=scenario, n_tasks=5, **extra)
    ctx.seen_tasks = 2
    lwf = LwF(resolve(LwF.hyperparams, params, "lwf"), ctx)
    lwf.old = FixedLogits(OLD)
    x = torch.zeros(2, 64)
    target = torch.tensor(TARGET) - (2 if scenario != "class" else 0)
    return lwf.loss(FixedLogits(NEW), Batch(x, target, 1, torch.tensor(TARGET)), 1).item()


def _softmax(z):
    e = np.exp(z - np.max(z, axis=1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _log_softmax(z):
    return np.log(_softmax(z))


def test_lwf_padded_distillation_by_hand_class_il():
    """Class-IL, task 1 of 5, seen units 0..3: p̃ = [softmax(old[:2]/T), 0, 0] against
    log_softmax(new[:4]/T); (1/2)·CE + (1/2)·T²·KD with KD averaged over units (2019) or summed."""
    old, new, temp = np.array(OLD), np.array(NEW), 2.0
    p = np.concatenate([_softmax(old[:, :2] / temp), np.zeros((2, 2))], axis=1)
    cross = -(p * _log_softmax(new / temp))  # (samples, 4 units)
    ce = -_log_softmax(new)[[0, 1], TARGET].mean()
    kd_mean, kd_sum = cross.mean(), cross.sum(1).mean()
    reference = dict(scaling="t2", weighting="one-over-t", temperature=temp)
    got_mean = _lwf_loss("class", distill="padded-unit-mean", **reference)
    got_sum = _lwf_loss("class", distill="padded-unit-sum", **reference)
    assert got_mean == pytest.approx(0.5 * ce + 0.5 * temp**2 * kd_mean, rel=1e-6)
    assert got_sum == pytest.approx(0.5 * ce + 0.5 * temp**2 * kd_sum, rel=1e-6)
    assert kd_sum == pytest.approx(4 * kd_mean)  # the two forms differ by the 4 active units
    # today's default: old units only on both sides, CE + 1 · KD (class-IL, "tasks" scaling)
    kd_old = -(_softmax(old[:, :2] / temp) * _log_softmax(new[:, :2] / temp)).sum(1).mean()
    assert _lwf_loss("class") == pytest.approx(ce + kd_old, rel=1e-6)


def test_lwf_padded_distillation_task_il_averages_unit_means_over_old_heads():
    """Task-IL on task 1: one previous head (units 0, 1), nothing padded; the unit mean halves
    the per-scenario term; additive weighting with m = T²."""
    old, new, temp = np.array(OLD), np.array(NEW), 2.0
    per_head = -(_softmax(old[:, :2] / temp) * _log_softmax(new[:, :2] / temp)).sum(1).mean()
    ce = -_log_softmax(new[:, 2:4])[[0, 1], [0, 1]].mean()
    got = _lwf_loss("task", distill="padded-unit-mean", scaling="t2")
    assert got == pytest.approx(ce + temp**2 * per_head / 2, rel=1e-6)
    assert _lwf_loss("task", distill="per-scenario", scaling="t2") == pytest.approx(
        ce + temp**2 * per_head, rel=1e-6
    )


def test_si_total_loss_path_integral_for_plain_sgd():
    """With SGD (Δθ = −η·g) on the second task, the reference variant integrates the gradient of
    the whole loss, penalty included: ω = Σ_steps η·g_total²; the default integrates the task
    loss alone: ω = Σ_steps η·(g_total − 2cΩ(θ−θ*))·g_total."""
    paths = {}
    for variant in ("total-loss-unclamped", "task-loss-clamped"):
        _, ctx, model = digits_setup()
        params = {"c": 5.0, "path_integral": variant}
        si = SI(resolve(SI.hyperparams, params, "si"), ctx)
        si.importance = [torch.rand_like(p) for p in model.parameters()]
        si.anchor = [p.detach() + 0.05 for p in model.parameters()]  # a penalty with a gradient
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        si.before_task(model, 1)
        expected = [torch.zeros_like(p) for p in model.parameters()]
        for batch in ctx.batches([1], 256):
            opt.zero_grad()
            si.loss(model, batch, 1).backward()
            for e, p, w, a in zip(
                expected, model.parameters(), si.importance, si.anchor, strict=True
            ):
                g_task = p.grad - 2 * 5.0 * w * (p.detach() - a)
                e += 0.1 * p.grad * (p.grad if variant == "total-loss-unclamped" else g_task)
            si.before_step(model, 1)
            opt.step()
            si.after_step(model, batch, 1)
        for w, e in zip(si.path, expected, strict=True):
            assert torch.allclose(w, e, rtol=1e-4, atol=1e-9)
        paths[variant] = si.path
    assert not torch.allclose(paths["total-loss-unclamped"][0], paths["task-loss-clamped"][0])


@pytest.mark.parametrize(
    ("variant", "expected"), [("total-loss-unclamped", -0.3 / 0.35), ("task-loss-clamped", 0.0)]
)
def test_si_importance_clipping(variant, expected):
    """Ω = ω/(Δ²+ε) = −0.3/(0.5² + 0.1): kept negative by the reference, clipped at 0 by default."""
    _, ctx, _ = digits_setup()
    si = SI(resolve(SI.hyperparams, {"epsilon": 0.1, "path_integral": variant}, "si"), ctx)
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    si.before_task(model, 0)
    si.path = [torch.tensor([[-0.3]])]
    with torch.no_grad():
        model.weight.fill_(0.5)
    si.after_task(model, 0)
    assert si.importance[0].item() == pytest.approx(expected, rel=1e-6)


def test_predicted_fisher_uses_the_argmax_over_the_active_units_only():
    """Class-IL with the seen units active (tasks 0, 1: units 0..3): the predicted Fisher equals a
    batch-of-1 loop at argmax over units 0..3, though the untrained model's argmax over all 10
    units often lies outside them, and it differs from the empirical Fisher."""
    _, ctx, model = digits_setup(
        benchmark="split-digits", scenario="class", n_tasks=5, class_il_units="seen", val_fraction=0
    )
    ctx.seen_tasks = 2
    rows = ctx.seq.tasks[1].train_idx[:120]
    batch = ctx.make_batch(rows, 1)
    with torch.no_grad():
        logits = model(batch.x)
    assert (logits.argmax(1) >= 4).any()  # the restriction to the active units matters here
    fast = fisher_diagonal(model, ctx, 1, "predicted", samples=0, batch_size=1)
    # the loop runs over the same rows fisher_diagonal saw: all of task 1's training rows
    slow = [torch.zeros_like(p) for p in model.parameters()]
    all_rows = ctx.seq.tasks[1].train_idx
    for r in all_rows:
        x = ctx.make_batch(r.view(1), 1).x
        model.zero_grad()
        logp = F.log_softmax(model(x)[:, :4], dim=1)[0]
        logp[logp.argmax()].backward()
        for s, p in zip(slow, model.parameters(), strict=True):
            s += p.grad**2
    for f, s in zip(fast.values(), slow, strict=True):
        assert torch.allclose(f, s / len(all_rows), rtol=1e-4, atol=1e-8)
    empirical = fisher_diagonal(model, ctx, 1, "empirical", samples=0, batch_size=1)
    assert not torch.allclose(empirical["head.weight"], fast["head.weight"])


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
