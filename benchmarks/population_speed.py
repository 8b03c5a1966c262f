"""Speed: population training vs the per-trial path, in trials per minute, side by side.

For each population size N, N configurations of one method (a grid over the learning rate, the
method's float hyperparameters and the training seed) are trained once as one population
(``cl_core.population.run_population``) and, alternating with it, one by one (the per-trial path:
``cl_core.trainer.train`` once per configuration; its time does not depend on N, so it is
measured on the first ``--per-trial`` configurations and reported per trial). The dataset is
loaded once and shared. Medians over ``--repeats``. Both sides must agree: the largest
difference of a member's final test accuracy from its own per-trial run is printed, in samples.

Protocols: ``quickstart`` (permuted digits, 5 tasks, MLP 100-100, 10 epochs, batch 32: the
shipped quickstart space), ``digits-split`` (split digits class-IL, 5 tasks, MLP 100-100, 10
epochs, batch 32), ``r1`` (the classic-permuted preset: Permuted MNIST, 3 tasks, 784-400-400-400,
2 epochs, batch 256), ``vdv-permuted`` (the vdv-permuted preset: 10 tasks of 5,000 iterations,
1024-1000-1000; for a GPU), ``conv`` (the three-scenario conv net on CIFAR-shaped random
tensors, 5 tasks: speed only, never an accuracy). ``--tasks`` and ``--iterations`` shorten a
protocol (steps per second do not depend on the length).

    python benchmarks/population_speed.py --method ewc --protocol quickstart --sizes 1 8 32
    python benchmarks/population_speed.py --method derpp --protocol r1 --sizes 8 --repeats 1
    python benchmarks/population_speed.py --method ewc --protocol vdv-permuted --device cuda \\
        --sizes 1 16 64 256 --tasks 2 --iterations 500 --per-trial 1 --repeats 1
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cl_core.config import RunConfig  # noqa: E402
from cl_core.data import Dataset, build_tasks, load_dataset  # noqa: E402
from cl_core.methods import get_method  # noqa: E402
from cl_core.population import run_population  # noqa: E402
from cl_core.presets import preset_config  # noqa: E402
from cl_core.trainer import RunResult, train  # noqa: E402
from cl_core.validation import validated

PROTOCOLS = ("quickstart", "digits-split", "r1", "vdv-permuted", "conv")


def base_config(protocol: str, method: str, device: str, data_root: str | None) -> RunConfig:
    """The protocol's configuration of ``method`` (one member's)."""
    common = dict(method=method, device=device)
    digits = {
        "quickstart": ("permuted-digits", "domain"),
        "digits-split": ("split-digits", "class"),
    }
    if protocol in digits:
        benchmark, scenario = digits[protocol]
        return RunConfig(
            benchmark=benchmark,
            scenario=scenario,
            n_tasks=5,
            hidden=(100, 100),
            epochs=10,
            batch_size=32,
            **common,
        )
    if protocol == "conv":
        return RunConfig(
            benchmark="split-cifar10",
            scenario="class",
            n_tasks=5,
            model="conv",
            hidden=(2000, 2000),
            iterations=100,
            epochs=None,
            batch_size=256,
            **common,
        )
    preset = "classic-permuted" if protocol == "r1" else "vdv-permuted"
    return preset_config(preset, method=method, device=device, data_root=data_root)


def random_cifar(n_train: int = 5000, n_test: int = 1000, seed: int = 0) -> Dataset:
    """CIFAR-shaped random images and labels: the conv net's speed without CIFAR's files."""
    gen = torch.Generator().manual_seed(seed)

    def images(n: int) -> torch.Tensor:
        return torch.randint(0, 256, (n, 3 * 32 * 32), generator=gen, dtype=torch.uint8)

    def labels(n: int) -> torch.Tensor:
        return torch.arange(n) % 10

    return Dataset(
        "random-cifar",
        images(n_train),
        labels(n_train),
        images(n_test),
        labels(n_test),
        255.0,
        (3, 32, 32),
        10,
        (0.5, 0.5, 0.5),
        (0.25, 0.25, 0.25),
    )


def grid(base: RunConfig, n: int) -> list[RunConfig]:
    """``n`` configurations of ``base``'s method: learning rate x float hyperparameters x seed."""
    method = get_method(base.method)
    floats = [p for p in method.hyperparams.values() if p.per_member]
    lrs = [base.lr * f for f in (1.0, 0.5, 2.0, 0.25)]
    scales = (1.0, 0.1, 10.0, 0.3, 3.0)
    out = []
    for i, (lr, scale) in enumerate(
        itertools.islice(itertools.cycle(itertools.product(lrs, scales)), n)
    ):
        params = dict(base.method_params)
        for p in floats:
            value = params.get(p.name, p.default) * scale
            if p.high is not None:
                value = min(value, p.high)
            params[p.name] = value
        out.append(replace(base, lr=lr, method_params=params, train_seed=base.train_seed + i))
    return out


