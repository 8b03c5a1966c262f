"""FROMP: functional regularisation of memorable past (Pan, Swaroop, Immer, Eschenhagen, Turner &
Khan 2020, NeurIPS), as the three-scenario code base runs it (docs/references.md, Method sources).

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
Members of a population differ in τ, δ and the clipping norm; each has its own memorable points,
kernels and GGN (the kernels are computed a few members at a time, to bound memory).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.func import grad, vmap

from cl_core.methods.base import Method, per_member
from cl_core.methods.fisher import fisher_diagonal
from cl_core.methods.memory import gather_rows
from cl_core.models import StackedModel
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
    member_state = ("points", "ggn", "anchors", "kernel_inv")

    def __init__(self, params, ctx) -> None:
        super().__init__(params, ctx)
        self.random = ctx.random("fromp")
        self.points: list[torch.Tensor] = []  # memorable inputs per task, (M, K, D)
        self.ggn: torch.Tensor | None = None  # F, summed over tasks, (M, P)
        self.anchors: list[torch.Tensor] = []  # m_s: (M, K, units) per previous task
        self.kernel_inv: list[torch.Tensor] = []  # K⁻¹: (M, units, K, K) per task

    # ---- after a task: memorable points and F -------------------------------------------------
    def after_task(self, model: StackedModel, task: int) -> None:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            self.points.append(self.select_points(model, task))
        model.train(was_training)
        rows = len(self.ctx.seq.tasks[task].train_idx)
        fisher = fisher_diagonal(model, self.ctx, task, "expected", 0, 1)
        summed = fisher * rows
        self.ggn = summed if self.ggn is None else self.ggn + summed

    def select_points(self, model: StackedModel, task: int) -> torch.Tensor:
        """Per member and class of ``task``, the ``budget`` training inputs with the largest Λ
        trace: (M, K, D)."""
        rows = self.ctx.seq.tasks[task].train_idx
        scores = []
        for start in range(0, len(rows), SELECTION_BATCH):
            x = self.ctx.inputs(rows[start : start + SELECTION_BATCH], task)
            logits = self.forward(model, x, task)
            p = F.softmax(self.ctx.active_logits(logits, task), dim=-1)
            scores.append((p * (1 - p)).sum(-1))
        _, labels = self.ctx.labels(rows, task)
        chosen = rows_by_score(torch.cat(scores, 1), labels, self.shared("budget"))
        return self.ctx.inputs(rows[chosen], task)

    # ---- before a task: anchors and kernels ---------------------------------------------------
    def before_task(self, model: StackedModel, task: int) -> None:
        if task == 0:
            return
        was_training = model.training
        model.eval()
        delta = per_member(self.column("prior_precision"), self.ggn)
        sigma = 1.0 / (self.ggn + delta)
        self.anchors, self.kernel_inv = [], []
        for s, x in enumerate(self.points):
            with torch.no_grad():
                self.anchors.append(self.probs(self.forward(model, x, s), s))
            kernels = function_kernels(model, x, lambda out, s=s: self.probs(out, s), sigma)
            self.kernel_inv.append(inverse_with_jitter(kernels).float())
        model.train(was_training)

    def probs(self, logits: torch.Tensor, task: int) -> torch.Tensor:
        return F.softmax(self.ctx.active_logits(logits, task), dim=-1)

    # ---- a step -------------------------------------------------------------------------------
    def loss(self, model: StackedModel, batch, task: int) -> torch.Tensor:
        ce = super().loss(model, batch, task)
        if not self.points or task == 0:
            return ce
        return ce + self.column("tau") * self.regulariser(model, len(batch), task)

    def regulariser(self, model: StackedModel, batch_size: int, task: int) -> torch.Tensor:
        """½ Σ_s Σ_k δ_{s,k}ᵀ [K_{s,k}⁻¹]_M δ_{s,k} on a subset M of each task's points, (M,)."""
        total = torch.zeros(self.size, device=self.ctx.device)
        per_task = math.ceil(batch_size / task)
        for s in range(task):
            x, anchor, kinv = self.points[s], self.anchors[s], self.kernel_inv[s]
            n = x.shape[1]
            if not self.shared("all_points") and per_task < n:
                pick = self.random.subset(n, per_task)  # (M, r)
                x, anchor = gather_rows(x, pick), gather_rows(anchor, pick)
                units, r = kinv.shape[1], pick.shape[1]
                rows = pick.view(-1, 1, r, 1).expand(-1, units, r, n)
                kinv = kinv.gather(2, rows)
                kinv = kinv.gather(3, pick.view(-1, 1, 1, r).expand(-1, units, r, r))
            delta = (self.probs(self.forward(model, x, s), s) - anchor).transpose(1, 2)
            total = total + 0.5 * torch.einsum("mki,mkij,mkj->m", delta, kinv, delta)
        return total

    @torch.no_grad()
    def before_step(self, model: StackedModel, task: int) -> None:
        """Clip each member's gradient norm at its ``grad_clip`` (as ``clip_grad_norm_``)."""
        if not any(p["grad_clip"] > 0 for p in self.params):
            return
        clip = self.column("grad_clip")
        norm = torch.linalg.vector_norm(model.grad, dim=1)
        coef = (clip / (norm + 1e-6)).clamp(max=1.0)
        model.grad.mul_(torch.where(clip > 0, coef, torch.ones_like(coef)).unsqueeze(1))


