"""Diagonal Fisher information estimates for EWC (docs/references.md, EWC variants), for every
member at once: an (M, P) tensor laid out like the model's parameters ``theta``.

Per-sample squared gradients are never computed by a loop of batch-size-1 backward passes:
- stacked MLPs use the exact outer-product identity (Goodfellow 2015, "Efficient per-example
  gradient computations"): a linear layer's per-sample weight gradient is g_n a_nᵀ, so
  Σ_n w_n (g_n a_nᵀ)² = (w g²)ᵀ (a²), one batched matmul per layer after one backward;
- any other model uses ``torch.func`` (``vmap`` over ``grad``), in chunks sized to bound memory.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import grad, vmap

from cl_core.context import Batch, TrainContext
from cl_core.models import StackedModel
from cl_core.random import MemberRandom

PER_SAMPLE_FLOATS = 2**25  # per-sample gradient floats held at once (128 MiB of float32)
LINEAR_CHUNK = 1024  # rows per member per backward with the outer-product identity


@torch.enable_grad()
def fisher_diagonal(
    model: StackedModel,
    ctx: TrainContext,
    task: int,
    kind: str,
    samples: int,
    batch_size: int,
    random: MemberRandom | None = None,
) -> torch.Tensor:
    """Each member's diagonal Fisher (M, P) on ``task``'s training data, rows of its own draw.

    kind:
      - "empirical": E_x[(d/dθ log p(y_true|x))²] (per sample, at the true label)
      - "expected":  E_x[Σ_c p(c|x) (d/dθ log p(c|x))²] (the true Fisher of Kirkpatrick et al. 2017)
      - "sampled":   E_x[(d/dθ log p(ŷ|x))²] with ŷ ~ p(·|x) (one Monte Carlo label per sample,
                     drawn from ``random``)
      - "predicted": E_x[(d/dθ log p(ŷ|x))²] with ŷ = argmax_c p(c|x) over the active units (the
                     three-scenario reference's default, ``ContinualLearner.estimate_fisher`` in
                     continual_learner.py of GMvandeVen/continual-learning, 2019; ``--fisher-labels
                     pred`` in its 2022 code)
      - "batch":     the classic Permuted MNIST script's approximation: mean over batches of
                     ``batch_size`` of the squared gradient of the batch-mean cross-entropy (not a
                     per-sample Fisher).
    ``samples`` = 0 uses all training samples of the task, else the first ``samples`` of each
    member's seeded shuffle.
    """
    limit = samples or None
    theta = model.theta.detach()
    fisher = torch.zeros_like(theta)
    was_training = model.training
    model.eval()
    try:
        if kind == "batch":
            count = _batch_fisher(model, ctx, task, batch_size, limit, theta, fisher)
        else:
            linear = hasattr(model, "forward_recording")
            if linear:
                accumulate, chunk = _accumulate_linear, LINEAR_CHUNK
            else:  # bound the per-sample gradients held at once
                accumulate = _accumulate_func
                chunk = max(1, min(1024, PER_SAMPLE_FLOATS // fisher.numel()))
            count = 0
            for batch in ctx.batches([task], chunk, limit=limit):
                pairs = lambda logits, b=batch: _labels_and_weights(  # noqa: E731
                    ctx, logits, b, task, kind, random
                )
                accumulate(model, ctx, batch, task, pairs, theta, fisher)
                count += len(batch)
    finally:
        model.train(was_training)
    return fisher / max(count, 1)


def _batch_fisher(model, ctx, task, batch_size, limit, theta, fisher) -> int:
    """Sum of squared batch-mean gradients; returns the number of batches."""
    n_batches = 0
    for batch in ctx.batches([task], batch_size, limit=limit):
        leaf = theta.clone().requires_grad_(True)
        logits = model(batch.x, params=model.params(leaf))
        (g,) = torch.autograd.grad(ctx.cross_entropy(logits, batch).sum(), leaf)
        fisher.add_(g**2)
        n_batches += 1
    return n_batches


def _labels_and_weights(
    ctx: TrainContext,
    logits: torch.Tensor,
    batch: Batch,
    task: int,
    kind: str,
    random: MemberRandom | None,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(labels (M, N), weights (M, N)) pairs whose weighted squared gradients make the Fisher."""
    ones = torch.ones(batch.target.shape, device=logits.device)
    if kind == "empirical":
        return [(batch.target, ones)]
    active = ctx.active_logits(logits, task).detach()
    if kind == "predicted":
        return [(active.argmax(-1), ones)]
    probs = F.softmax(active, dim=-1)
    if kind == "sampled":
        if random is None:
            raise ValueError("the sampled Fisher needs a random stream")
        return [(random.categorical(probs), ones)]
    return [(torch.full_like(batch.target, c), probs[..., c]) for c in range(probs.shape[-1])]


def _accumulate_linear(model, ctx, batch, task, pairs, theta, fisher) -> None:
    """Σ_n w_n (per-sample grad)² for linear layers from layer inputs a and output grads g."""
    params = model.params(theta)
    logits, record = model.forward_recording(batch.x, params)
    log_probs = F.log_softmax(ctx.active_logits(logits, task), dim=-1)
    outputs = [z for _, z in record]
    views = model.params(fisher)
    for labels, weight in pairs(logits):
        # summed over samples, so each sample's output gradient is its own gradient
        total = log_probs.gather(-1, labels.unsqueeze(-1)).sum()
        grads = torch.autograd.grad(total, outputs, retain_graph=True)
        for name, (a, _), g in zip(model.linear_layers(), record, grads, strict=True):
            g2 = weight.unsqueeze(-1) * g.detach() ** 2
            a2 = a.detach() ** 2
            if a2.dim() == 2:
                a2 = a2.unsqueeze(0).expand(g2.shape[0], *a2.shape)
            views[f"{name}.weight"].add_(torch.bmm(g2.transpose(1, 2), a2))
            views[f"{name}.bias"].add_(g2.sum(1))


def _accumulate_func(model, ctx, batch, task, pairs, theta, fisher) -> None:
    """Σ_n w_n (per-sample grad)² for any model, per-sample gradients from torch.func: one
    sample of every member at a time, the members' log-likelihoods summed (each member's
    gradient is its own row)."""

    def log_prob(t, x, label):  # x (M, D): one sample per member; label (M,)
        logits = model(x.unsqueeze(1), params=model.params(t))
        logp = F.log_softmax(ctx.active_logits(logits, task), dim=-1)[:, 0]
        return logp.gather(-1, label.unsqueeze(-1)).sum()

    per_sample = vmap(grad(log_prob), in_dims=(None, 1, 1))
    with torch.no_grad():
        logits = model(batch.x, params=model.params(theta))
    for labels, weight in pairs(logits):
        g = per_sample(theta, batch.x, labels)  # (N, M, P)
        fisher.add_(torch.einsum("mn,nmp->mp", weight, g**2))
