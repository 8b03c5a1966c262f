"""Adam, AdamW and SGD with momentum for stacked (M, P) parameters, per-member lr and weight decay.

``torch.optim`` takes one learning rate per parameter group, and a run trains M ≥ 1 members whose
optimizer settings may differ, so the run's optimizer is its own. The update of member m is the
one of ``torch.optim``'s single-tensor implementation (the CPU default) with member m's
settings, op for op, over all of the member's parameters at once:
- Adam (Kingma & Ba 2015, Algorithm 1; L2 weight decay added to the gradient):
  m ← β1·m + (1−β1)·g,  v ← β2·v + (1−β2)·g²,  θ ← θ − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε)
- AdamW (Loshchilov & Hutter 2019, Algorithm 2): θ ← θ·(1 − lr·wd) first, then Adam's step
- SGD with momentum (torch's form, Sutskever et al. 2013): b ← μ·b + g (b = g at the first
  step), θ ← θ − lr·b; L2 weight decay added to the gradient.
One flat (M, P) update is a handful of kernels whatever the architecture, where torch's
per-parameter loop launches several per parameter tensor. (Compiling the update into one
kernel with ``torch.compile`` was measured slower end to end on an H200, compile time included:
docs/population.md.)
"""

from __future__ import annotations

import torch

from cl_core.config import RunConfig

_TINY = torch.finfo(torch.float32).tiny


def _adam_update(
    theta: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    neg_step_size: torch.Tensor,
    bias_correction2_sqrt: float,
    decay: torch.Tensor,
    weight_decay: torch.Tensor,
    decoupled: bool,
    any_decay: bool,
    beta1: float,
    beta2: float,
    eps: float,
) -> None:
    """One Adam / AdamW step in place, op for op torch's single-tensor update."""
    if any_decay:
        if decoupled:
            theta.mul_(decay)
        else:
            grad = torch.addcmul(grad, theta, weight_decay)
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    # √0 is slow on some CPUs (4x √ of a normal float on AMD EPYC), and second moments of
    # parameters that never get a gradient are 0: clamped to the smallest normal float first,
    # which leaves the denominator bitwise unchanged (√v/√(1−β2ᵗ) ≤ 3.5e-18 then, below half
    # a unit in the last place of ε = 1e-8, so the sum still rounds to ε)
    denom = (exp_avg_sq.clamp_min(_TINY).sqrt_() / bias_correction2_sqrt).add_(eps)
    # θ + (−step_size · m) / denom: the order of torch's addcdiv
    theta.add_(torch.mul(exp_avg, neg_step_size).div_(denom))


class StackedOptimizer:
    """Per-member hyperparameters are (M, 1) tensors; ``select`` drops members' state."""

    def __init__(self, cfgs: list[RunConfig], theta: torch.Tensor) -> None:
        self.device = theta.device
        self.lr = self._column([c.lr for c in cfgs], torch.float64)
        self.weight_decay = self._column([c.weight_decay for c in cfgs], torch.float32)
        self.any_decay = any(c.weight_decay != 0 for c in cfgs)
        self.steps = 0

    def _column(self, values: list[float], dtype: torch.dtype) -> torch.Tensor:
        return torch.tensor(values, dtype=dtype, device=self.device).unsqueeze(1)

    def step(self, theta: torch.Tensor, grad: torch.Tensor) -> None:
        raise NotImplementedError

    def state_tensors(self) -> list[str]:
        """Names of the (M, ...) attributes that ``select`` narrows (and a checkpoint keeps)."""
        return ["lr", "weight_decay"]

    def set_lr(self, values: list[float]) -> None:
        """Member i's learning rate from now on (the per-task selection protocol chooses one
        per task); the moments stay."""
        self.lr = self._column(values, torch.float64)

    def select(self, keep: torch.Tensor) -> None:
        for name in self.state_tensors():
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.index_select(0, keep.to(value.device)))


class StackedAdam(StackedOptimizer):
    """Adam, or AdamW when ``decoupled`` (betas 0.9, 0.999, eps 1e-8: torch's defaults)."""

    def __init__(self, cfgs, theta, decoupled: bool) -> None:
        super().__init__(cfgs, theta)
        self.decoupled = decoupled
        self.beta1, self.beta2, self.eps = 0.9, 0.999, 1e-8
        self.exp_avg = torch.zeros_like(theta)
        self.exp_avg_sq = torch.zeros_like(theta)
        # AdamW's factor 1 − lr·wd, computed in double as torch does, then used in float32
        self.decay = (1 - self.lr * self.weight_decay.double()).float()

    def state_tensors(self) -> list[str]:
        return [*super().state_tensors(), "exp_avg", "exp_avg_sq", "decay"]

    def set_lr(self, values: list[float]) -> None:
        super().set_lr(values)
        self.decay = (1 - self.lr * self.weight_decay.double()).float()

    @torch.no_grad()
    def step(self, theta: torch.Tensor, grad: torch.Tensor) -> None:
        self.steps += 1
        bias_correction1 = 1 - self.beta1**self.steps
        bias_correction2 = 1 - self.beta2**self.steps
        neg_step_size = (-self.lr / bias_correction1).float()
        _adam_update(
            theta,
            grad,
            self.exp_avg,
            self.exp_avg_sq,
            neg_step_size,
            bias_correction2**0.5,
            self.decay,
            self.weight_decay,
            self.decoupled,
            self.any_decay,
            self.beta1,
            self.beta2,
            self.eps,
        )


class StackedSGD(StackedOptimizer):
    """SGD with per-member momentum (0 = plain SGD), no dampening, no Nesterov."""

    def __init__(self, cfgs, theta) -> None:
        super().__init__(cfgs, theta)
        self.momentum = self._column([c.momentum for c in cfgs], torch.float32)
        self.neg_lr = (-self.lr).float()
        self.buffer: torch.Tensor | None = None

    def state_tensors(self) -> list[str]:
        return [*super().state_tensors(), "momentum", "neg_lr", "buffer"]

    def set_lr(self, values: list[float]) -> None:
        super().set_lr(values)
        self.neg_lr = (-self.lr).float()

    @torch.no_grad()
    def step(self, theta: torch.Tensor, grad: torch.Tensor) -> None:
        self.steps += 1
        if self.any_decay:
            grad = torch.addcmul(grad, theta, self.weight_decay)
        if self.buffer is None:
            self.buffer = grad.clone()
        else:
            self.buffer.mul_(self.momentum).add_(grad)
        theta.addcmul_(self.buffer, self.neg_lr)


def make_optimizer(cfgs: list[RunConfig], theta: torch.Tensor) -> StackedOptimizer:
    """The optimizer ``cfgs`` name (adam / adamw / sgd; members share the kind) for parameters
    ``theta`` (M, P), each member with its own lr, weight decay and momentum."""
    kind = cfgs[0].optimizer
    if kind == "sgd":
        return StackedSGD(cfgs, theta)
    return StackedAdam(cfgs, theta, decoupled=kind == "adamw")
