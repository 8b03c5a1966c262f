"""Speed: population training vs the per-trial path, in trials per minute (issue 9).

For each population size N, the same N EWC configurations (a λ x lr grid, one train seed) are
trained once as one population (``cl_core.population.run_population``) and once per trial (the
single-run trainer, ``cl_core.trainer.train``, once per config), alternating the two, with the same
torch threads; the dataset is loaded once and shared by both. Medians over ``--repeats``.
The per-trial path's time does not depend on N, so it is measured on the first
``--per-trial`` configs of each grid (all of them when N is smaller) and reported per trial.
Both sides must agree (max difference of the final test accuracies, printed).

Protocols: ``quickstart`` (permuted digits, 5 tasks, MLP 100-100, 10 epochs, batch 32; as
search_spaces/quickstart.yaml), ``r1`` (the classic-permuted preset: Permuted MNIST, 3 tasks,
784-400-400-400, 2 epochs, batch 256, the classic script's batch Fisher), ``vdv-permuted`` (the
vdv-permuted preset: 10 tasks of 5,000 iterations, 1024-1000-1000; for a GPU).
``--compare-backends`` measures the population's two stacked forms (batched matmuls vs torch.func
vmap over the models) instead of the per-trial path.

    python benchmarks/population_speed.py --protocol quickstart --sizes 1 8 32 128
    python benchmarks/population_speed.py --protocol r1 --sizes 1 8 --repeats 1 --per-trial 1
    python benchmarks/population_speed.py --protocol vdv-permuted --device cuda --sizes 64 \\
        --per-trial 2 --repeats 1                      # the 64-config EWC λ x lr search
    python benchmarks/population_speed.py --compare-backends --sizes 8 32 128
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time
from contextlib import contextmanager
from unittest import mock

import numpy as np
import torch
from torch.func import functional_call, vmap

import cl_core.population.trainer as population_trainer
from cl_core.config import RunConfig
from cl_core.data import load_dataset
from cl_core.population import run_population
from cl_core.population.network import StackedMLP
from cl_core.presets import PRESETS
from cl_core.trainer import RunResult, train

QUICKSTART = {
    "benchmark": "permuted-digits",
    "scenario": "domain",
    "n_tasks": 5,
    "hidden": (100, 100),
    "epochs": 10,
    "iterations": None,
    "batch_size": 32,
    "optimizer": "adam",
}
PROTOCOLS = {
    # name: (run settings, EWC settings, λ range, lr range)
    "quickstart": (QUICKSTART, {"fisher": "empirical"}, (1.0, 1e5), (3e-4, 3e-3)),
    "r1": (
        PRESETS["classic-permuted"].run_settings({}),
        PRESETS["classic-permuted"].method_defaults("ewc", "domain", {}),
        (1e2, 1e6),
        (3e-4, 3e-3),
    ),
    "vdv-permuted": (PRESETS["vdv-permuted"].run_settings({}), {}, (1.0, 1e8), (3e-5, 1e-3)),
}


def grid(protocol: str, n: int, device: str, data_root: str | None, **changes) -> list[RunConfig]:
    """``n`` EWC configs on a λ x lr grid (log-spaced, about √n values of each); ``changes``
    override run settings (shorter smoke runs)."""
    run, ewc, (lam_lo, lam_hi), (lr_lo, lr_hi) = PROTOCOLS[protocol]
    run = {**run, **changes}
    side = math.ceil(math.sqrt(n))
    lams = np.geomspace(lam_lo, lam_hi, side) if side > 1 else [math.sqrt(lam_lo * lam_hi)]
    lrs = np.geomspace(lr_lo, lr_hi, side) if side > 1 else [math.sqrt(lr_lo * lr_hi)]
    pairs = [(float(lam), float(lr)) for lam in lams for lr in lrs][:n]
    base = {**run, "method": "ewc", "device": device, "data_root": data_root}
    return [
        RunConfig(**{**base, "lr": lr}, method_params={**ewc, "lambda": lam}) for lam, lr in pairs
    ]


def timed(fn, device: str):
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def per_trial(configs: list[RunConfig], dataset) -> list[RunResult]:
    return [RunResult.from_reports(c.validated(), list(train(c, dataset))) for c in configs]


def final_acc(results: list[RunResult]) -> np.ndarray:
    return np.array([r.acc_test[-1] for r in results])


class VmapMLP(StackedMLP):
    """The torch.func form: ``vmap`` over ``functional_call`` of the single-run MLP, on the same
    stacked parameters (only the forward differs from the batched-matmul form)."""

    def __init__(self, models) -> None:
        super().__init__(models)
        self.template = copy.deepcopy(models[0]).to("meta")
        self.names = [name for name, _ in models[0].named_parameters()]

    def forward(self, x, layers=None):
        layers = self.trainable if layers is None else layers
        params = dict(zip(self.names, [p for layer in layers for p in layer], strict=True))

        def call(p, xb):
            return functional_call(self.template, p, (xb,))

        return vmap(call, in_dims=(0, None if x.dim() == 2 else 0))(params, x)


@contextmanager
def network(cls):
    with mock.patch.object(population_trainer, "StackedMLP", cls):
        yield


def measure(args, dataset) -> None:
    rows = []
    for size in args.sizes:
        configs = grid(args.protocol, size, args.device, args.data_root, **args.changes)
        sample = configs[: min(size, args.per_trial)]
        pop_t, single_t, diffs = [], [], []
        for rep in range(args.repeats):
            order = ("pop", "single") if rep % 2 == 0 else ("single", "pop")
            for side in order:
                if side == "pop":
                    t, pop = timed(lambda c=configs: run_population(c, dataset), args.device)
                    pop_t.append(t)
                else:
                    t, single = timed(lambda s=sample: per_trial(s, dataset), args.device)
                    single_t.append(t / len(sample))
            diffs.append(np.abs(final_acc(pop[: len(sample)]) - final_acc(single)).max())
        pop_s, trial_s = statistics.median(pop_t), statistics.median(single_t)
        rows.append((size, pop_s, 60 * size / pop_s, trial_s, 60 / trial_s, max(diffs)))
        print(
            f"N={size:4d}: population {pop_s:8.1f} s ({60 * size / pop_s:7.1f} trials/min), "
            f"per-trial {trial_s:6.2f} s/trial ({60 / trial_s:6.1f} trials/min) "
            f"x{trial_s * size / pop_s:.2f}; runs {len(pop_t)}, max |Δ final acc| "
            f"{100 * max(diffs):.2f} pts",
            flush=True,
        )
    unit = "GPU-minute" if args.device == "cuda" else "minute"
    print(f"\n{args.protocol} on {args.device}, torch threads {torch.get_num_threads()}")
    print(f"| N | population s | trials/{unit} | per-trial s/trial | trials/{unit} | ratio |")
    print("|---|---|---|---|---|---|")
    for size, pop_s, pop_rate, trial_s, trial_rate, _ in rows:
        print(
            f"| {size} | {pop_s:.1f} | {pop_rate:.1f} | {trial_s:.2f} | {trial_rate:.1f} "
            f"| x{pop_rate / trial_rate:.2f} |"
        )


def compare_backends(args, dataset) -> None:
    print(f"{args.protocol} on {args.device}: batched matmuls (bmm) vs torch.func vmap")
    for size in args.sizes:
        configs = grid(args.protocol, size, args.device, args.data_root, **args.changes)
        times = {"bmm": [], "vmap": []}
        results = {}
        for rep in range(args.repeats):
            order = ("bmm", "vmap") if rep % 2 == 0 else ("vmap", "bmm")
            for name in order:
                with network(StackedMLP if name == "bmm" else VmapMLP):
                    t, results[name] = timed(
                        lambda c=configs: run_population(c, dataset), args.device
                    )
                times[name].append(t)
        bmm, vm = statistics.median(times["bmm"]), statistics.median(times["vmap"])
        diff = np.abs(final_acc(results["bmm"]) - final_acc(results["vmap"])).max()
        print(
            f"N={size:4d}: bmm {bmm:7.2f} s, vmap {vm:7.2f} s, vmap/bmm x{vm / bmm:.2f} "
            f"(max |Δ final acc| {100 * diff:.2f} pts)",
            flush=True,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="quickstart")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--per-trial", type=int, default=8, help="per-trial runs measured per size")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (both sides)")
    parser.add_argument("--data-root", help="folder holding MNIST/raw (else $CLSWEEP_DATA)")
    parser.add_argument("--compare-backends", action="store_true")
    parser.add_argument(
        "--tf32",
        action="store_true",
        help="CUDA matmuls in TF32 (both sides; faster on Ampere/Hopper, ~1e-3 relative error)",
    )
    parser.add_argument("--tasks", type=int, help="override the protocol's task count")
    parser.add_argument("--epochs", type=int, help="override the training length (epochs)")
    args = parser.parse_args(argv)
    args.changes = {}
    if args.tasks:
        args.changes["n_tasks"] = args.tasks
    if args.epochs:
        args.changes.update(epochs=args.epochs, iterations=None)
    torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    dataset = load_dataset(grid(args.protocol, 1, args.device, args.data_root, **args.changes)[0])
    (compare_backends if args.compare_backends else measure)(args, dataset)


if __name__ == "__main__":
    main()
