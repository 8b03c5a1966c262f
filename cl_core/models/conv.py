"""The conv net of the three-scenario CIFAR protocol: five conv layers, then fully connected layers.

Architecture (the three-scenario code's ``ConvLayers`` with depth 5, 16 start channels and its
default of depth − 1 = 4 reducing layers, ``models/conv/nets.py``; van de Ven et al. 2022):
  - conv 1: 3x3, stride 1, padding 1, C_in -> 16 channels, batch norm, ReLU;
  - conv 2..5: 3x3, stride 2, padding 1, channels doubled each time (32, 64, 128, 256); each
    halves the image side (rounding up: 32 -> 16 -> 8 -> 4 -> 2, 28 -> 14 -> 7 -> 4 -> 2);
    batch norm and ReLU after conv 2..4; images smaller than 16x16 (the 8x8 digits) are refused,
    since conv 4 would see a 1x1 map;
  - conv 5 has neither batch norm nor ReLU, as in the reference classifier (``no_fnl=True``: its
    conv output goes straight into the first fully connected layer);
  - the conv output (256 x 2 x 2 = 1,024 units for 32x32 inputs) is flattened and fed to the fully
    connected hidden layers (``hidden``, ReLU; the reference's CIFAR setting is 2 x 2,000), whose
    output is the feature vector, then the output layer (``head``).
Convolutions keep their bias (the reference's ``conv_layer`` does, batch norm or not).

XdG gates only the fully connected hidden layers (as the reference does, also for conv nets):
``gated_layers()`` returns their ReLUs.

Pre-trained conv layers (the Split CIFAR-100 protocol: conv layers trained on CIFAR-10, then
frozen): ``conv_weights`` is a state dict of ``ConvNet.conv`` as written by
``python -m cl_core.pretrain``; ``freeze_conv`` stops their gradients and keeps them in eval mode
(batch norm uses its stored running statistics and never updates them), as the reference does
for frozen layers.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from cl_core.errors import ClsweepError
from cl_core.models.base import ContinualModel
from cl_core.models.stacked import (
    StackedModel,
    StackedParameters,
    grouped_conv,
    linear_shapes,
    relu_stack,
    template_tensors,
)

WB = ("weight", "bias")

if TYPE_CHECKING:
    from cl_core.config import RunConfig

CONV_DEPTH = 5
START_CHANNELS = 16
MIN_SIDE = 16  # 16 -> 8 -> 4 -> 2 -> 1: conv 4 (the last with batch norm) still sees 2x2


def conv_trunk(in_channels: int) -> tuple[nn.Sequential, int]:
    """The five conv layers and their output channel count."""
    layers: list[nn.Module] = []
    channels = in_channels
    for layer in range(1, CONV_DEPTH + 1):
        reducing = layer > 1
        out = START_CHANNELS * 2 ** (layer - 1)
        layers.append(nn.Conv2d(channels, out, 3, stride=2 if reducing else 1, padding=1))
        if layer < CONV_DEPTH:
            layers += [nn.BatchNorm2d(out), nn.ReLU()]
        channels = out
    return nn.Sequential(*layers), channels


def check_conv_input(shape: tuple[int, ...], what: str = "the inputs") -> None:
    """Refuse images too small for the conv net: below MIN_SIDE, conv 4 would see a 1x1 map
    (batch norm over one value per channel fails for a batch of one, and 3x3 filters degenerate
    to their centre)."""
    if len(shape) != 3 or min(shape[1:]) < MIN_SIDE:
        raise ClsweepError(
            f"model 'conv' needs images of at least {MIN_SIDE}x{MIN_SIDE} (its stride-2 layers "
            f"halve the side four times); {what} are {'x'.join(map(str, shape[1:]))}: use "
            "--model mlp, or an MNIST or CIFAR benchmark"
        )


def conv_out_side(side: int) -> int:
    """Image side after the conv layers: each stride-2 layer (k=3, p=1) maps s to ceil(s/2)."""
    for _ in range(CONV_DEPTH - 1):
        side = math.ceil(side / 2)
    return side


class ConvNet(ContinualModel):
    """conv layers -> fully connected hidden layers (the features) -> output layer."""

    def __init__(
        self, input_shape: tuple[int, int, int], hidden: tuple[int, ...], out_units: int
    ) -> None:
        super().__init__()
        check_conv_input(input_shape)
        self.input_shape = tuple(input_shape)
        channels, height, width = self.input_shape
        self.conv, out_channels = conv_trunk(channels)
        width_in = out_channels * conv_out_side(height) * conv_out_side(width)
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [nn.Linear(width_in, h), nn.ReLU()]
            width_in = h
        self.fc = nn.Sequential(*layers)
        self.head = nn.Linear(width_in, out_units)
        self.conv_frozen = False

    def features(self, x: torch.Tensor) -> torch.Tensor:
        images = x.view(len(x), *self.input_shape)
        return self.fc(self.conv(images).flatten(1))

    def gated_layers(self) -> list[nn.Module]:
        return [m for m in self.fc if isinstance(m, nn.ReLU)]

    @staticmethod
    def conv_index(k: int) -> int:
        """Position of conv layer k (0-based) in ``conv``: each but the last is followed by
        batch norm and ReLU."""
        return 3 * k

    def freeze_conv(self) -> None:
        """No gradients for the conv layers, and eval mode for them from now on."""
        self.conv.requires_grad_(False)
        self.conv_frozen = True
        self.conv.eval()

    def train(self, mode: bool = True) -> ConvNet:
        """As nn.Module.train, except that frozen conv layers stay in eval mode."""
        super().train(mode)
        if self.conv_frozen:
            self.conv.eval()
        return self


def load_conv_weights(model: ConvNet, path: str | Path) -> None:
    """Load a state dict of ``model.conv`` from ``path``; one-line errors for a missing file or
    one that does not fit."""
    path = Path(path).expanduser()
    made_by = "write one with `python -m cl_core.pretrain --out PATH`"
    if not path.is_file():
        raise ClsweepError(f"conv_weights file {path} not found; {made_by}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same one-line error
        raise ClsweepError(
            f"conv_weights file {path} is not a torch state dict ({type(exc).__name__}); {made_by}"
        ) from None
    expected = model.conv.state_dict()
    if not isinstance(state, dict):
        raise ClsweepError(
            f"conv_weights file {path} holds a {type(state).__name__}, not a state "
            f"dict of the conv layers; {made_by}"
        )
    problems = [f"missing {k}" for k in expected if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    problems += [
        f"{k} is {tuple(state[k].shape)}, expected {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if problems:
        shown = "; ".join(problems[:3]) + (
            f"; ... ({len(problems)} problems)" if len(problems) > 3 else ""
        )
        raise ClsweepError(
            f"conv_weights file {path} does not fit the conv net for inputs of shape "
            f"{model.input_shape} ({shown}); pre-train on a dataset with the same image channels"
        )
    model.conv.load_state_dict(state)


def build_conv(
    cfg: RunConfig, input_shape: tuple[int, int, int], out_units: int, hidden: tuple[int, ...]
) -> ContinualModel:
    """The factory entry for ``model: conv``: ``hidden`` = fully connected widths; conv layers
    loaded from ``cfg.conv_weights`` and frozen if ``cfg.freeze_conv``."""
    model = ConvNet(input_shape, hidden, out_units)
    if cfg.conv_weights:
        load_conv_weights(model, cfg.conv_weights)
    if cfg.freeze_conv:
        model.freeze_conv()
    return model


class StackedConvNet(StackedModel):
    """M members of ``ConvNet``. The members' channels sit side by side, (N, M·C, H, W), from
    the first conv layer's output to the last, so that every conv layer is one grouped
    convolution and every batch norm one ``F.batch_norm`` with per-member statistics.

    Frozen pre-trained conv layers are the same fixed function for every member: they are kept
    once, as the template's module (eval mode, no gradients), and only the fully connected
    layers are stacked.
    """

    def __init__(self, templates: list[ConvNet], device: torch.device) -> None:
        first = templates[0]
        self.input_shape = first.input_shape
        self.frozen_conv = first.conv_frozen
        fc = [m for m in first.fc if isinstance(m, nn.Linear)]
        width_in = first.fc[0].in_features if fc else first.head.in_features
        self.sizes = [width_in] + [lin.out_features for lin in fc]
        shapes: dict[str, tuple[int, ...]] = {}
        rename: dict[str, str] = {}
        convs = [m for m in first.conv if isinstance(m, nn.Conv2d)]
        self.strides = [c.stride[0] for c in convs]
        if not self.frozen_conv:
            for k, conv in enumerate(convs):
                index = first.conv_index(k)
                for p in WB:
                    shapes[f"conv{k}.{p}"] = tuple(getattr(conv, p).shape)
                    rename[f"conv.{index}.{p}"] = f"conv{k}.{p}"
                    if k < len(convs) - 1:
                        shapes[f"bn{k}.{p}"] = (conv.out_channels,)
                        rename[f"conv.{index + 1}.{p}"] = f"bn{k}.{p}"
        shapes.update(linear_shapes("fc", self.sizes))
        rename.update({f"fc.{2 * k}.{p}": f"fc{k}.{p}" for k in range(len(fc)) for p in WB})
        shapes.update({f"head.{p}": tuple(getattr(first.head, p).shape) for p in WB})
        rename.update({f"head.{p}": f"head.{p}" for p in WB})
        store = StackedParameters(shapes, len(templates), device)
        for m, template in enumerate(templates):
            store.load(m, template_tensors(template, rename))
        super().__init__(store)
        self.n_bn = 0 if self.frozen_conv else len(convs) - 1
        for k in range(self.n_bn):
            norms = [t.conv[first.conv_index(k) + 1] for t in templates]
            for stat in ("running_mean", "running_var"):
                stacked = torch.stack([getattr(n, stat) for n in norms]).to(device)
                self.register_buffer(f"bn{k}_{stat}", stacked)
        self.trunk = first.conv.to(device) if self.frozen_conv else None

    def conv_features(self, x: torch.Tensor, params) -> torch.Tensor:
        """The conv layers' flattened output: (M, N, F), or (N, F) for shared inputs through
        frozen conv layers."""
        shared = x.dim() == 2
        m = self.size
        if self.frozen_conv:
            with torch.no_grad():
                images = x.reshape(-1, *self.input_shape)
                out = self.trunk(images).flatten(1)
            return out if shared else out.view(m, -1, out.shape[1])
        if shared:
            h = x.view(len(x), *self.input_shape)
        else:  # (M, N, D) -> (N, M·C, H, W)
            n = x.shape[1]
            h = x.view(m, n, *self.input_shape).transpose(0, 1)
            h = h.reshape(n, m * self.input_shape[0], *self.input_shape[1:])
        last = len(self.strides) - 1
        for k, stride in enumerate(self.strides):
            h = grouped_conv(h, params[f"conv{k}.weight"], params[f"conv{k}.bias"], stride, 1)
            if k < last:
                h = F.batch_norm(
                    h,
                    getattr(self, f"bn{k}_running_mean").view(-1),
                    getattr(self, f"bn{k}_running_var").view(-1),
                    params[f"bn{k}.weight"].reshape(-1),
                    params[f"bn{k}.bias"].reshape(-1),
                    training=self.training,
                )
                h = torch.relu(h)
        n = h.shape[0]
        return h.reshape(n, m, -1).transpose(0, 1)

    def features(self, x, params=None, gates=None) -> torch.Tensor:
        p = self.params() if params is None else params
        return relu_stack(self.conv_features(x, p), p, "fc", len(self.sizes) - 1, gates)

    def gated_widths(self) -> list[int]:
        return self.sizes[1:]

    def train(self, mode: bool = True) -> StackedConvNet:
        """As nn.Module.train, except that frozen conv layers stay in eval mode."""
        super().train(mode)
        if self.trunk is not None:
            self.trunk.eval()
        return self
