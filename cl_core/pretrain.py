"""Pre-train the conv net's conv layers (Split CIFAR-100's CIFAR-10 stage) and save them.

``python -m cl_core.pretrain --out conv.pt [--data-root DIR]`` trains the whole conv net (conv
layers, fully connected layers, a head over all classes) on the training set of one benchmark's
dataset (default CIFAR-10, all 50,000 images, no validation carved), reports test accuracy, and
writes the conv layers' state dict, which a run loads with ``--model conv --conv-weights conv.pt
[--freeze-conv true]``.

Defaults follow the three-scenario code's ``main_pretrain.py`` as its ``all_results.sh`` runs it
for CIFAR-10 (van de Ven et al. 2022): fully connected layers 2 x 2,000, Adam (0.9, 0.999) with
lr 1e-4, batch 256, 100 epochs, data augmentation (random 32x32 crop of the image padded by 4
with symmetric padding, random horizontal flip), per-channel normalisation. Differences: batches
are index draws with the last partial batch kept (it drops it), and augmentation is done on
tensors, batch by batch, with a random stream keyed by the training seed. The conv net trains
here as one ordinary module (a run's template, ``cl_core.models.ConvNet``), with torch's Adam.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from cl_core.config import RunConfig, parse_hidden
from cl_core.context import TrainContext
from cl_core.data import BENCHMARKS, build_tasks, load_dataset
from cl_core.errors import ClsweepError
from cl_core.models import ConvNet, ModelFactory
from cl_core.random import MemberRandom
from cl_core.trainer import resolve_device
from cl_core.validation import validated

AUGMENT_PAD = 4


def symmetric_pad(images: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad the last two dims by mirroring, edge included (numpy's / torchvision's "symmetric")."""
    for dim in (-1, -2):
        first = images.narrow(dim, 0, pad).flip(dim)
        last = images.narrow(dim, images.shape[dim] - pad, pad).flip(dim)
        images = torch.cat([first, images, last], dim)
    return images


def augment(images: torch.Tensor, random: MemberRandom, pad: int = AUGMENT_PAD) -> torch.Tensor:
    """Random crop of the symmetrically padded images, then a random horizontal flip (p = 1/2);
    ``random`` is a stream of one member."""
    n, _, h, w = images.shape
    device = images.device
    padded = symmetric_pad(images, pad)
    dy = random.randint(2 * pad + 1, n)[0].to(device)
    dx = random.randint(2 * pad + 1, n)[0].to(device)
    rows = (dy[:, None] + torch.arange(h, device=device))[:, :, None]  # (n, h, 1)
    cols = (dx[:, None] + torch.arange(w, device=device))[:, None, :]  # (n, 1, w)
    sample = torch.arange(n, device=device)[:, None, None]
    crops = padded[sample, :, rows, cols].permute(0, 3, 1, 2)  # (n, h, w, c) -> (n, c, h, w)
    flip = random.rand(n)[0].to(device) < 0.5
    return torch.where(flip[:, None, None, None], crops.flip(3), crops)


def pretrain_config(
    benchmark: str,
    hidden: tuple[int, ...],
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: str,
    data_root: str | None,
) -> RunConfig:
    """One task holding every class of ``benchmark``'s dataset, no validation split."""
    if benchmark not in BENCHMARKS or not BENCHMARKS[benchmark].split_by_class:
        split = [name for name, b in BENCHMARKS.items() if b.split_by_class]
        raise ClsweepError(
            f"pre-training uses a split benchmark's dataset; choose one of: {', '.join(split)}"
        )
    return validated(
        RunConfig(
            benchmark=benchmark,
            scenario="class",
            n_tasks=1,
            model="conv",
            hidden=hidden,
            optimizer="adam",
            lr=lr,
            epochs=epochs,
            batch_size=batch_size,
            device=device,
            data_seed=0,
            train_seed=seed,
            val_fraction=0.0,
            data_root=data_root,
        )
    )


def pretrain(cfg: RunConfig, out: Path, do_augment: bool, log=print) -> float:
    """Train the conv net of ``cfg`` on its single task, save its conv layers to ``out``;
    return the final test accuracy."""
    device = resolve_device(cfg.device)
    ctx = TrainContext([cfg], build_tasks(cfg, load_dataset(cfg)).to(device), device)
    factory = ModelFactory([cfg], ctx.input_shape, ctx.scenario.out_units, device)
    model = factory.templates()[0].to(device)
    assert isinstance(model, ConvNet)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    aug_random = ctx.random("augment")
    accuracy = float("nan")
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        total, steps = torch.zeros((), device=device), 0
        for batch in ctx.batches([0], cfg.batch_size):
            x, target = batch.x[0], batch.target[0]  # a population of one
            if do_augment:
                images = x.view(len(x), *ctx.input_shape)
                x = augment(images, aug_random).reshape(len(x), -1)
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), target)
            loss.backward()
            optimizer.step()
            total += loss.detach()
            steps += 1
        model.eval()
        accuracy = ctx.accuracy(lambda x, task: model(x).unsqueeze(0), 0, "test")[0].item()
        log(f"epoch {epoch:>4}  loss {total.item() / max(steps, 1):.4f}  test acc {accuracy:.4f}")
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.conv.state_dict(), out)
    return accuracy


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cl_core.pretrain",
        description="Pre-train the conv net on one dataset and save its conv layers.",
    )
    p.add_argument("--out", type=Path, required=True, help="where to write the conv state dict")
    p.add_argument(
        "--benchmark",
        default="split-cifar10",
        help="a split benchmark whose dataset (all classes, all training images) is used",
    )
    p.add_argument("--data-root", help="folder holding cifar-10-batches-py/ (else $CLSWEEP_DATA)")
    p.add_argument("--hidden", type=parse_hidden, default=(2000, 2000), help="fc widths")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="random crop (symmetric padding 4) and horizontal flip",
    )
    p.add_argument("--seed", type=int, default=0, help="initialisation, batches, augmentation")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = pretrain_config(
            args.benchmark,
            args.hidden,
            args.epochs,
            args.batch_size,
            args.lr,
            args.seed,
            args.device,
            args.data_root,
        )
        accuracy = pretrain(cfg, args.out, args.augment)
    except ClsweepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} (conv layers; final test accuracy {accuracy:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
