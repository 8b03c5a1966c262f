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
from torch import nn

from cl_core.errors import ClsweepError
from cl_core.models.base import ContinualModel

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
