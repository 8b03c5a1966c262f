"""Diagonal Fisher information estimates for EWC (REFERENCE R1, R2).

Per-sample squared gradients are never computed by a loop of batch-size-1 backward passes:
- models built only of ``nn.Linear`` layers (the MLPs) use the exact outer-product identity
  (Goodfellow 2015, "Efficient per-example gradient computations"): a Linear layer's per-sample
  weight gradient is g_n a_nᵀ, so Σ_n (g_n a_nᵀ)² = (g²)ᵀ (a²), one matmul after one backward;
- any other model uses ``torch.func`` (``vmap`` over ``grad``), in chunks sized to bound memory.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from cl_core.context import TrainContext

PER_SAMPLE_FLOATS = 2**25  # per-sample gradient floats held at once (128 MiB of float32)


def fisher_diagonal(
    model: nn.Module, ctx: TrainContext, task: int, kind: str, samples: int, batch_size: int
) -> dict[str, torch.Tensor]:
    """Diagonal Fisher of ``model`` on ``task``'s training data, one tensor per parameter.

    kind:
      - "empirical": E_x[(d/dθ log p(y_true|x))²] (per sample, at the true label)
      - "expected":  E_x[Σ_c p(c|x) (d/dθ log p(c|x))²] (the true Fisher of Kirkpatrick et al. 2017)
      - "sampled":   E_x[(d/dθ log p(ŷ|x))²] with ŷ ~ p(·|x) (one Monte Carlo label per sample)
      - "predicted": E_x[(d/dθ log p(ŷ|x))²] with ŷ = argmax_c p(c|x) over the active units (the
                     three-scenario reference's default, ``ContinualLearner.estimate_fisher`` in
                     continual_learner.py of GMvandeVen/continual-learning, 2019; ``--fisher-labels
                     pred`` in its 2022 code)
      - "batch":     R1's approximation: mean over batches of ``batch_size`` of the squared gradient
                     of the batch-mean cross-entropy (not a per-sample Fisher).
    ``samples`` = 0 uses all training samples of the task, else the first ``samples`` of a
    seeded shuffle.
    """
    limit = samples or None
    fisher = {n: torch.zeros_like(p.detach()) for n, p in model.named_parameters()}
    was_training = model.training
    model.eval()
    if kind == "batch":
        count = _batch_fisher(model, ctx, task, batch_size, limit, fisher)
    else:
        if _all_linear(model):
            accumulate, chunk = _accumulate_linear, 1024
        else:  # bound the per-sample gradients held at once
            n_params = sum(f.numel() for f in fisher.values())
            accumulate, chunk = _accumulate_func, max(1, min(1024, PER_SAMPLE_FLOATS // n_params))
        count = 0
        for batch in ctx.batches([task], chunk, limit=limit):
            accumulate(model, ctx, batch, task, kind, fisher)
            count += len(batch)
    model.train(was_training)
    return {n: f / max(count, 1) for n, f in fisher.items()}


def _batch_fisher(model, ctx, task, batch_size, limit, fisher) -> int:
    """Sum of squared batch-mean gradients; returns the number of batches."""
    n_batches = 0
    for batch in ctx.batches([task], batch_size, limit=limit):
        model.zero_grad(set_to_none=True)
        logits = ctx.active_logits(model(batch.x), task)
        F.cross_entropy(logits, batch.target).backward()
        for n, p in model.named_parameters():
            if p.grad is not None:  # frozen parameters (pre-trained conv layers) have none
                fisher[n] += p.grad.detach() ** 2
        n_batches += 1
    model.zero_grad(set_to_none=True)
    return n_batches


def _all_linear(model: nn.Module) -> bool:
    """Whether every parameter belongs to an nn.Linear (the outer-product identity applies)."""
    return all(
        isinstance(m, nn.Linear) for m in model.modules() if list(m.parameters(recurse=False))
    )


def _labels_and_weights(ctx, logits, batch, task, kind) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(labels, per-sample weight) pairs whose weighted squared gradients make up the Fisher."""
    ones = torch.ones(len(batch), device=logits.device)
    if kind == "empirical":
        return [(batch.target, ones)]
    active = ctx.active_logits(logits, task).detach()
    if kind == "predicted":
        return [(active.argmax(1), ones)]
    probs = F.softmax(active, dim=1)
    if kind == "sampled":
        return [(torch.multinomial(probs, 1, generator=ctx.device_gen).squeeze(1), ones)]
    return [(torch.full_like(batch.target, c), probs[:, c]) for c in range(probs.shape[1])]


def _accumulate_linear(model, ctx, batch, task, kind, fisher) -> None:
    """Σ_n w_n (per-sample grad)² for Linear layers from layer inputs a and output grads g."""
    layers = {m: n for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    seen: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = [
        m.register_forward_hook(lambda mod, inp, out: seen.__setitem__(mod, (inp[0], out)))
        for m in layers
    ]
    try:
        logits = model(batch.x)
    finally:
        for h in hooks:
            h.remove()
    outputs = [seen[m][1] for m in layers]
    log_probs = F.log_softmax(ctx.active_logits(logits, task), dim=1)
    for labels, weight in _labels_and_weights(ctx, logits, batch, task, kind):
        # summed over samples, so each sample's output gradient is its own gradient
        total = log_probs.gather(1, labels.unsqueeze(1)).sum()
        grads = torch.autograd.grad(total, outputs, retain_graph=True)
        for (module, name), g in zip(layers.items(), grads, strict=True):
            a = seen[module][0].detach()
            g2 = weight.unsqueeze(1) * g.detach() ** 2
            fisher[f"{name}.weight"] += g2.T @ a**2
            if module.bias is not None:
                fisher[f"{name}.bias"] += g2.sum(0)


def _accumulate_func(model, ctx, batch, task, kind, fisher) -> None:
    """Σ_n w_n (per-sample grad)² for any model, per-sample gradients from torch.func."""
    params = {n: p.detach() for n, p in model.named_parameters()}

    def log_prob(p, x, label):
        logits = functional_call(model, p, (x.unsqueeze(0),))
        return -F.cross_entropy(ctx.active_logits(logits, task), label.unsqueeze(0))

    per_sample_grad = vmap(grad(log_prob), in_dims=(None, 0, 0))
    with torch.no_grad():
        logits = model(batch.x)
    for labels, weight in _labels_and_weights(ctx, logits, batch, task, kind):
        for n, g in per_sample_grad(params, batch.x, labels).items():
            fisher[n] += torch.einsum("b,b...->...", weight, g**2)