def seconds(fn) -> tuple[float, object]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def measure(
    base: RunConfig, sizes: list[int], repeats: int, per_trial: int, dataset: Dataset
) -> list[dict]:
    """One row per population size: medians of both paths and their ratio."""
    rows = []
    measured: dict[int, tuple[float, list]] = {}  # per-trial runs, shared by the sizes
    for n in sizes:
        cfgs = [validated(c) for c in grid(base, n)]
        singles = cfgs[: min(per_trial, n)]
        pop_times, trial_times, agreement = [], [], 0.0
        for r in range(repeats):
            t_pop, results = seconds(lambda cfgs=cfgs: run_population(cfgs, dataset))
            key = len(singles) * 1000 + r
            if key not in measured:  # the grid's first configs are the same for every N
                measured[key] = seconds(
                    lambda s=singles: [
                        RunResult.from_reports(c, list(train(c, dataset))) for c in s
                    ]
                )
            t_single, alone = measured[key]
            pop_times.append(t_pop)
            trial_times.append(t_single / len(singles))
            agreement = max(agreement, max_difference_in_samples(results, alone, dataset, base))
        pop, trial = statistics.median(pop_times), statistics.median(trial_times)
        rows.append(
            {
                "method": base.method,
                "n": n,
                "population_s": pop,
                "per_trial_s": trial,
                "population_trials_per_min": 60 * n / pop,
                "per_trial_trials_per_min": 60 / trial,
                "speedup": (60 * n / pop) / (60 / trial),
                "max_test_diff_samples": agreement,
            }
        )
    return rows


def max_difference_in_samples(results, alone, dataset: Dataset, base: RunConfig) -> float:
    """Largest |Δ| of a final test accuracy cell between a member and its per-trial run, in
    test samples of that cell's task (the accuracy's resolution)."""
    rows = [len(t.test_idx) for t in build_tasks(base, dataset).tasks]
    worst = 0.0
    for pop, single in zip(results, alone, strict=False):
        if len(pop.acc_test) and len(single.acc_test):
            diff = abs(pop.acc_test[-1] - single.acc_test[-1]) * rows
            worst = max(worst, float(diff.max()))
    return worst


def print_table(rows: list[dict]) -> None:
    print(
        f"{'method':>8} {'N':>5} {'population s':>13} {'per trial s':>12} "
        f"{'trials/min pop':>15} {'per trial':>10} {'speedup':>8} {'max Δ (samples)':>16}"
    )
    for r in rows:
        print(
            f"{r['method']:>8} {r['n']:>5} {r['population_s']:>13.2f} {r['per_trial_s']:>12.2f} "
            f"{r['population_trials_per_min']:>15.1f} {r['per_trial_trials_per_min']:>10.1f} "
            f"{r['speedup']:>7.2f}x {r['max_test_diff_samples']:>16.1f}"
        )


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="ewc")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="quickstart")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--per-trial", type=int, default=4)
    parser.add_argument("--tasks", type=int, help="shorten the protocol to this many tasks")
    parser.add_argument("--iterations", type=int, help="steps per task instead of epochs")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tf32", action="store_true", help="TensorFloat-32 (RunConfig.tf32)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-root")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = base_config(args.protocol, args.method, args.device, args.data_root)
    if args.tasks:
        base = replace(base, n_tasks=args.tasks)
    if args.iterations:
        base = replace(base, iterations=args.iterations, epochs=None)
    base = validated(replace(base, tf32=args.tf32))
    dataset = random_cifar() if args.protocol == "conv" else load_dataset(base)
    rows = measure(base, args.sizes, args.repeats, args.per_trial, dataset)
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
