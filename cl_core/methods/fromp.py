"""FROMP: functional regularisation of memorable past (Pan, Swaroop, Immer, Eschenhagen, Turner &
Khan 2020, NeurIPS), as the three-scenario code base runs it (REFERENCE R7).

Memorable points (Pan et al. Sec. 3.2): after task t, for each of its classes the ``budget``
training samples with the largest Λ(x) = Σ_k p_k(x)(1 − p_k(x)), the trace of the softmax
Hessian at the model's outputs p(x) over the task's active units ("lambda_descend").

Posterior covariance (Sec. 3.1, the diagonal GGN / Laplace approximation): Σ = diag(F + δ)⁻¹ with
F = Σ_tasks Σ_x diag(J_f(x)ᵀ Λ(x) J_f(x)), J_f the Jacobian of the logits, Λ = diag(p) − ppᵀ;
F sums over every training sample of every task learned, δ is the prior precision. (This F is
the "expected" Fisher of EWC summed instead of averaged: Σ_c p_c (∇ log p_c)² = diag(Jᵀ Λ J).)

Regulariser (eq. 9 with the kernel of eq. 8, block-diagonal across output units, as the paper
and both reference implementations use it): before task t the anchors m_{s,k} = p_k(x) and, per
previous task s and output unit k,
    K_{s,k} = J_{s,k} Σ J_{s,k}ᵀ + 10⁻⁶ I,   J_{s,k} = ∂p_k(x)/∂θ at task s's memorable points
(p = softmax over task s's active units, computed with the parameters after task t−1). The loss
of a step is
    CE + τ/2 · Σ_{s<t} Σ_k (p_k(M_s; θ) − m_{s,k})ᵀ [K_{s,k}⁻¹]_M (p_k(M_s; θ) − m_{s,k}),
whose gradient is the reference's τ Σ J_kᵀ K_k⁻¹ (p_k − m_k). As in the three-scenario code base,
each step uses a random subset M_s of ⌈B/t⌉ memorable points per previous task with the
matching rows and columns of K⁻¹ (``all_points`` uses all of them, as Pan et al.), and the
total gradient's norm is clipped at ``grad_clip`` (1.0 there; 0 = off). τ scales the
regulariser (three-scenario convention); Pan et al.'s code instead scales the data term by 1/τ
(with clip 0.1), which is the same objective up to the learning rate.
Defaults are the three-scenario values for class-IL Split MNIST (budget 100 per class, τ = 1000;
task-IL 0.01, domain-IL 10: the vdv-split preset sets those), δ = 10⁻³.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from cl_core.methods.base import Method
from cl_core.methods.fisher import fisher_diagonal
from cl_core.params import HyperParam

KERNEL_JITTER = 1e-6
SELECTION_BATCH = 1024


class FROMP(Method):
    """Functional regulariser on memorable points, weighted by the GP kernel's inverse."""

    name = "fromp"
    task_free = False  # memorable points and kernels are kept per task
    hyperparams = {
        p.name: p
        for p in (
            HyperParam("tau", "float", 1000.0, "regulariser strength τ", 0.0, 1e8, log=True),
            HyperParam("budget", "int", 100, "memorable points per class", low=1, high=10**6),
            HyperParam("prior_precision", "float", 1e-3, "prior precision δ", 0, 1e6, True),
            HyperParam("grad_clip", "float", 1.0, "clip the gradient norm (0 = off)", 0.0, 1e6),
            HyperParam("all_points", "bool", False, "use every memorable point at each step"),
        )
    }

    def __init__(self, params, ctx) -> None:
        super().__init__(params, ctx)
        self.gen = ctx.new_generator("fromp")
        self.points: list[torch.Tensor] = []  # memorable inputs per task
        self.ggn: dict[str, torch.Tensor] | None = None  # F, summed over tasks
        self.anchors: list[torch.Tensor] = []  # m_s: (points, units) per previous task
        self.kernel_inv: list[torch.Tensor] = []  # K⁻¹: (units, points, points) per task

    # ---- after a task: memorable points and F -------------------------------------------------
    @torch.no_grad()
    def after_task(self, model: nn.Module, task: int) -> None:
        was_training = model.training
        model.eval()
        self.points.append(self.select_points(model, task))
        model.train(was_training)
        rows = len(self.ctx.seq.tasks[task].train_idx)
        with torch.enable_grad():
            fisher = fisher_diagonal(model, self.ctx, task, "expected", 0, 1)
        summed = {n: f * rows for n, f in fisher.items()}
        self.ggn = summed if self.ggn is None else {n: self.ggn[n] + summed[n] for n in self.ggn}

    def select_points(self, model: nn.Module, task: int) -> torch.Tensor:
        """Per class of ``task``, the ``budget`` training inputs with the largest Λ trace."""
        scores, xs, labels = [], [], []
        for batch in self.ctx.batches([task], SELECTION_BATCH, shuffle=False):
            p = F.softmax(self.ctx.active_logits(self.forward(model, batch.x, task), task), dim=1)
            scores.append((p * (1 - p)).sum(1))
            xs.append(batch.x)
            labels.append(batch.label)
        budget = self.params["budget"]
        return xs_by_score(torch.cat(xs), torch.cat(scores), torch.cat(labels), budget)

    # ---- before a task: anchors and kernels ---------------------------------------------------
    def before_task(self, model: nn.Module, task: int) -> None:
        if task == 0:
            return
        was_training = model.training
        model.eval()
        sigma = {n: 1.0 / (f + self.params["prior_precision"]) for n, f in self.ggn.items()}
        self.anchors, self.kernel_inv = [], []
        for s, x in enumerate(self.points):
            with torch.no_grad():
                probs = F.softmax(self.ctx.active_logits(self.forward(model, x, s), s), dim=1)
            self.anchors.append(probs)
            kernels = function_kernels(model, x, lambda out, s=s: self.probs(out, s), sigma)
            self.kernel_inv.append(inverse_with_jitter(kernels).float())
        model.train(was_training)

    def probs(self, logits: torch.Tensor, task: int) -> torch.Tensor:
        return F.softmax(self.ctx.active_logits(logits, task), dim=-1)

    # ---- a step -------------------------------------------------------------------------------
    def loss(self, model: nn.Module, batch, task: int) -> torch.Tensor:
        ce = super().loss(model, batch, task)
        if not self.points or task == 0:
            return ce
        return ce + self.params["tau"] * self.regulariser(model, len(batch), task)

    def regulariser(self, model: nn.Module, batch_size: int, task: int) -> torch.Tensor:
        """½ Σ_s Σ_k δ_{s,k}ᵀ [K_{s,k}⁻¹]_M δ_{s,k} on a subset M of each task's points."""
        total = torch.zeros((), device=self.ctx.device)
        per_task = math.ceil(batch_size / task)
        for s in range(task):
            x, anchor, kinv = self.points[s], self.anchors[s], self.kernel_inv[s]
            if not self.params["all_points"] and per_task < len(x):
                pick = torch.randperm(len(x), generator=self.gen, device=self.gen.device)
                pick = pick[:per_task]
                x, anchor, kinv = x[pick], anchor[pick], kinv[:, pick][:, :, pick]
            delta = (self.probs(self.forward(model, x, s), s) - anchor).T  # (units, points)
            total = total + 0.5 * torch.einsum("ki,kij,kj->", delta, kinv, delta)
        return total

    def before_step(self, model: nn.Module, task: int) -> None:
        if self.params["grad_clip"] > 0:
            nn.utils.clip_grad_norm_(model.parameters(), self.params["grad_clip"])


