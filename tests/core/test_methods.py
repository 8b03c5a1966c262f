"""Method invariants: EWC penalty and Fisher, SI importances, LwF reduces to fine-tuning.

Methods are written once for M ≥ 1 members: each check runs on a population whose members
differ in their initialisation (train seed), their learning rate and the method's float
hyperparameters, and holds for every member on its own (member m against a plain torch module
holding member m's parameters, the slow way)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import make_method, member_mlp, mlp_names, population_setup, stacked_grads

from cl_core.config import RunConfig
from cl_core.methods.fisher import (
    _accumulate_func,
    _accumulate_linear,
    _labels_and_weights,
    fisher_diagonal,
)
from cl_core.methods.lwf import distillation
from cl_core.optim import make_optimizer
from cl_core.trainer import RunResult, train

SEEDS = [{"train_seed": 0}, {"train_seed": 1}, {"train_seed": 2}]


def test_ewc_penalty_zero_at_anchor_and_quadratic():
    _, ctx, model = population_setup(SEEDS)
    lambdas = [10.0, 1.0, 300.0]
    common = {"half": True, "fisher": "empirical", "fisher_samples": 64}
    ewc = make_method("ewc", ctx, *({"lambda": lam, **common} for lam in lambdas))
    ewc.after_task(model, 0)
    assert ewc.penalty(model).tolist() == [0.0, 0.0, 0.0]
    anchor = model.theta.clone()
    direction = torch.randn(model.theta.shape, generator=torch.Generator().manual_seed(0))
    values = []
    for step in (1.0, 2.0, 3.0):
        with torch.no_grad():
            model.theta.copy_(anchor + step * 1e-2 * direction)
        values.append(ewc.penalty(model))
    # quadratic, member by member: P(2h) = 4 P(h), P(3h) = 9 P(h)
    assert (values[0] > 0).all()
    torch.testing.assert_close(values[1], 4 * values[0], rtol=1e-4, atol=0)
    torch.testing.assert_close(values[2], 9 * values[0], rtol=1e-4, atol=0)
    # by hand: (λ_m/2) Σ F (θ-θ*)², each member with its own λ, Fisher and anchor
    ((fisher, anchor_stored),) = ewc.terms
    assert torch.equal(anchor_stored, anchor)
    for m, lam in enumerate(lambdas):
        by_hand = lam / 2 * (fisher[m].double() * (model.theta[m] - anchor[m]).double() ** 2).sum()
        assert values[2][m].item() == pytest.approx(by_hand.item(), rel=1e-5)
    # the members' Fishers are their own (different initialisations, different Fishers)
    assert not torch.allclose(fisher[0], fisher[1])


def _loop_fisher(mlp, ctx, rows, task, label_fn) -> dict[str, torch.Tensor]:
    """Reference: batch-size-1 backward passes through a plain module, the slow way; under the
    plain module's parameter names."""
    total = {n: torch.zeros_like(p) for n, p in mlp.named_parameters()}
    for r in rows:
        batch = ctx.make_batch(r.view(1, 1), task)
        x = batch.x[0]
        logp = F.log_softmax(ctx.active_logits(mlp(x), task), dim=-1)[0]
        for label, weight in label_fn(logp.detach(), batch.target[0, 0]):
            mlp.zero_grad()
            F.log_softmax(ctx.active_logits(mlp(x), task), dim=-1)[0, label].backward()
            for n, p in mlp.named_parameters():
                total[n] += weight * p.grad**2
    return total


ROWS_PER_MEMBER = 120


def _rows_off_the_kink(mlp, ctx, candidates, task):
    """Rows whose first-layer pre-activations are all non-zero: digits pixels are multiples of
    1/16, so a ReLU pre-activation can be exactly 0, where autograd and vmap pick different
    subgradients."""
    with torch.no_grad():
        pre = mlp.trunk[0](ctx.make_batch(candidates.view(1, -1), task).x[0])
    rows = candidates[(pre != 0).all(1)]
    assert len(rows) >= ROWS_PER_MEMBER
    return rows[:ROWS_PER_MEMBER]


@pytest.mark.parametrize("accumulate", [_accumulate_linear, _accumulate_func])
@pytest.mark.parametrize("kind", ["empirical", "expected", "predicted"])
def test_vectorized_fisher_equals_per_sample_loop(kind, accumulate):
    _, ctx, model = population_setup(SEEDS, val_fraction=0.0)
    train_rows = ctx.seq.tasks[1].train_idx
    mlps = [member_mlp(model, m) for m in range(3)]
    # each member its own rows (shifted windows of the task's rows)
    rows = torch.stack(
        [
            _rows_off_the_kink(mlp, ctx, train_rows[200 * m : 200 * m + 300], 1)
            for m, mlp in enumerate(mlps)
        ]
    )
    batch = ctx.make_batch(rows, 1)
    fast = torch.zeros_like(model.theta)

    def pairs(logits):
        return _labels_and_weights(ctx, logits, batch, 1, kind, None)

    accumulate(model, ctx, batch, 1, pairs, model.theta.detach(), fast)
    if kind == "empirical":
        labels = lambda logp, y: [(int(y), 1.0)]  # noqa: E731
    elif kind == "predicted":  # the argmax over the active units, as the reference's loop does
        labels = lambda logp, y: [(int(logp.argmax()), 1.0)]  # noqa: E731
    else:
        labels = lambda logp, y: [(c, logp[c].exp().item()) for c in range(len(logp))]  # noqa: E731
    assert torch.all(fast >= 0)
    views = model.params(fast)
    for m, mlp in enumerate(mlps):
        slow = _loop_fisher(mlp, ctx, rows[m], 1, labels)
        for stacked, template in mlp_names(1).items():
            torch.testing.assert_close(views[stacked][m], slow[template], rtol=1e-4, atol=1e-7)


