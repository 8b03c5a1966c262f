"""M members of one architecture as one computation: stacked parameters, batched layers.

Every run trains a population: a single run is a population of one (M = 1), so each model and
method is written once, for M ≥ 1 members (docs/population.md).

Parameters. All members' trainable parameters live in one (M, P) tensor ``theta``, member-major,
each member's parameters flattened in a fixed order. Optimizers, penalties (EWC, SI), gradient
projections (A-GEM) and snapshots (LwF's old model) are then a few elementwise ops over the whole
population, with per-member hyperparameters as (M, 1) columns. Each parameter is a view
(M, *shape) of ``theta``; those views are the autograd leaves, and their ``.grad`` are views of
one (M, P) tensor ``grad`` that backward accumulates into, so that no per-parameter gradient is
ever scattered into a full (M, P) tensor.

Inputs. A training batch holds each member's own samples, (M, N, ...); an evaluation batch is
shared by all members, (N, ...). Layers take either.

Layers. A linear layer of all members is one ``torch.baddbmm`` (measured faster than
``torch.func.vmap`` over ``functional_call``: ``benchmarks/population_speed.py
--compare-backends``). A convolution of all members is one grouped convolution (``groups=M``) on
the members' channels side by side, (N, M·C, H, W), and batch norm over that layout normalises
each member's channels with that member's own statistics.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

# Our grads are strided views of one (M, P) tensor on purpose (see module docstring): autograd
# accumulates into them in place and only warns that it cannot steal its buffer instead.
warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")

Params = dict[str, torch.Tensor]  # parameter name -> (M, *shape) view


class StackedParameters:
    """The trainable parameters of M members: ``theta`` (M, P), named views, bound grads."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], size: int, device: torch.device) -> None:
        self.shapes = dict(shapes)
        self.slices: dict[str, slice] = {}
        offset = 0
        for name, shape in self.shapes.items():
            n = math.prod(shape)
            self.slices[name] = slice(offset, offset + n)
            offset += n
        self.n_params = offset
        self.theta = torch.zeros(size, offset, device=device)
        self.grad = torch.zeros_like(self.theta)
        self.leaves: Params = {}
        self.bind()

    @property
    def size(self) -> int:
        return self.theta.shape[0]

    def __getstate__(self) -> dict:
        """For checkpoints: the leaves are views of ``theta``, bound again on loading."""
        state = dict(self.__dict__)
        state["leaves"] = {}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.bind()

    def views(self, theta: torch.Tensor) -> Params:
        """Named (M, *shape) views of any (M, P) tensor laid out like ``theta``."""
        m = theta.shape[0]
        return {n: theta[:, s].view(m, *self.shapes[n]) for n, s in self.slices.items()}

    def bind(self) -> None:
        """Make the views of ``theta`` the autograd leaves, their grads views of ``grad``."""
        grads = self.views(self.grad)
        self.leaves = self.views(self.theta)
        for name, leaf in self.leaves.items():
            leaf.requires_grad_(True)
            leaf.grad = grads[name]

    def load(self, member: int, tensors: dict[str, torch.Tensor]) -> None:
        """Set member ``member``'s parameters named in ``tensors`` ((*shape) each)."""
        with torch.no_grad():
            for name, value in tensors.items():
                self.theta[member, self.slices[name]] = value.reshape(-1).to(self.theta.device)

    def columns(self, names: Iterable[str]) -> slice:
        """The columns of ``theta`` holding parameters ``names`` (declared consecutively)."""
        parts = sorted((self.slices[n].start, self.slices[n].stop) for n in names)
        for (_, stop), (start, _) in zip(parts[:-1], parts[1:], strict=True):
            if stop != start:
                raise ValueError(f"parameters {list(names)} are not stored consecutively")
        return slice(parts[0][0], parts[-1][1])

    def select(self, keep: torch.Tensor) -> None:
        """Keep the members at positions ``keep`` (a long tensor)."""
        self.theta = self.theta.index_select(0, keep.to(self.theta.device))
        self.grad = torch.zeros_like(self.theta)
        self.bind()

    def replace(self, theta: torch.Tensor) -> None:
        """Take ``theta`` (M', P) as the parameters (a checkpoint, a narrowed copy)."""
        self.theta = theta.detach().clone().to(self.theta.device)
        self.grad = torch.zeros_like(self.theta)
        self.bind()


