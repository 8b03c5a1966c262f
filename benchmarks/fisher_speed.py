"""Speed: per-sample empirical Fisher, vectorized (the outer-product identity for stacked MLPs)
vs a loop of batch-1 backwards.

Permuted-digits tasks keep it offline; the model is the classic Permuted MNIST MLP's width
(400, 400, 400) on 64 inputs. Both sides compute the same diagonal over the same samples,
checked to agree. ``--members N`` computes N members' Fishers at once (the loop does one).

    python benchmarks/fisher_speed.py [--samples 1000] [--device cpu] [--members 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cl_core.config import RunConfig  # noqa: E402
from cl_core.context import TrainContext  # noqa: E402
from cl_core.data import build_tasks, load_dataset  # noqa: E402
from cl_core.methods.fisher import fisher_diagonal  # noqa: E402
from cl_core.models import ModelFactory, stack  # noqa: E402
from cl_core.validation import validated


def loop_fisher(model, ctx: TrainContext, samples: int) -> torch.Tensor:
    """Member 0's Fisher, one backward per sample, flattened like ``theta``."""
    total = [torch.zeros_like(p) for p in model.parameters()]
    count = 0
    for batch in ctx.batches([0], 1, limit=samples):
        model.zero_grad()
        logits = ctx.active_logits(model(batch.x[0]), 0)
        F.cross_entropy(logits, batch.target[0]).backward()
        for t, p in zip(total, model.parameters(), strict=True):
            t += p.grad**2
        count += 1
    return torch.cat([t.flatten() for t in total]) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--members", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    base = RunConfig(benchmark="permuted-digits", n_tasks=1, hidden=(400, 400, 400), val_fraction=0)
    cfgs = [validated(base) for _ in range(args.members)]
    device = torch.device(args.device)
    seq = build_tasks(cfgs[0], load_dataset(cfgs[0])).to(device)
    ctx = TrainContext(cfgs, seq, device)
    templates = ModelFactory(cfgs, ctx.input_shape, ctx.scenario.out_units, device).templates()
    model = stack(templates, device)
    samples = min(args.samples, len(seq.tasks[0].train_idx))
    timings = {}
    for name, fn in (
        ("vectorized", lambda: fisher_diagonal(model, ctx, 0, "empirical", samples, 1)[0]),
        ("loop", lambda: loop_fisher(templates[0].to(device), ctx, samples)),
    ):
        fn()  # warm-up
        ctx.batch_random.counter = 0  # both sides draw the same samples
        start = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        timings[name] = (time.perf_counter() - start, result)
    fast, slow = timings["vectorized"][1], timings["loop"][1]
    err = ((fast - slow).norm() / slow.norm()).item()
    t_fast, t_slow = timings["vectorized"][0], timings["loop"][0]
    print(
        f"{samples} samples, {args.members} member(s) on {device}: vectorized {t_fast:.2f} s, "
        f"loop {t_slow:.2f} s (one member), speed-up x{t_slow * args.members / t_fast:.1f} per "
        f"member (relative difference of member 0 {err:.1e})"
    )


if __name__ == "__main__":
    main()