def test_batch_fisher_is_mean_of_squared_batch_gradients():
    _, ctx, model = population_setup(SEEDS, val_fraction=0.0)
    fast = fisher_diagonal(model, ctx, 0, "batch", samples=0, batch_size=1400)  # one batch
    views = model.params(fast)
    rows = ctx.seq.tasks[0].train_idx
    batch = ctx.make_batch(rows.view(1, -1), 0)
    for m in range(3):
        mlp = member_mlp(model, m)
        F.cross_entropy(mlp(batch.x[0]), batch.target[0]).backward()
        for name, grad in stacked_grads(mlp, 1).items():
            torch.testing.assert_close(views[name][m], grad**2, rtol=1e-5, atol=1e-10)


def test_sampled_fisher_is_non_negative_and_close_to_expected():
    _, ctx, model = population_setup(SEEDS[:2], val_fraction=0.0)
    expected = fisher_diagonal(model, ctx, 0, "expected", samples=0, batch_size=1)
    sampled = fisher_diagonal(
        model, ctx, 0, "sampled", samples=0, batch_size=1, random=ctx.random("fisher")
    )
    assert torch.all(sampled >= 0)
    # Monte Carlo estimate of the same quantity: each member's totals agree within a few percent
    for m in range(2):
        assert sampled[m].sum().item() == pytest.approx(expected[m].sum().item(), rel=0.1)
    with pytest.raises(ValueError, match="needs a random stream"):
        fisher_diagonal(model, ctx, 0, "sampled", samples=10, batch_size=1)


@pytest.mark.parametrize("merge", ["sum", "mean", "online", "separate"])
def test_ewc_merge_modes(merge):
    """Two consolidations: merged Fisher by the classic script's sum, the running mean, and
    online EWC's γ, each member with its own γ (docs/references.md, EWC variants)."""
    _, ctx, model = population_setup(SEEDS, val_fraction=0.0)
    gammas = [0.5, 0.25, 0.9]
    common = {"merge": merge, "fisher": "batch", "fisher_batch_size": 2000, "fisher_samples": 0}
    ewc = make_method("ewc", ctx, *({"gamma": g, **common} for g in gammas))
    ewc.after_task(model, 0)
    first_anchor = model.theta.clone()
    with torch.no_grad():
        model.theta.add_(0.05)
    ewc.after_task(model, 1)
    f1 = fisher_diagonal(model, ctx, 1, "batch", 0, 2000)
    with torch.no_grad():
        model.theta.sub_(0.05)
    f0 = fisher_diagonal(model, ctx, 0, "batch", 0, 2000)
    with torch.no_grad():
        model.theta.add_(0.05)
    # each Fisher is the square of one batch gradient summed in another shuffle's order
    if merge == "separate":  # one term per task, each with its own Fisher and anchor
        assert len(ewc.terms) == 2
        (fisher0, anchor0), (fisher1, anchor1) = ewc.terms
        torch.testing.assert_close(fisher0, f0, rtol=1e-5, atol=1e-10)
        torch.testing.assert_close(fisher1, f1, rtol=1e-5, atol=1e-10)
        assert torch.equal(anchor0, first_anchor) and torch.equal(anchor1, model.theta)
        return
    gamma = torch.tensor(gammas).unsqueeze(1)
    expected = {
        "sum": f0 + f1,
        "mean": (f1 + 1 * f0) / 2,
        "online": gamma * f0 + f1,
    }[merge]
    ((merged, anchor),) = ewc.terms
    torch.testing.assert_close(merged, expected, rtol=1e-5, atol=1e-10)
    assert torch.equal(anchor, model.theta)


def _step(method, model, optimizer, batch, task):
    """One training step, hooks in the trainer's order (``Run._step``)."""
    model.zero_grad_()
    method.loss(model, batch, task).sum().backward()
    method.before_step(model, task)
    optimizer.step(*model.optimized())
    method.after_step(model, batch, task)


