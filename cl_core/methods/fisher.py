"""Diagonal Fisher information estimates for EWC (REFERENCE R1, R2).

Per-sample gradients are computed with ``torch.func`` (``vmap`` over ``grad`` of a functional
call), in chunks sized to bound memory, instead of a loop of batch-size-1 backward passes.
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
      - "batch":     R1's approximation: mean over batches of ``batch_size`` of the squared gradient
                     of the batch-mean cross-entropy (not a per-sample Fisher).
    ``samples`` = 0 uses all training samples of the task, else the first ``samples`` of a
    seeded shuffle.
    """
    limit = samples or None
    params = {n: p.detach() for n, p in model.named_parameters()}
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    was_training = model.training
    model.eval()
    if kind == "batch":
        count = _batch_fisher(model, ctx, task, batch_size, limit, fisher)
    else:
        n_params = sum(p.numel() for p in params.values())
        chunk = max(1, min(1024, PER_SAMPLE_FLOATS // n_params))
        count = 0
        for batch in ctx.batches([task], chunk, limit=limit):
            _accumulate_per_sample(model, ctx, params, batch, task, kind, fisher)
            count += len(batch)
    model.train(was_training)
    return {n: f / max(count, 1) for n, f in fisher.items()}


def _batch_fisher(model, ctx, task, batch_size, limit, fisher) -> int:
    """Sum of squared batch-mean gradients; returns the number of batches."""
    n_batches = 0
    for batch in ctx.batches([task], batch_size, limit=limit):
        model.zero_grad(set_to_none=True)
        loss, _ = ctx.loss(model, batch)
        loss.backward()
        for n, p in model.named_parameters():
            fisher[n] += p.grad.detach() ** 2
        n_batches += 1
    model.zero_grad(set_to_none=True)
    return n_batches


def _accumulate_per_sample(model, ctx, params, batch, task, kind, fisher) -> None:
    """Add Σ_samples (per-sample grad)² (weighted by p(c|x) for "expected") into ``fisher``."""

    def log_prob(p, x, label):
        logits = functional_call(model, p, (x.unsqueeze(0),))
        return -F.cross_entropy(ctx.active_logits(logits, task), label.unsqueeze(0))

    per_sample_grad = vmap(grad(log_prob), in_dims=(None, 0, 0))
    if kind == "expected":
        with torch.no_grad():
            probs = F.softmax(ctx.active_logits(model(batch.x), task), dim=1)
        for label in range(probs.shape[1]):
            labels = torch.full_like(batch.target, label)
            grads = per_sample_grad(params, batch.x, labels)
            weight = probs[:, label]
            for n, g in grads.items():
                fisher[n] += torch.einsum("b,b...->...", weight, g**2)
        return
    if kind == "sampled":
        with torch.no_grad():
            probs = F.softmax(ctx.active_logits(model(batch.x), task), dim=1)
        labels = torch.multinomial(probs, 1, generator=ctx.device_gen).squeeze(1)
    else:
        labels = batch.target
    grads = per_sample_grad(params, batch.x, labels)
    for n, g in grads.items():
        fisher[n] += (g**2).sum(0)
