"""FROMP: memorable-point selection, the kernel J Σ Jᵀ and the regulariser's gradient, by hand."""

import numpy as np
import torch
import torch.nn.functional as F
from helpers import digits_setup

from cl_core.methods.fromp import FROMP, function_kernels, xs_by_score
from cl_core.params import resolve

SPLIT = dict(benchmark="split-digits", scenario="class", n_tasks=5, hidden=(16,), val_fraction=0.0)


def _fromp(ctx, **params):
    return FROMP(resolve(FROMP.hyperparams, params, "fromp"), ctx)


def test_points_with_the_largest_scores_per_class():
    x = torch.arange(8).float().unsqueeze(1)
    scores = torch.tensor([0.1, 0.9, 0.5, 0.3, 0.8, 0.2, 0.7, 0.6])
    labels = torch.tensor([3, 3, 3, 5, 5, 5, 5, 3])
    assert xs_by_score(x, scores, labels, 2).flatten().tolist() == [1, 7, 4, 6]


def test_memorable_points_are_the_most_uncertain_training_samples_of_each_class():
    _, ctx, model = digits_setup(**SPLIT)
    fromp = _fromp(ctx, budget=5)
    chosen = fromp.select_points(model, 1)
    batch = ctx.make_batch(ctx.seq.tasks[1].train_idx, 1)
    p = F.softmax(model(batch.x), 1).detach().numpy()
    trace = (p * (1 - p)).sum(1)  # trace of the softmax Hessian diag(p) − ppᵀ
    expected = []
    for label in sorted(set(batch.label.tolist())):
        rows = np.flatnonzero(batch.label.numpy() == label)
        expected += list(rows[np.argsort(-trace[rows], kind="stable")[:5]])
    assert torch.equal(chosen, batch.x[expected])
    assert len(chosen) == 10  # 2 classes x budget 5


def _jacobians(model, x, unit, task, ctx):
    """Per-sample gradients of softmax unit ``unit`` by one backward pass per sample."""
    rows = []
    for xi in x:
        model.zero_grad()
        F.softmax(ctx.active_logits(model(xi.unsqueeze(0)), task), 1)[0, unit].backward()
        rows.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    return torch.stack(rows)


def test_kernel_is_j_sigma_jt_per_output_unit():
    _, ctx, model = digits_setup(**SPLIT)
    x = ctx.make_batch(ctx.seq.tasks[0].train_idx[:6], 0).x
    sigma = {n: torch.rand_like(p) for n, p in model.named_parameters()}
    flat_sigma = torch.cat([s.flatten() for s in sigma.values()])
    kernels = function_kernels(model, x, lambda out: F.softmax(out, -1), sigma).float()
    assert kernels.shape == (10, 6, 6)
    for unit in (0, 3, 9):
        jac = _jacobians(model, x, unit, 0, ctx)
        assert torch.allclose(
            kernels[unit], jac @ torch.diag(flat_sigma) @ jac.T, rtol=1e-4, atol=1e-9
        )


def test_regulariser_gradient_is_tau_jt_kinv_delta():
    """After task 0, with all points: ∇ (τ · reg) = τ Σ_k J_kᵀ K_k⁻¹ (p_k − m_k)."""
    _, ctx, model = digits_setup(**SPLIT)
    fromp = _fromp(ctx, budget=3, all_points=True, tau=5.0)
    fromp.after_task(model, 0)
    fromp.before_task(model, 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.zero_grad()
    (5.0 * fromp.regulariser(model, 128, 1)).backward()
    got = torch.cat([p.grad.flatten() for p in model.parameters()])
    x, anchor, kinv = fromp.points[0], fromp.anchors[0], fromp.kernel_inv[0]
    probs = F.softmax(model(x), 1).detach()
    expected = torch.zeros_like(got)
    for unit in range(10):
        jac = _jacobians(model, x, unit, 0, ctx)
        expected += 5.0 * jac.T @ (kinv[unit] @ (probs[:, unit] - anchor[:, unit]))
    assert torch.allclose(got, expected, rtol=1e-3, atol=1e-6 * expected.abs().max().item())


def test_ggn_sums_over_tasks_and_kernel_uses_its_inverse():
    _, ctx, model = digits_setup(**SPLIT)
    fromp = _fromp(ctx, budget=2, prior_precision=0.5)
    fromp.after_task(model, 0)
    first = {n: f.clone() for n, f in fromp.ggn.items()}
    fromp.after_task(model, 1)
    assert all(torch.allclose(fromp.ggn[n], 2 * first[n], rtol=1e-3) is False for n in first)
    assert all(torch.all(fromp.ggn[n] >= first[n]) for n in first)
    fromp.before_task(model, 2)
    assert len(fromp.kernel_inv) == 2 and fromp.kernel_inv[0].shape == (10, 4, 4)
    # K⁻¹ is symmetric positive definite
    k = fromp.kernel_inv[1]
    assert torch.allclose(k, k.transpose(1, 2), rtol=1e-3, atol=1e-3 * k.abs().max().item())
    assert torch.all(torch.linalg.eigvalsh(k) > 0)


def test_fromp_forgets_less_than_finetune():
    """Domain-IL split digits: fine-tuning forgets about 20 points, FROMP (τ = 1) almost none."""
    from cl_core.config import RunConfig
    from cl_core.trainer import RunResult, train

    setup = dict(SPLIT, scenario="domain", hidden=(32,), epochs=4, batch_size=32, lr=1e-2)
    ft = RunConfig(**setup, method="finetune")
    fr = RunConfig(**setup, method="fromp", method_params={"tau": 1.0})
    forgetting = [
        RunResult.from_reports(c, list(train(c))).metrics("test")["forgetting"] for c in (ft, fr)
    ]
    assert forgetting[1] < forgetting[0] - 0.1


def test_vdv_split_preset_sets_tau_per_scenario_and_flags_override_it():
    from cl_core.__main__ import build_parser, config_from_args

    def tau(*flags):
        args = build_parser().parse_args(["--preset", "vdv-split", "--method", "fromp", *flags])
        return config_from_args(args).method_params["tau"]

    assert tau("--scenario", "task") == 0.01  # three-scenario param_values.py
    assert tau("--scenario", "domain") == 10.0
    assert tau("--scenario", "class") == 1000.0
    assert tau("--scenario", "class", "--param", "tau=3") == "3"
