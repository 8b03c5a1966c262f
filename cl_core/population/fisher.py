"""Diagonal Fisher estimates of stacked MLPs: ``cl_core.methods.fisher`` for a whole population.

The same four kinds (see ``fisher_diagonal``), each member on its own draw of the task's rows.
Per-sample kinds use the outer-product identity for linear layers (Goodfellow 2015): a sample's
weight gradient is g aᵀ, so Σ_n w_n (g_n a_nᵀ)² = (w g²)ᵀ a², one batched matmul per layer after
one backward; "batch" squares each member's batch-mean gradient (REFERENCE R1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cl_core.population.context import PopulationContext, StackedBatch, member_cross_entropy
from cl_core.population.network import StackedMLP

PER_SAMPLE_CHUNK = 1024  # rows per member per backward, as the single-run Fisher


@torch.enable_grad()
def stacked_fisher(
    net: StackedMLP,
    pctx: PopulationContext,
    members: list[int],
    task: int,
    kind: str,
    samples: int,
    batch_size: int,
) -> torch.Tensor:
    """(len(members), P) diagonal Fisher of ``members`` on ``task``'s training rows.

    Every member draws its rows from its own generator, as ``fisher_diagonal`` does in a single
    run; ``samples`` = 0 uses all rows.
    """
    limit = samples or None
    keep = torch.tensor(members, device=net.theta.device)
    theta = net.theta.detach().index_select(0, keep)
    fisher = torch.zeros_like(theta)
    if kind == "batch":
        count = _batch_fisher(net, pctx, members, task, batch_size, limit, theta, fisher)
    else:
        count = 0
        for batch in pctx.batches([task], PER_SAMPLE_CHUNK, limit=limit, members=members):
            _accumulate(net, pctx, members, batch, task, kind, theta, fisher)
            count += batch.x.shape[1]
    return fisher / max(count, 1)


def _batch_fisher(net, pctx, members, task, batch_size, limit, theta, fisher) -> int:
    """Σ over batches of each member's squared batch-mean gradient; returns the batch count."""
    layers = net.layers(theta.requires_grad_(True))
    params = [p for layer in layers for p in layer]
    n_batches = 0
    for batch in pctx.batches([task], batch_size, limit=limit, members=members):
        logits = pctx.active_logits(net.forward(batch.x, layers), task)
        loss = member_cross_entropy(logits, batch.target).sum()
        grads = torch.autograd.grad(loss, params)
        for view, g in zip(_param_views(net, fisher), grads, strict=True):
            view.add_(g.detach() ** 2)
        n_batches += 1
    return n_batches


def _accumulate(net, pctx, members, batch: StackedBatch, task, kind, theta, fisher) -> None:
    """Σ_n w_n (per-sample grad)² from layer inputs a and output gradients g, per member."""
    logits, record = net.forward_recording(batch.x, net.layers(theta))
    log_probs = F.log_softmax(pctx.active_logits(logits, task), dim=2)
    outputs = [z for _, z in record]
    views = _param_views(net, fisher)
    for labels, weight in _labels_and_weights(pctx, members, logits, batch, task, kind):
        total = log_probs.gather(2, labels.unsqueeze(2)).sum()
        grads = torch.autograd.grad(total, outputs, retain_graph=True)
        for k, ((a, _), g) in enumerate(zip(record, grads, strict=True)):
            g2 = weight.unsqueeze(2) * g.detach() ** 2
            views[2 * k].add_(torch.bmm(g2.transpose(1, 2), a.detach() ** 2))
            views[2 * k + 1].add_(g2.sum(1))


def _labels_and_weights(pctx, members, logits, batch, task, kind):
    """(labels (M, N), weights (M, N)) pairs whose weighted squared gradients make the Fisher."""
    ones = torch.ones(batch.target.shape, device=logits.device)
    if kind == "empirical":
        return [(batch.target, ones)]
    probs = F.softmax(pctx.active_logits(logits, task).detach(), dim=2)
    if kind == "sampled":
        drawn = [
            torch.multinomial(p, 1, generator=pctx.members[i].device_gen).squeeze(1)
            for i, p in zip(members, probs, strict=True)
        ]
        return [(torch.stack(drawn), ones)]
    return [(torch.full_like(batch.target, c), probs[:, :, c]) for c in range(probs.shape[2])]


def _param_views(net: StackedMLP, fisher: torch.Tensor) -> list[torch.Tensor]:
    """Per-parameter views of a (M, P) tensor shaped like the layers' weights and biases."""
    return [p for layer in net.layers(fisher) for p in layer]
