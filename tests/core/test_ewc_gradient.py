"""EWC adds its penalty's gradient in closed form: bitwise what back-propagation through the
penalty gives (the single-run trainer's numbers did not change when it dropped the graph)."""

import pytest
import torch
from helpers import digits_setup

from cl_core.methods.ewc import EWC
from cl_core.params import resolve


def _autograd_penalty(ewc: EWC, model) -> torch.Tensor:
    """The penalty as a differentiable expression (the previous implementation)."""
    total = sum(
        (f * (p - a).pow(2)).sum()
        for fisher, anchor in ewc.terms
        for f, p, a in zip(fisher, model.parameters(), anchor, strict=True)
    )
    return ewc.params["lambda"] * (0.5 if ewc.params["half"] else 1.0) * total


@pytest.mark.parametrize(("merge", "half", "lam"), [("sum", True, 0.37), ("separate", False, 1e4)])
def test_closed_form_penalty_gradient_is_bitwise_autograds(merge, half, lam):
    cfg, ctx, model = digits_setup(n_tasks=4)
    params = {"lambda": lam, "merge": merge, "half": half, "fisher_samples": 200}
    ewc = EWC(resolve(EWC.hyperparams, params, "ewc"), ctx)
    for task in range(3):  # three terms when separate
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        ewc.after_task(model, task)
    assert len(ewc.terms) == (3 if merge == "separate" else 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batch = next(ctx.batches([3], 64))

    model.zero_grad(set_to_none=True)
    ce = ewc.ce_and_logits(model, batch)[0]
    reference = ce + _autograd_penalty(ewc, model)
    reference.backward()
    expected = [p.grad.clone() for p in model.parameters()]

    model.zero_grad(set_to_none=True)
    loss = ewc.loss(model, batch, 3)
    loss.backward()
    ewc.before_step(model, 3)
    assert torch.equal(loss.detach(), reference.detach())
    for p, g in zip(model.parameters(), expected, strict=True):
        assert torch.equal(p.grad, g)
    assert any(not torch.equal(p.grad, torch.zeros_like(p)) for p in model.parameters())


def test_no_fisher_after_the_last_task():
    cfg, ctx, model = digits_setup(n_tasks=2)
    ewc = EWC(resolve(EWC.hyperparams, {}, "ewc"), ctx)
    ewc.after_task(model, 0)
    ewc.after_task(model, 1)  # the last task: nothing later would use it
    assert len(ewc.terms) == 1