def xs_by_score(
    x: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, per_class: int
) -> torch.Tensor:
    """For each label (in increasing order), the ``per_class`` rows of ``x`` with the largest
    scores, best first (ties keep data order)."""
    chosen = []
    for label in labels.unique().tolist():
        rows = (labels == label).nonzero().flatten()
        order = torch.sort(scores[rows], descending=True, stable=True).indices
        chosen.append(rows[order[:per_class]])
    return x[torch.cat(chosen)]


def inverse_with_jitter(kernels: torch.Tensor, jitter: float = KERNEL_JITTER) -> torch.Tensor:
    """(K + εI)⁻¹ by Cholesky, in float64; ε grows tenfold while K + εI is not numerically
    positive definite (K = J Σ Jᵀ is only semi-definite, and ill-conditioned in float32)."""
    eye = torch.eye(kernels.shape[-1], dtype=kernels.dtype, device=kernels.device)
    while True:
        factor, info = torch.linalg.cholesky_ex(kernels + jitter * eye)
        if not info.any():
            return torch.cholesky_inverse(factor)
        jitter *= 10


def function_kernels(model: nn.Module, x: torch.Tensor, output, sigma: dict) -> torch.Tensor:
    """K_k = J_k Σ J_kᵀ for every output unit k: (units, n, n), J_k the per-sample gradients of
    ``output(logits)[:, k]`` at inputs ``x`` and Σ the diagonal covariance (one tensor per
    parameter), in float64. Per-sample gradients come from torch.func, one parameter tensor at a
    time, so at most n × (largest parameter) values are held at once."""
    params = {n: p.detach() for n, p in model.named_parameters()}
    with torch.no_grad():
        units = output(model(x[:1])).shape[1]
    kernels = torch.zeros(units, len(x), len(x), dtype=torch.float64, device=x.device)
    for name in params:

        def unit_output(p, xi, k, name=name):
            out = functional_call(model, {**params, name: p}, (xi.unsqueeze(0),))
            return output(out)[0, k]

        for k in range(units):
            jac = vmap(grad(unit_output), in_dims=(None, 0, None))(params[name], x, k)
            jac = jac.reshape(len(x), -1).double()
            kernels[k] += (jac * sigma[name].reshape(1, -1).double()) @ jac.T
    return kernels