def rows_by_score(scores: torch.Tensor, labels: torch.Tensor, per_class: int) -> torch.Tensor:
    """For each label (in increasing order), the ``per_class`` positions with the largest scores
    per member, best first (ties keep data order): (M, K) indices into the rows."""
    chosen = []
    for label in labels.unique().tolist():
        rows = (labels == label).nonzero().flatten()
        order = torch.sort(scores[:, rows], dim=1, descending=True, stable=True).indices
        chosen.append(rows[order[:, :per_class]])
    return torch.cat(chosen, dim=1)


def inverse_with_jitter(kernels: torch.Tensor, jitter: float = KERNEL_JITTER) -> torch.Tensor:
    """(K + εI)⁻¹ of every matrix of ``kernels`` (..., n, n) by Cholesky, in float64; ε grows
    tenfold, matrix by matrix, while K + εI is not numerically positive definite (K = J Σ Jᵀ is
    only semi-definite, and ill-conditioned in float32). A matrix with a non-finite entry (a
    diverged member's) is never positive definite: its inverse is NaN, so the NaN reaches that
    member's loss instead of growing ε forever."""
    eye = torch.eye(kernels.shape[-1], dtype=kernels.dtype, device=kernels.device)
    finite = torch.isfinite(kernels).all(-1).all(-1)[..., None, None]
    kernels = torch.where(finite, kernels, eye)
    eps = torch.full(
        (*kernels.shape[:-2], 1, 1), jitter, dtype=kernels.dtype, device=kernels.device
    )
    while True:
        factor, info = torch.linalg.cholesky_ex(kernels + eps * eye)
        bad = info != 0
        if not bad.any():
            return torch.where(finite, torch.cholesky_inverse(factor), math.nan)
        eps = torch.where(bad[..., None, None], eps * 10, eps)


def function_kernels(model: StackedModel, x: torch.Tensor, output, sigma: torch.Tensor):
    """K_k = J_k Σ J_kᵀ per member and output unit k: (M, units, n, n) in float64, J_k the
    per-sample gradients of ``output(logits)[..., k]`` at each member's inputs ``x`` (M, n, D)
    and Σ its diagonal covariance ``sigma`` (M, P). Per-sample gradients come from torch.func,
    one member and one parameter tensor at a time: at most n × (largest parameter) values are
    held at once, and a member's kernel is computed exactly as a run of it alone computes it (K
    is ill-conditioned, so the last bits of a batched kernel would matter)."""
    m, n = x.shape[:2]
    with torch.no_grad():
        units = output(model(x[:, :1])).shape[-1]
    kernels = torch.zeros(m, units, n, n, dtype=torch.float64, device=x.device)
    for member in range(m):
        idx = torch.tensor([member], device=x.device)
        sub = model.subset(idx)
        base = sub.params()
        sig = sub.params(sigma.index_select(0, idx))
        xs = x.index_select(0, idx)
        for name in base:

            def unit_output(value, xi, k, name=name, sub=sub, base=base):
                out = sub(xi.unsqueeze(1), params={**base, name: value})
                return output(out)[:, 0, k].sum()  # summed over members: each row its own

            for k in range(units):
                jac = vmap(grad(unit_output), in_dims=(None, 1, None))(base[name], xs, k)
                jac = jac.reshape(n, len(idx), -1).transpose(0, 1).double()  # (m, n, p)
                weighted = jac * sig[name].reshape(len(idx), 1, -1).double()
                kernels[idx, k] += weighted @ jac.transpose(1, 2)
    return kernels
