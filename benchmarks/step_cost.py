"""Speed: the per-step cost of each method relative to fine-tuning, side by side.

Each method is set up as on the second task of the three-scenario Split MNIST protocol (class-IL
unless the method needs task-IL; MLP 400-400, batch 128, Adam, the methods' defaults): its first
task is trained for ``--warmup`` steps and consolidated (memories filled, snapshots taken, a
generative model learned a little), then steps of the second task are timed. The methods take
turns within each repeat, so the ratios compare runs on the same machine under the same load; the
table gives the median time per step and the median over repeats of its ratio to fine-tuning's
time in the same repeat. ``--members N`` times a population of N members per method instead of one
run (cost per member-step).

    python benchmarks/step_cost.py --data-root ../shared/data [--steps 200] [--repeats 5]
    python benchmarks/step_cost.py --benchmark split-digits --methods finetune er derpp bir
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from itertools import islice
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cl_core.config import RunConfig  # noqa: E402
from cl_core.context import Batch  # noqa: E402
from cl_core.data import load_dataset  # noqa: E402
from cl_core.methods import METHODS, get_method  # noqa: E402
from cl_core.presets import PRESETS  # noqa: E402
from cl_core.trainer import Run  # noqa: E402
from cl_core.validation import validated


def looping(make: Callable[[], Iterator[Batch]]) -> Iterator[Batch]:
    while True:
        yield from make()


def prepared(name: str, args: argparse.Namespace, dataset) -> Callable[[int], None]:
    """A function running ``n`` training steps of ``name`` on task 1, after task 0."""
    scenario = "class" if "class" in get_method(name).scenarios else "task"
    run_settings = PRESETS["vdv-split"].run_settings({"scenario": scenario})
    run_settings["benchmark"] = args.benchmark
    cfg = RunConfig(**run_settings, method=name, device=args.device, data_root=args.data_root)
    cfgs = [
        validated(replace(cfg, train_seed=i, lr=cfg.lr * (1 + 0.1 * i)))
        for i in range(args.members)
    ]
    run = Run(cfgs, dataset)
    run.begin_task(0)
    for batch in islice(run.ctx.training_batches(run.method.training_tasks(0)), args.warmup):
        run.step(batch, 0)
    run.end_task(0)
    run.begin_task(1)
    batches = looping(lambda: run.ctx.batches(run.method.training_tasks(1), cfg.batch_size))

    def steps(n: int) -> None:
        for batch in islice(batches, n):
            run.step(batch, 1)
        if run.device.type == "cuda":
            torch.cuda.synchronize()

    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", help="folder holding MNIST/raw (else $CLSWEEP_DATA)")
    parser.add_argument("--benchmark", default="split-mnist", help="split-digits runs offline")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=200, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=300, help="task-0 steps before timing")
    parser.add_argument("--members", type=int, default=1, help="population size per method")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    probe = validated(RunConfig(benchmark=args.benchmark, data_root=args.data_root))
    dataset = load_dataset(probe)
    names = ["finetune", *[m for m in args.methods if m != "finetune"]]
    runners = {name: prepared(name, args, dataset) for name in names}
    for run in runners.values():
        run(10)  # first-call costs (allocations, kernels) stay out of the timing
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run(args.steps)
            times[name].append((time.perf_counter() - start) / args.steps / args.members)
    base = times["finetune"]
    print(
        f"{args.benchmark}, batch 128, MLP 400-400, {args.device}, {args.threads} thread(s), "
        f"{args.members} member(s): median of {args.repeats} x {args.steps} steps"
    )
    print("| method | ms / member-step | x finetune (median of per-repeat ratios) |")
    print("|---|---|---|")
    for name, values in times.items():
        ms = 1000 * statistics.median(values)
        paired = statistics.median(t / b for t, b in zip(values, base, strict=True))
        print(f"| {name} | {ms:.2f} | {paired:.2f} |")


if __name__ == "__main__":
    main()
