"""Speed: cost per training step of DGR and BI-R (and the other new methods) relative to finetune.

All methods are timed side by side in one process on the same batches of Split MNIST class-IL
(three-scenario sizes: MLP 784-400-400-10, batch 128), on task 2 of 5 with replay active (the
previous model snapshot taken after task 1). Rounds interleave the methods so that a busy machine
slows them alike; the median seconds per step over rounds is reported, and its ratio to finetune.

    python benchmarks/generative_speed.py --data-root ../shared/data --steps 20 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from cl_core.config import RunConfig
from cl_core.context import TrainContext
from cl_core.data import build_tasks, load_dataset
from cl_core.methods import get_method
from cl_core.models import ModelFactory
from cl_core.optim import make_optimizer
from cl_core.params import resolve
from cl_core.trainer import _step

VARIANTS = {
    "finetune": ("finetune", {}),
    "dgr": ("dgr", {}),
    "dgr+distill": ("dgr", {"distill": True}),
    "bir": ("bir", {}),
    "gen_classifier": ("gen_classifier", {}),
    "fromp": ("fromp", {}),
}


def prepared(name: str, args) -> tuple:
    """(method, model, optimizer, ctx) ready to train task 2 (tasks 0 and 1 consolidated)."""
    method_name, params = VARIANTS[name]
    cfg = RunConfig(
        benchmark="split-mnist",
        scenario="class",
        n_tasks=5,
        hidden=(400, 400),
        iterations=args.steps,
        epochs=None,
        batch_size=128,
        data_root=args.data_root,
        device=args.device,
        method=method_name,
        method_params=params,
    ).validated()
    device = torch.device(args.device)
    ctx = TrainContext(cfg, build_tasks(cfg, load_dataset(cfg)).to(device), device)
    cls = get_method(method_name)
    method = cls(resolve(cls.hyperparams, params, method_name), ctx)
    torch.manual_seed(0)
    model = method.build_model(ModelFactory(cfg, ctx.input_shape, ctx.scenario.out_units, device))
    for task in (0, 1):
        ctx.seen_tasks = task + 1
        method.before_task(model, task)
        for batch in ctx.batches([task], 128, limit=256):  # a few samples of each class
            method.loss(model, batch, task)
        method.after_task(model, task)
    ctx.seen_tasks = 3
    method.before_task(model, 2)
    return method, model, make_optimizer(cfg, model.parameters()), ctx


def time_steps(method, model, optimizer, ctx, steps: int) -> float:
    """Seconds per step over ``steps`` steps of task 2."""
    batches = list(ctx.batches([2], 128, limit=steps * 128))[:steps]
    if ctx.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for batch in batches:
        _step(model, method, optimizer, batch, 2)
    if ctx.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / len(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--methods", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = ["finetune", *[m for m in args.methods if m != "finetune"]]
    runs = {name: prepared(name, args) for name in names}
    for name in names:  # warm-up
        time_steps(*runs[name], steps=2)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            seconds[name].append(time_steps(*runs[name], steps=args.steps))
    base = statistics.median(seconds["finetune"])
    print(f"device {args.device}, {args.threads} thread(s), {args.rounds} rounds x {args.steps}")
    print("| method | ms per step (median) | relative to finetune |")
    print("|---|---|---|")
    for name in names:
        s = statistics.median(seconds[name])
        print(f"| {name} | {1000 * s:.1f} | {s / base:.2f}x |")


if __name__ == "__main__":
    main()