class StackedModel(nn.Module):
    """Base of stacked models: ``store`` holds the trainable parameters; subclasses implement
    ``features(x, params, gates)`` and keep the output layer's parameters as ``head.weight`` /
    ``head.bias`` (so that methods can use features and head with any architecture).

    ``forward(x, params)`` = ``head(features(x))``: logits (M, N, out). ``params`` lets a caller
    evaluate other parameters of the same layout (a snapshot, a Fisher's detached copy);
    ``gates`` (one tensor per gated hidden layer, broadcastable to (M, N, units)) multiply the
    outputs of the fully connected hidden layers (XdG).
    """

    head_names = ("head.weight", "head.bias")

    def __init__(self, store: StackedParameters) -> None:
        super().__init__()
        self.store = store

    # ---- parameters ---------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return self.store.size

    @property
    def theta(self) -> torch.Tensor:
        return self.store.theta

    @property
    def grad(self) -> torch.Tensor:
        return self.store.grad

    @property
    def n_params(self) -> int:
        """Trainable parameters of one member."""
        return self.store.n_params

    def params(self, theta: torch.Tensor | None = None) -> Params:
        """The leaves (``theta=None``) or views of another (M, P) tensor."""
        return self.store.leaves if theta is None else self.store.views(theta)

    def optimized(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(parameters, their grads) the trainer's optimizer updates: all of ``theta``."""
        return self.theta, self.grad

    def zero_grad_(self) -> None:
        self.store.grad.zero_()

    # ---- computation --------------------------------------------------------------------------
    def features(
        self, x: torch.Tensor, params: Params | None = None, gates: list | None = None
    ) -> torch.Tensor:
        """The output layer's input, (M, N, feature_dim)."""
        raise NotImplementedError

    def head(self, features: torch.Tensor, params: Params | None = None) -> torch.Tensor:
        p = self.params() if params is None else params
        return linear(features, p["head.weight"], p["head.bias"])

    def forward(
        self, x: torch.Tensor, params: Params | None = None, gates: list | None = None
    ) -> torch.Tensor:
        return self.head(self.features(x, params, gates), params)

    @property
    def feature_dim(self) -> int:
        return self.store.shapes["head.weight"][1]

    def gated_widths(self) -> list[int]:
        """Units of each fully connected hidden layer whose output XdG may gate."""
        return []

    # ---- members ------------------------------------------------------------------------------
    def select(self, keep: torch.Tensor, _done: set[int] | None = None) -> None:
        """Keep the members at positions ``keep``: parameters and per-member buffers (a store
        shared with a child model is narrowed once)."""
        done = set() if _done is None else _done
        if id(self.store) not in done:
            self.store.select(keep)
            done.add(id(self.store))
        for name, buf in list(self._buffers.items()):
            if buf is not None:
                self._buffers[name] = buf.index_select(0, keep.to(buf.device))
        for module in self.children():
            if isinstance(module, StackedModel):
                module.select(keep, done)

    def frozen_copy(self) -> StackedModel:
        """A copy with its own parameters and buffers, in eval mode, without gradients (the
        previous model of LwF, iCaRL and generative replay)."""
        copy = self._shallow_copy({})
        copy.eval()
        for store in {
            id(m.store): m.store for m in copy.modules() if isinstance(m, StackedModel)
        }.values():
            store.theta.requires_grad_(False)
            for leaf in store.leaves.values():
                leaf.requires_grad_(False)
                leaf.grad = None
        return copy

    def subset(self, keep: torch.Tensor) -> StackedModel:
        """A frozen copy of the members at positions ``keep`` (work done member by member)."""
        copy = self.frozen_copy()
        copy.select(keep)
        for store in {
            id(m.store): m.store for m in copy.modules() if isinstance(m, StackedModel)
        }.values():
            for leaf in store.leaves.values():
                leaf.requires_grad_(False)
                leaf.grad = None
        return copy

    def _shallow_copy(self, memo: dict[int, StackedParameters]) -> StackedModel:
        copy = self.__class__.__new__(self.__class__)
        copy.__dict__ = dict(self.__dict__)
        copy._parameters = dict(self._parameters)
        copy._buffers = {
            k: (v.clone() if v is not None else None) for k, v in self._buffers.items()
        }
        copy._modules = {
            k: (m._shallow_copy(memo) if isinstance(m, StackedModel) else m)
            for k, m in self._modules.items()
        }
        if id(self.store) not in memo:
            store = StackedParameters.__new__(StackedParameters)
            store.__dict__ = dict(self.store.__dict__)
            store.replace(self.store.theta)
            memo[id(self.store)] = store
        copy.store = memo[id(self.store)]
        return copy


# ---- layers ------------------------------------------------------------------------------------
def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x Wᵀ + b per member: x (M, N, in) or shared (N, in); weight (M, out, in); bias (M, out)."""
    if x.dim() == 2:
        x = x.unsqueeze(0).expand(weight.shape[0], *x.shape)
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


def linear_shapes(prefix: str, sizes: list[int]) -> dict[str, tuple[int, ...]]:
    """Declared shapes of fully connected layers through ``sizes``: ``{prefix}{k}.weight`` and
    ``.bias`` for k = 0, 1, ..."""
    shapes: dict[str, tuple[int, ...]] = {}
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        shapes[f"{prefix}{k}.weight"] = (b, a)
        shapes[f"{prefix}{k}.bias"] = (b,)
    return shapes


def relu_stack(
    x: torch.Tensor, params: Params, prefix: str, n_layers: int, gates: list | None = None
) -> torch.Tensor:
    """Fully connected ReLU layers ``{prefix}0 .. {prefix}{n−1}``; gate k multiplies layer k's
    output (XdG)."""
    h = x
    for k in range(n_layers):
        h = torch.relu(linear(h, params[f"{prefix}{k}.weight"], params[f"{prefix}{k}.bias"]))
        if gates is not None:
            h = h * gates[k]
    return h


def template_tensors(module: nn.Module, rename: dict[str, str]) -> dict[str, torch.Tensor]:
    """A template module's parameters under stacked names (``rename``: template -> stacked)."""
    named = dict(module.named_parameters())
    return {stacked: named[template].detach() for template, stacked in rename.items()}


def grouped_conv(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride: int, padding: int
) -> torch.Tensor:
    """Convolution of every member: x (N, M·C_in, H, W) members side by side (or shared
    (N, C_in, H, W)); weight (M, C_out, C_in, k, k); bias (M, C_out). Returns
    (N, M·C_out, H', W')."""
    m, c_out = weight.shape[:2]
    w = weight.reshape(m * c_out, *weight.shape[2:])
    shared = x.shape[1] == weight.shape[2]  # (with M = 1 both layouts are the same)
    groups = 1 if shared else m
    return F.conv2d(x, w, bias.reshape(-1), stride=stride, padding=padding, groups=groups)
