"""Speed: the classic Permuted MNIST EWC run (3 tasks), clsweep vs the plain way.

The plain way is how such scripts are usually written: a torchvision dataset with ``ToTensor`` (a
PIL image per sample), a per-sample ``DataLoader`` applying the permutation per item, a Python loop
over parameters for the penalty, and the classic script's batch Fisher through the same loader. Both
sides include data loading and evaluation; they run alternately in one process, so the ratio is
measured side by side on the same machine.

    python benchmarks/ewc_speed.py --data-root ../shared/data [--repeats 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import datasets, transforms

from cl_core.data.registry import _load_cached
from cl_core.presets import preset_config
from cl_core.trainer import RunResult, train

LAMBDA = 1e4


def run_clsweep(data_root: str, device: str) -> tuple[float, list[float]]:
    _load_cached.cache_clear()  # count reading the raw files, as the plain side does
    start = time.perf_counter()
    cfg = preset_config("classic-permuted", method="ewc", data_root=data_root, device=device)
    result = RunResult.from_reports(cfg, list(train(cfg)))
    return time.perf_counter() - start, list(result.acc_test[-1])


class PermutedImages(Dataset):
    """One permuted copy of a torchvision dataset, item by item."""

    def __init__(self, base: Dataset, perm: torch.Tensor) -> None:
        self.base, self.perm = base, perm

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        return x.view(-1)[self.perm], y


def run_plain(raw_copy: str, device: str) -> tuple[float, list[float]]:
    start = time.perf_counter()
    random.seed(2024)
    torch.manual_seed(2024)
    to_tensor = transforms.ToTensor()
    train_set = datasets.MNIST(raw_copy, train=True, download=True, transform=to_tensor)
    test_set = datasets.MNIST(raw_copy, train=False, download=True, transform=to_tensor)
    perms = []
    for _ in range(3):
        p = list(range(784))
        random.shuffle(p)
        perms.append(torch.tensor(p))
    model = nn.Sequential(
        nn.Linear(784, 400),
        nn.ReLU(),
        nn.Linear(400, 400),
        nn.ReLU(),
        nn.Linear(400, 400),
        nn.ReLU(),
        nn.Linear(400, 10),
    ).to(device)
    fisher: dict[str, torch.Tensor] = {}
    anchor: dict[str, torch.Tensor] = {}
    for task, perm in enumerate(perms):
        loader = DataLoader(PermutedImages(train_set, perm), batch_size=256, shuffle=True)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
        for _ in range(2):
            for x, y in loader:
                x, y = x.to(device), y.to(device)
                optimizer.zero_grad()
                loss = F.cross_entropy(model(x), y)
                if task > 0:
                    for name, p in model.named_parameters():
                        loss = loss + LAMBDA * (fisher[name] * (p - anchor[name]) ** 2).sum()
                loss.backward()
                optimizer.step()
        new = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
        for x, y in loader:
            model.zero_grad()
            F.cross_entropy(model(x.to(device)), y.to(device)).backward()
            for n, p in model.named_parameters():
                new[n] += p.grad.detach() ** 2 / len(loader)
        fisher = {n: fisher.get(n, 0) + new[n] for n in new}
        anchor = {n: p.detach().clone() for n, p in model.named_parameters()}
    accs = []
    with torch.no_grad():
        for perm in perms:
            correct = 0
            for x, y in DataLoader(PermutedImages(test_set, perm), batch_size=1000):
                correct += (model(x.to(device)).argmax(1).cpu() == y).sum().item()
            accs.append(correct / len(test_set))
    return time.perf_counter() - start, accs


def _percent(accs: list[float]) -> list[float]:
    return [round(100 * float(a), 2) for a in accs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads (1 gives stable timings on a shared machine)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        # torchvision unpacks archives next to themselves: give it a private copy
        shutil.copytree(Path(args.data_root) / "MNIST", Path(tmp) / "MNIST")
        ours, plain = [], []
        for i in range(args.repeats):
            t, acc = run_clsweep(args.data_root, args.device)
            ours.append(t)
            print(
                f"clsweep run {i}: {t:7.1f} s  final accuracies {[round(100 * a, 2) for a in acc]}"
            )
            t, acc = run_plain(tmp, args.device)
            plain.append(t)
            print(
                f"plain   run {i}: {t:7.1f} s  final accuracies {[round(100 * a, 2) for a in acc]}"
            )
    print(
        f"device {args.device}, threads {torch.get_num_threads()}: best clsweep {min(ours):.1f} s, "
        f"best plain {min(plain):.1f} s, speed-up x{min(plain) / min(ours):.2f}"
    )


if __name__ == "__main__":
    main()
