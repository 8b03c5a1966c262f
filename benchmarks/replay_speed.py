"""Speed: the per-step cost of the replay methods relative to fine-tuning, side by side.

Each method is set up as on the second task of the three-scenario Split MNIST protocol (class-IL,
MLP 400-400, batch 128, Adam, memory 100 per class): its first task is trained for a few hundred
steps so that its memory holds that task (ER, A-GEM, iCaRL: 100 exemplars per class; DER/DER++: a
full reservoir of 1,000 samples with logits), then steps of the second task are timed. The methods
take turns within each repeat, so the ratios compare runs on the same machine under the same load;
the table gives the median time per step and the median over repeats of its ratio to fine-tuning's
time in the same repeat.

    python benchmarks/replay_speed.py --data-root ../shared/data [--steps 200] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator
from itertools import islice

import torch

from cl_core.config import RunConfig
from cl_core.context import Batch, TrainContext
from cl_core.data import build_tasks, load_dataset
from cl_core.methods import get_method
from cl_core.models import ModelFactory
from cl_core.optim import make_optimizer
from cl_core.params import resolve
from cl_core.presets import PRESETS
from cl_core.trainer import _step, resolve_device

METHODS = ("finetune", "er", "agem", "icarl", "der", "derpp")


def looping(make: Callable[[], Iterator[Batch]]) -> Iterator[Batch]:
    while True:
        yield from make()


def prepared(name: str, args: argparse.Namespace, dataset) -> Callable[[int], None]:
    """A function running ``n`` training steps of ``name`` on task 1, after task 0."""
    run = PRESETS["vdv-split"].run_settings({"scenario": "class"})
    run["benchmark"] = args.benchmark
    cfg = RunConfig(**run, method=name, device=args.device, data_root=args.data_root).validated()
    method_cls = get_method(name)
    params = resolve(method_cls.hyperparams, {}, name)
    device = resolve_device(cfg.device)
    ctx = TrainContext(cfg, build_tasks(cfg, dataset).to(device), device)
    method = method_cls(params, ctx)
    torch.manual_seed(cfg.train_seed)
    model = method.build_model(ModelFactory(cfg, ctx.input_shape, ctx.scenario.out_units, device))
    optimizer = make_optimizer(cfg, model.parameters())
    ctx.seen_tasks = 1
    method.before_task(model, 0)
    for batch in islice(ctx.training_batches(method.training_tasks(0)), args.warmup):
        _step(model, method, optimizer, batch, 0)
    method.after_task(model, 0)
    ctx.seen_tasks = 2
    method.before_task(model, 1)
    batches = looping(lambda: ctx.batches(method.training_tasks(1), cfg.batch_size))

    def steps(n: int) -> None:
        for batch in islice(batches, n):
            _step(model, method, optimizer, batch, 1)
        if device.type == "cuda":
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
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    probe = RunConfig(benchmark=args.benchmark, data_root=args.data_root).validated()
    dataset = load_dataset(probe)
    runners = {name: prepared(name, args, dataset) for name in args.methods}
    for run in runners.values():
        run(10)  # first-call costs (allocations, kernels) stay out of the timing
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run(args.steps)
            times[name].append((time.perf_counter() - start) / args.steps)
    base = times.get("finetune")
    print(
        f"{args.benchmark} class-IL, batch 128, MLP 400-400, {args.device}, "
        f"{args.threads} thread(s): median of {args.repeats} x {args.steps} steps"
    )
    print("| method | ms / step | x finetune (median of per-repeat ratios) |\n|---|---|---|")
    for name, values in times.items():
        ms = 1000 * statistics.median(values)
        paired = [t / b for t, b in zip(values, base, strict=True)] if base else []
        ratio = f"{statistics.median(paired):.2f}" if paired else "-"
        print(f"| {name} | {ms:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
