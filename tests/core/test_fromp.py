"""FROMP (Pan et al. 2020): memorable-point selection, the kernel J Σ Jᵀ, the GGN and the
regulariser's gradient, by hand.

Every computation runs for a population of two members that differ in their initialisation and
in FROMP's floats; each member's values are recomputed on a plain torch MLP holding its
parameters (one backward pass per sample and output unit), mapped to the stacked layout."""

import numpy as np
import torch
import torch.nn.functional as F
from helpers import as_stacked, make_method, member_mlp, population_setup, stacked_grads

from cl_core.methods.fromp import (
    KERNEL_JITTER,
    function_kernels,
    inverse_with_jitter,
    rows_by_score,
)

SPLIT = dict(benchmark="split-digits", scenario="class", n_tasks=5, hidden=(16,), val_fraction=0.0)
TWO = [{"train_seed": 0}, {"train_seed": 1}]


def _setup(*params):
    _, ctx, model = population_setup(TWO, **SPLIT)
    return ctx, model, make_method("fromp", ctx, *params)


def test_points_with_the_largest_scores_per_class():
    scores = torch.tensor(
        [[0.1, 0.9, 0.5, 0.3, 0.8, 0.2, 0.7, 0.6], [0.9, 0.1, 0.5, 0.3, 0.2, 0.8, 0.8, 0.6]]
    )
    labels = torch.tensor([3, 3, 3, 5, 5, 5, 5, 3])
    # per member, class 3 first (rows 0, 1, 2, 7), then class 5 (rows 3..6), best first; the
    # tie of member 1's rows 5 and 6 keeps data order
    assert rows_by_score(scores, labels, 2).tolist() == [[1, 7, 4, 6], [0, 7, 5, 6]]


def _grads(model, mlp):
    """The plain MLP's gradients flattened in the stacked model's parameter order."""
    return as_stacked(model, stacked_grads(mlp, 1))


def _jacobians(model, mlp, x, unit):
    """Per-sample gradients (N, P) of softmax unit ``unit`` (all 10 units active: class-IL),
    one backward pass per sample, in the stacked layout."""
    rows = []
    for xi in x:
        mlp.zero_grad()
        F.softmax(mlp(xi.unsqueeze(0)), 1)[0, unit].backward()
        rows.append(_grads(model, mlp))
    return torch.stack(rows)


def test_memorable_points_are_the_most_uncertain_training_samples_of_each_class():
    """Pan et al. 2020, Sec. 3.2: per class the points with the largest trace of the softmax
    Hessian, Λ(x) = Σ_k p_k(x)(1 − p_k(x)), each member by its own model."""
    ctx, model, fromp = _setup({"budget": 5})
    chosen = fromp.select_points(model, 1)
    rows = ctx.seq.tasks[1].train_idx
    x = ctx.inputs(rows, 1)
    _, labels = ctx.labels(rows, 1)
    assert chosen.shape == (2, 10, x.shape[1])  # 2 classes x budget 5 per member
    for m in range(2):
        with torch.no_grad():
            p = F.softmax(member_mlp(model, m)(x), 1).numpy()
        trace = (p * (1 - p)).sum(1)
        expected = []
        for label in sorted(set(labels.tolist())):
            where = np.flatnonzero(labels.numpy() == label)
            expected += list(where[np.argsort(-trace[where], kind="stable")[:5]])
        assert torch.equal(chosen[m], x[expected])
    assert not torch.equal(chosen[0], chosen[1])


def test_kernel_is_j_sigma_jt_per_output_unit():
    """Pan et al. 2020, eq. 8, block-diagonal across output units: K_k = J_k Σ J_kᵀ."""
    ctx, model, _ = _setup()
    rows = ctx.seq.tasks[0].train_idx
    x = torch.stack([ctx.inputs(rows[:6], 0), ctx.inputs(rows[6:12], 0)])  # each member its own
    sigma = torch.rand(2, model.n_params, generator=torch.Generator().manual_seed(0))
    kernels = function_kernels(model, x, lambda out: F.softmax(out, -1), sigma)
    assert kernels.shape == (2, 10, 6, 6) and kernels.dtype == torch.float64
    for m in range(2):
        mlp = member_mlp(model, m)
        for unit in (0, 3, 9):
            jac = _jacobians(model, mlp, x[m], unit).double()
            by_hand = jac @ torch.diag(sigma[m].double()) @ jac.T
            torch.testing.assert_close(kernels[m, unit], by_hand, rtol=1e-4, atol=1e-9)


