"""Speed: per-sample empirical Fisher, torch.func (vmap over grad) vs a loop of batch-1 backwards.

Permuted-digits tasks keep it offline; the model has the classic Permuted MNIST widths (400, 400,
400) on 64 inputs. Both sides compute the same diagonal over the same samples, checked to agree.

    python benchmarks/fisher_speed.py [--samples 1000] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from cl_core.config import RunConfig
from cl_core.context import TrainContext
from cl_core.data import build_tasks, load_dataset
from cl_core.methods.fisher import fisher_diagonal
from cl_core.models import MLP


def loop_fisher(model, ctx: TrainContext, samples: int) -> list[torch.Tensor]:
    total = [torch.zeros_like(p) for p in model.parameters()]
    count = 0
    for batch in ctx.batches([0], 1, limit=samples):
        model.zero_grad()
        F.cross_entropy(ctx.active_logits(model(batch.x), 0), batch.target).backward()
        for t, p in zip(total, model.parameters(), strict=True):
            t += p.grad**2
        count += 1
    return [t / count for t in total]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    cfg = RunConfig(benchmark="permuted-digits", n_tasks=1, hidden=(400, 400, 400), val_fraction=0)
    device = torch.device(args.device)
    ctx = TrainContext(cfg.validated(), build_tasks(cfg, load_dataset(cfg)).to(device), device)
    torch.manual_seed(0)
    model = MLP(64, cfg.hidden, 10).to(device)
    samples = min(args.samples, len(ctx.seq.tasks[0].train_idx))
    timings = {}
    for name, fn in (
        (
            "vectorized",
            lambda: list(fisher_diagonal(model, ctx, 0, "empirical", samples, 1).values()),
        ),
        ("loop", lambda: loop_fisher(model, ctx, samples)),
    ):
        fn()  # warm-up
        ctx.gen.manual_seed(0)  # both sides draw the same samples
        start = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        timings[name] = (time.perf_counter() - start, result)
    fast, slow = timings["vectorized"][1], timings["loop"][1]
    err = max(((a - b).norm() / b.norm()).item() for a, b in zip(fast, slow, strict=True))
    t_fast, t_slow = timings["vectorized"][0], timings["loop"][0]
    print(
        f"{samples} samples on {device}: vectorized {t_fast:.2f} s, loop {t_slow:.2f} s, "
        f"speed-up x{t_slow / t_fast:.1f} (max relative difference {err:.1e})"
    )


if __name__ == "__main__":
    main()
