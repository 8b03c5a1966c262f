"""Method invariants: EWC penalty and Fisher, SI importances, LwF reduces to fine-tuning."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import digits_setup

from cl_core.config import RunConfig
from cl_core.methods.ewc import EWC
from cl_core.methods.fisher import _accumulate_func, _accumulate_linear, fisher_diagonal
from cl_core.methods.lwf import distillation
from cl_core.methods.si import SI
from cl_core.params import resolve
from cl_core.trainer import RunResult, train


def _ewc(ctx, **params):
    return EWC(resolve(EWC.hyperparams, params, "ewc"), ctx)


def test_ewc_penalty_zero_at_anchor_and_quadratic():
    _, ctx, model = digits_setup()
    ewc = _ewc(ctx, **{"lambda": 10.0, "half": True, "fisher": "empirical", "fisher_samples": 64})
    ewc.after_task(model, 0)
    assert ewc.penalty(model).item() == 0.0
    direction = [torch.randn_like(p) for p in model.parameters()]
    values = []
    for step in (1.0, 2.0, 3.0):
        moved = copy.deepcopy(model)
        with torch.no_grad():
            for p, d in zip(moved.parameters(), direction, strict=True):
                p.add_(step * 1e-2 * d)
        values.append(ewc.penalty(moved).item())
    # quadratic: P(2h) = 4 P(h), P(3h) = 9 P(h)
    assert values[0] > 0
    assert values[1] == pytest.approx(4 * values[0], rel=1e-4)
    assert values[2] == pytest.approx(9 * values[0], rel=1e-4)
    # by hand: (λ/2) Σ F (θ-θ*)²
    fisher, anchor = ewc.terms[0]
    moved_params = list(moved.parameters())
    by_hand = 5.0 * sum(
        (f * (p - a) ** 2).sum() for f, p, a in zip(fisher, moved_params, anchor, strict=True)
    )
    assert values[2] == pytest.approx(by_hand.item(), rel=1e-5)


def _loop_fisher(model, ctx, rows, task, label_fn):
    """Reference: batch-size-1 backward passes, the slow way."""
    total = [torch.zeros_like(p) for p in model.parameters()]
    for r in rows:
        batch = ctx.make_batch(r.view(1), task)
        logp = F.log_softmax(ctx.active_logits(model(batch.x), task), dim=1)[0]
        for label, weight in label_fn(logp.detach(), batch.target[0]):
            model.zero_grad()
            F.log_softmax(ctx.active_logits(model(batch.x), task), dim=1)[0, label].backward()
            for t, p in zip(total, model.parameters(), strict=True):
                t += weight * p.grad**2
    return total


@pytest.mark.parametrize("accumulate", [_accumulate_linear, _accumulate_func])
@pytest.mark.parametrize("kind", ["empirical", "expected", "predicted"])
def test_vectorized_fisher_equals_per_sample_loop(kind, accumulate):
    _, ctx, model = digits_setup(val_fraction=0.0)
    rows = ctx.seq.tasks[1].train_idx[:300]
    # digits pixels are multiples of 1/16, so a ReLU pre-activation can be exactly 0, where
    # autograd and vmap pick different subgradients; keep rows away from that kink
    with torch.no_grad():
        pre = model.trunk[0](ctx.make_batch(rows, 1).x)
    rows = rows[(pre != 0).all(1)]
    assert len(rows) > 250
    fast = {n: torch.zeros_like(p.detach()) for n, p in model.named_parameters()}
    accumulate(model, ctx, ctx.make_batch(rows, 1), 1, kind, fast)
    if kind == "empirical":
        labels = lambda logp, y: [(int(y), 1.0)]  # noqa: E731
    elif kind == "predicted":  # the argmax over the active units, as the reference's loop does
        labels = lambda logp, y: [(int(logp.argmax()), 1.0)]  # noqa: E731
    else:
        labels = lambda logp, y: [(c, logp[c].exp().item()) for c in range(len(logp))]  # noqa: E731
    slow = _loop_fisher(model, ctx, rows, 1, labels)
    for f, s in zip(fast.values(), slow, strict=True):
        assert torch.all(f >= 0)
        assert torch.allclose(f, s, rtol=1e-4, atol=1e-7)


def test_batch_fisher_is_mean_of_squared_batch_gradients():
    _, ctx, model = digits_setup(val_fraction=0.0)
    ctx.gen.manual_seed(1)
    fast = fisher_diagonal(model, ctx, 0, "batch", samples=0, batch_size=1400)  # one batch
    batch = ctx.make_batch(ctx.seq.tasks[0].train_idx, 0)
    model.zero_grad()
    F.cross_entropy(model(batch.x), batch.target).backward()
    for f, p in zip(fast.values(), model.parameters(), strict=True):
        assert torch.allclose(f, p.grad**2, rtol=1e-5, atol=1e-10)


def test_sampled_fisher_is_non_negative_and_close_to_expected():
    _, ctx, model = digits_setup(val_fraction=0.0)
    expected = fisher_diagonal(model, ctx, 0, "expected", samples=0, batch_size=1)
    sampled = fisher_diagonal(model, ctx, 0, "sampled", samples=0, batch_size=1)
    e = torch.cat([v.flatten() for v in expected.values()])
    s = torch.cat([v.flatten() for v in sampled.values()])
    assert torch.all(s >= 0)
    # Monte Carlo estimate of the same quantity: totals agree to within a few percent
    assert s.sum().item() == pytest.approx(e.sum().item(), rel=0.1)


@pytest.mark.parametrize("merge", ["sum", "mean", "online", "separate"])
def test_ewc_merge_modes(merge):
    """Two consolidations: merged Fisher per R1 (sum), R2 (running mean), online (γ)."""
    _, ctx, model = digits_setup(val_fraction=0.0)
    params = {
        "merge": merge,
        "gamma": 0.5,
        "fisher": "batch",
        "fisher_batch_size": 2000,
        "fisher_samples": 0,
    }
    ewc = _ewc(ctx, **params)
    ewc.after_task(model, 0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05)
    ewc.after_task(model, 1)
    f0 = fisher_diagonal(_reset(model, -0.05), ctx, 0, "batch", 0, 2000)
    f1 = fisher_diagonal(_reset(model, 0.05), ctx, 1, "batch", 0, 2000)
    if merge == "separate":
        assert len(ewc.terms) == 2
        return
    expected = {
        "sum": lambda a, b: a + b,
        "mean": lambda a, b: (b + 1 * a) / 2,
        "online": lambda a, b: 0.5 * a + b,
    }[merge]
    ((merged, anchor),) = ewc.terms
    for m, a, b in zip(merged, f0.values(), f1.values(), strict=True):
        assert torch.allclose(m, expected(a, b), rtol=1e-5, atol=1e-12)
    assert all(torch.equal(x, p) for x, p in zip(anchor, model.parameters(), strict=True))


def _reset(model, shift):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(shift)
    return model


def test_si_importances_non_negative_and_zero_penalty_at_anchor():
    cfg, ctx, model = digits_setup(method="si")
    si = SI(resolve(SI.hyperparams, {"c": 1.0}, "si"), ctx)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for task in range(2):
        si.before_task(model, task)
        for batch in ctx.batches([task], 32):
            opt.zero_grad()
            si.loss(model, batch, task).backward()
            si.before_step(model, task)
            opt.step()
            si.after_step(model, batch, task)
        si.after_task(model, task)
        assert all(torch.all(w >= 0) for w in si.importance)
        assert sum(w.sum() for w in si.importance) > 0
        assert si.penalty(model).item() == 0.0


def test_si_path_integral_for_plain_sgd():
    """With SGD, ω = Σ_steps lr·g² exactly (−g·Δθ with Δθ = −lr·g)."""
    _, ctx, model = digits_setup()
    si = SI(resolve(SI.hyperparams, {"c": 0.0}, "si"), ctx)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    si.before_task(model, 0)
    squared = [torch.zeros_like(p) for p in model.parameters()]
    for batch in ctx.batches([0], 128):
        opt.zero_grad()
        si.loss(model, batch, 0).backward()
        for s, p in zip(squared, model.parameters(), strict=True):
            s += 0.1 * p.grad**2
        si.before_step(model, 0)
        opt.step()
        si.after_step(model, batch, 0)
    for w, s in zip(si.path, squared, strict=True):
        assert torch.allclose(w, s, rtol=1e-4, atol=1e-9)


def test_distillation_by_hand():
    old = torch.tensor([[2.0, 0.0]])
    new = torch.tensor([[0.0, 2.0]])
    p = np.exp([1.0, 0.0]) / np.exp([1.0, 0.0]).sum()  # softmax(old / 2)
    q = np.log(np.exp([0.0, 1.0]) / np.exp([0.0, 1.0]).sum())  # log_softmax(new / 2)
    assert distillation(old, new, 2.0).item() == pytest.approx(-(p * q).sum(), rel=1e-6)


def _matrix(**kw):
    values = dict(benchmark="permuted-digits", n_tasks=3, hidden=(32,), epochs=2)
    values.update(kw)
    cfg = RunConfig(**values)
    return RunResult.from_reports(cfg, list(train(cfg))).acc_test


@pytest.mark.parametrize("scenario", ["task", "domain", "class"])
def test_lwf_with_weight_zero_equals_finetune(scenario):
    finetune = _matrix(scenario=scenario, method="finetune")
    lwf = _matrix(scenario=scenario, method="lwf", method_params={"weight": 0.0})
    assert np.array_equal(finetune, lwf)


def test_methods_reduce_forgetting_on_digits():
    """A real effect, not just "it ran": EWC and joint forget less than fine-tuning."""
    setup = dict(hidden=(64,), epochs=8, batch_size=32, val_fraction=0.0)  # R6, smaller
    ft = _matrix(method="finetune", **setup)
    ewc = _matrix(method="ewc", method_params={"lambda": 100.0}, **setup)
    joint = _matrix(method="joint", **setup)
    print(ft[-1], ewc[-1], joint[-1])
    assert ewc[-1, 0] > ft[-1, 0] + 0.05
    assert joint[-1, :].mean() > ft[-1, :].mean() + 0.1


def test_lwf_warmup_trains_only_the_output_layer():
    from cl_core.methods.lwf import LwF

    cfg, ctx, model = digits_setup(scenario="task", lr=1e-2)
    lwf = LwF(resolve(LwF.hyperparams, {"warmup_epochs": 2}, "lwf"), ctx)
    trunk = [p.detach().clone() for p in model.trunk.parameters()]
    head = [p.detach().clone() for p in model.head.parameters()]
    lwf.before_task(model, 1)  # the warm-up happens here
    assert all(torch.equal(a, b) for a, b in zip(trunk, model.trunk.parameters(), strict=True))
    weight_change = (model.head.weight - head[0]).abs().sum(1)
    # task-IL: only task 1's output units (rows 10..19) moved
    assert weight_change[10:20].min() > 0 and weight_change[:10].max() == 0


def test_joint_trains_on_all_tasks_so_far_with_their_own_task_ids():
    from cl_core.methods.joint import Joint

    _, ctx, _ = digits_setup(scenario="task", val_fraction=0.0)
    assert Joint({}, ctx).training_tasks(2) == [0, 1, 2]
    rows, ids = ctx.train_rows([0, 1, 2])
    assert len(rows) == 3 * 1400 and torch.bincount(ids).tolist() == [1400] * 3
    batch = ctx.make_batch(rows[[0, 1400, 2800]], ids[[0, 1400, 2800]])
    assert batch.target.max() < 10  # within-task targets in task-IL