def test_si_importances_non_negative_and_zero_penalty_at_anchor():
    members = [{"train_seed": s, "lr": lr} for s, lr in ((0, 1e-2), (1, 3e-3), (2, 3e-2))]
    cfgs, ctx, model = population_setup(members, method="si")
    si = make_method("si", ctx, {"c": 1.0}, {"c": 10.0, "epsilon": 0.01}, {"c": 0.1})
    opt = make_optimizer(cfgs, model.theta)
    for task in range(2):
        si.before_task(model, task)
        for batch in ctx.batches([task], 32):
            _step(si, model, opt, batch, task)
        si.after_task(model, task)
        assert torch.all(si.importance >= 0)
        assert (si.importance.sum(1) > 0).all()
        assert si.penalty(model).tolist() == [0.0, 0.0, 0.0]


def test_si_path_integral_for_plain_sgd():
    """With SGD, ω = Σ_steps lr·g² exactly (−g·Δθ with Δθ = −lr·g), each member with its lr."""
    lrs = [0.1, 0.05, 0.2]
    members = [{"train_seed": s, "lr": lr} for s, lr in enumerate(lrs)]
    cfgs, ctx, model = population_setup(members, optimizer="sgd", momentum=0.0)
    si = make_method("si", ctx, {"c": 0.0})
    opt = make_optimizer(cfgs, model.theta)
    si.before_task(model, 0)
    squared = torch.zeros_like(model.theta)
    lr = torch.tensor(lrs).unsqueeze(1)
    for batch in ctx.batches([0], 128):
        model.zero_grad_()
        si.loss(model, batch, 0).sum().backward()
        squared += lr * model.grad**2
        si.before_step(model, 0)
        opt.step(*model.optimized())
        si.after_step(model, batch, 0)
    torch.testing.assert_close(si.path, squared, rtol=1e-4, atol=1e-9)


def test_distillation_by_hand():
    old = torch.tensor([[2.0, 0.0]])
    new = torch.tensor([[0.0, 2.0]])
    p = np.exp([1.0, 0.0]) / np.exp([1.0, 0.0]).sum()  # softmax(old / 2)
    q = np.log(np.exp([0.0, 1.0]) / np.exp([0.0, 1.0]).sum())  # log_softmax(new / 2)
    assert distillation(old, new, 2.0).item() == pytest.approx(-(p * q).sum(), rel=1e-6)
    # per member (M, N, units), each with its own temperature (M, 1, 1): T = 2, then T = 1
    p1 = np.exp([2.0, 0.0]) / np.exp([2.0, 0.0]).sum()
    q1 = np.log(np.exp([0.0, 2.0]) / np.exp([0.0, 2.0]).sum())
    both = distillation(
        torch.stack([old, old]), torch.stack([new, new]), torch.tensor([2.0, 1.0]).view(2, 1, 1)
    )
    assert both.shape == (2,)
    assert both.tolist() == pytest.approx([-(p * q).sum(), -(p1 * q1).sum()], rel=1e-6)


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
    """A real effect, not just "it ran": EWC and joint forget less than fine-tuning
    (docs/references.md, Permuted digits (quickstart))."""
    setup = dict(hidden=(64,), epochs=8, batch_size=32, val_fraction=0.0)
    ft = _matrix(method="finetune", **setup)
    ewc = _matrix(method="ewc", method_params={"lambda": 100.0}, **setup)
    joint = _matrix(method="joint", **setup)
    print(ft[-1], ewc[-1], joint[-1])
    assert ewc[-1, 0] > ft[-1, 0] + 0.05
    assert joint[-1, :].mean() > ft[-1, :].mean() + 0.1


def test_lwf_warmup_trains_only_the_output_layer():
    members = [{"train_seed": s, "lr": lr} for s, lr in ((0, 1e-2), (1, 3e-3), (2, 3e-2))]
    _, ctx, model = population_setup(members, scenario="task")
    lwf = make_method("lwf", ctx, {"warmup_epochs": 2})
    head = model.store.columns(model.head_names)
    before = model.theta.clone()
    lwf.before_task(model, 1)  # the warm-up happens here
    assert torch.equal(model.theta[:, : head.start], before[:, : head.start])  # trunk untouched
    weight = model.params()["head.weight"]
    weight_before = model.params(before)["head.weight"]
    change = (weight - weight_before).abs().sum(-1)  # (members, output units)
    # task-IL: only task 1's output units (rows 10..19) moved, for every member
    assert change[:, 10:20].min() > 0 and change[:, :10].max() == 0 and change[:, 20:].max() == 0
    assert lwf.old is not None and torch.equal(lwf.old.theta, before)  # taken before the warm-up


def test_joint_trains_on_all_tasks_so_far_with_their_own_task_ids():
    from cl_core.methods.joint import Joint

    _, ctx, _ = population_setup(SEEDS[:1], scenario="task", val_fraction=0.0)
    assert Joint([{}], ctx).training_tasks(2) == [0, 1, 2]
    rows, ids = ctx.train_rows([0, 1, 2])
    assert len(rows) == 3 * 1400 and torch.bincount(ids).tolist() == [1400] * 3
    pick = torch.tensor([[0, 1400, 2800]])
    batch = ctx.make_batch(rows[pick], ids[pick])
    assert batch.task.tolist() == [[0, 1, 2]]
    assert batch.target.max() < 10  # within-task targets in task-IL
