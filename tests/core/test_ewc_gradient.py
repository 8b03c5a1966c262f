"""EWC adds its penalty's gradient in closed form, 2·s·F·(θ − θ*) per term after backward: the
value and the gradient that back-propagation through the penalty gives, for every member with
its own λ (float32 rounding apart: the closed form multiplies in another order)."""

import pytest
import torch
from helpers import make_method, population_setup

from cl_core.methods.ewc import EWC


def _autograd_penalty(ewc: EWC, model) -> torch.Tensor:
    """Σ_m s_m Σ_terms Σ_i F_i (θ_i − θ*_i)² as a differentiable expression of the model's
    parameter leaves (the previous implementation, member by member)."""
    leaves = model.params()
    total = torch.zeros(model.size)
    for fisher, anchor in ewc.terms:
        f_views, a_views = model.params(fisher), model.params(anchor)
        for name, p in leaves.items():
            total = total + (f_views[name] * (p - a_views[name]).pow(2)).flatten(1).sum(1)
    return ewc.scale() * total


@pytest.mark.parametrize(
    ("merge", "half", "lambdas"),
    [("sum", True, [0.37]), ("sum", True, [0.37, 50.0, 2e3]), ("separate", False, [1e4, 3.0])],
)
def test_closed_form_penalty_gradient_equals_autograds(merge, half, lambdas):
    members = [{"train_seed": m} for m in range(len(lambdas))]
    _, ctx, model = population_setup(members, n_tasks=4)
    common = {"merge": merge, "half": half, "fisher_samples": 200}
    ewc = make_method("ewc", ctx, *({"lambda": lam, **common} for lam in lambdas))
    gen = torch.Generator().manual_seed(0)
    for task in range(3):  # three terms when separate
        with torch.no_grad():
            model.theta.add_(0.05 * torch.randn(model.theta.shape, generator=gen))
        ewc.after_task(model, task)
    assert len(ewc.terms) == (3 if merge == "separate" else 1)
    with torch.no_grad():
        model.theta.add_(0.05 * torch.randn(model.theta.shape, generator=gen))
    batch = next(ctx.batches([3], 64))

    model.zero_grad_()
    ce = ewc.ce_and_logits(model, batch)[0]
    reference = ce + _autograd_penalty(ewc, model)
    reference.sum().backward()
    expected = model.grad.clone()

    model.zero_grad_()
    loss = ewc.loss(model, batch, 3)
    loss.sum().backward()
    ewc.before_step(model, 3)
    torch.testing.assert_close(loss.detach(), reference.detach(), rtol=1e-6, atol=0)
    torch.testing.assert_close(model.grad, expected, rtol=1e-5, atol=1e-7)

    # the penalty's gradient alone: before_step on zeroed grads vs back-propagation
    model.zero_grad_()
    _autograd_penalty(ewc, model).sum().backward()
    by_autograd = model.grad.clone()
    model.zero_grad_()
    ewc.before_step(model, 3)
    assert by_autograd.abs().amax(1).min() > 1e-3  # a real share of every member's gradient
    # separate terms are summed in another order: cancellation costs a few bits near zero
    scale = by_autograd.abs().max().item()
    torch.testing.assert_close(model.grad, by_autograd, rtol=1e-6, atol=1e-6 * scale)


def test_no_fisher_after_the_last_task():
    _, ctx, model = population_setup([{}], n_tasks=2)
    ewc = make_method("ewc", ctx)
    ewc.after_task(model, 0)
    ewc.after_task(model, 1)  # the last task: nothing later would use it
    assert len(ewc.terms) == 1