def test_regulariser_gradient_is_tau_jt_kinv_delta():
    """After task 0, with all points: ∇ (τ · reg) = τ Σ_k J_kᵀ K_k⁻¹ (p_k − m_k) (Pan et al.
    2020, eq. 9; the reference implementations' gradient), each member at its own τ."""
    ctx, model, fromp = _setup(
        {"budget": 3, "all_points": True, "tau": 5.0},
        {"budget": 3, "all_points": True, "tau": 0.5, "prior_precision": 0.1},
    )
    fromp.after_task(model, 0)
    fromp.before_task(model, 1)
    with torch.no_grad():
        model.theta.add_(
            0.05 * torch.randn(model.theta.shape, generator=torch.Generator().manual_seed(1))
        )
    model.zero_grad_()
    (fromp.column("tau") * fromp.regulariser(model, 128, 1)).sum().backward()
    x, anchor, kinv = fromp.points[0], fromp.anchors[0], fromp.kernel_inv[0]
    assert x.shape[:2] == anchor.shape[:2] == (2, 6) and kinv.shape == (2, 10, 6, 6)
    for m, tau in enumerate((5.0, 0.5)):
        mlp = member_mlp(model, m)
        with torch.no_grad():
            probs = F.softmax(mlp(x[m]), 1)
        expected = torch.zeros(model.n_params)
        for unit in range(10):
            jac = _jacobians(model, mlp, x[m], unit)
            expected += tau * jac.T @ (kinv[m, unit] @ (probs[:, unit] - anchor[m, :, unit]))
        got = model.grad[m]
        scale = expected.abs().max().item()
        assert scale > 0
        torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-6 * scale)


def _ggn_by_hand(model, mlp, x):
    """Σ_x diag(J_f(x)ᵀ Λ(x) J_f(x)), J_f the logits' Jacobian, Λ = diag(p) − ppᵀ (Pan et al.
    2020, Sec. 3.1), one backward pass per sample and logit."""
    total = torch.zeros(sum(p.numel() for p in mlp.parameters()), dtype=torch.float64)
    for xi in x:
        logits = mlp(xi.unsqueeze(0))[0]
        jac = []
        for k in range(len(logits)):
            mlp.zero_grad()
            logits[k].backward(retain_graph=True)
            jac.append(_grads(model, mlp).double())
        jac = torch.stack(jac)  # (units, P)
        p = F.softmax(logits.detach().double(), 0)
        lam = torch.diag(p) - torch.outer(p, p)
        total += torch.einsum("ip,ij,jp->p", jac, lam, jac)
    return total


def test_ggn_sums_over_tasks_and_kernel_uses_its_inverse():
    """F sums diag(Jᵀ Λ J) over every training sample of every task learned; the kernels of
    the next task use Σ = diag(F + δ)⁻¹ with each member's δ, and K + εI is inverted."""
    deltas = (0.5, 2.0)
    ctx, model, fromp = _setup(
        {"budget": 2, "prior_precision": deltas[0]}, {"budget": 2, "prior_precision": deltas[1]}
    )
    mlps = [member_mlp(model, m) for m in range(2)]
    fromp.after_task(model, 0)
    first = fromp.ggn.clone()
    fromp.after_task(model, 1)
    assert fromp.ggn.shape == (2, model.n_params)
    for m in range(2):
        by_hand = [
            _ggn_by_hand(model, mlps[m], ctx.inputs(ctx.seq.tasks[t].train_idx, t)) for t in (0, 1)
        ]
        torch.testing.assert_close(first[m].double(), by_hand[0], rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(fromp.ggn[m].double(), sum(by_hand), rtol=1e-4, atol=1e-7)
    fromp.before_task(model, 2)
    assert len(fromp.kernel_inv) == 2 and fromp.kernel_inv[0].shape == (2, 10, 4, 4)
    for m in range(2):
        sigma = 1 / (fromp.ggn[m].double() + deltas[m])
        for s in range(2):
            x = fromp.points[s][m]
            for unit in (0, 4, 9):
                jac = _jacobians(model, mlps[m], x, unit).double()
                kernel = jac @ torch.diag(sigma) @ jac.T + KERNEL_JITTER * torch.eye(4)
                # K⁻¹ is symmetric positive definite and inverts K + εI
                kinv = fromp.kernel_inv[s][m, unit].double()
                torch.testing.assert_close(kinv, kinv.T, rtol=1e-5, atol=1e-5 * kinv.abs().max())
                assert torch.all(torch.linalg.eigvalsh(kinv) > 0)
                torch.testing.assert_close(kinv @ kernel, torch.eye(4, dtype=torch.float64),
                                           rtol=0, atol=1e-3)  # fmt: skip


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


def test_a_non_finite_kernel_gets_a_nan_inverse_and_the_others_theirs():
    """A diverged member keeps its slot (docs/population.md): its NaN kernel must not stall the
    jitter loop (it is never positive definite), and the others' inverses are unchanged."""
    good = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    singular = torch.tensor([[1.0, 1.0], [1.0, 1.0]], dtype=torch.float64)  # needs more jitter
    bad = torch.full((2, 2), float("nan"), dtype=torch.float64)
    inverse = inverse_with_jitter(
        torch.stack([good, bad, singular, torch.full((2, 2), np.inf, dtype=torch.float64)])
    )
    assert torch.isnan(inverse[1]).all() and torch.isnan(inverse[3]).all()
    expected = torch.tensor([[2.0, -1.0], [-1.0, 2.0]], dtype=torch.float64) / 3
    torch.testing.assert_close(inverse[0], inverse_with_jitter(good[None])[0])
    torch.testing.assert_close(inverse[0], expected, rtol=1e-5, atol=0)  # (K + 1e-6 I)⁻¹
    torch.testing.assert_close(inverse[2], inverse_with_jitter(singular[None])[0])
    assert torch.isfinite(inverse[2]).all()
