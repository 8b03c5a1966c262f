"""The CUDA path: the same engine on a GPU (skipped without one; CI has none, so every path these
check also runs on the CPU in the other tests). ``benchmarks/gpu_suite.py`` runs this file."""

import numpy as np
import pytest
import torch

from cl_core.config import RunConfig
from cl_core.data import load_dataset
from cl_core.population import run_population
from cl_core.random import MemberRandom
from cl_core.trainer import RunResult, train
from cl_core.validation import validated

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

DIGITS = dict(benchmark="split-digits", scenario="class", n_tasks=5, hidden=(64, 64))


def _result(cfg: RunConfig) -> RunResult:
    return RunResult.from_reports(validated(cfg), list(train(cfg)))


def test_random_streams_draw_the_same_bits_on_cpu_and_gpu():
    cpu = MemberRandom([0, 7, 11], "memory", "cpu")
    gpu = MemberRandom([0, 7, 11], "memory", "cuda")
    for _ in range(3):
        assert torch.equal(cpu.bits(5, 7), gpu.bits(5, 7).cpu())
        assert torch.equal(cpu.permutation(100), gpu.permutation(100).cpu())


@pytest.mark.parametrize("method", ["ewc", "derpp", "icarl", "bir"])
def test_members_reproduce_their_single_runs_on_the_gpu(method):
    cfgs = [
        RunConfig(
            **DIGITS,
            method=method,
            iterations=60,
            epochs=None,
            batch_size=32,
            lr=lr,
            train_seed=seed,
            device="cuda",
        )
        for lr, seed in ((1e-3, 0), (2e-3, 1), (5e-4, 2))
    ]
    population = run_population(cfgs)
    for cfg, member in zip(cfgs, population, strict=True):
        single = _result(cfg)
        rows = min(len(t.test_idx) for t in _tasks(cfg))
        assert np.abs(member.acc_test - single.acc_test).max() <= 1 / rows + 1e-9


def test_a_run_on_the_gpu_is_deterministic():
    cfg = RunConfig(
        **DIGITS, method="derpp", iterations=60, epochs=None, batch_size=32, device="cuda"
    )
    first, second = _result(cfg), _result(cfg)
    assert np.array_equal(first.acc_test, second.acc_test)
    assert first.train_loss == second.train_loss


def test_conv_population_on_the_gpu_ends_near_its_single_runs():
    """cuDNN computes a grouped convolution (the population's) with other algorithms than a
    single one, and Adam's first steps amplify the rounding (a sign flip of a near-zero gradient
    moves a weight by 2·lr): measured on an H200, members' parameters were 0.3-0.9% apart after
    20 steps and cells of a barely trained mid-sequence row up to 6.3% apart, the final row at
    most 0.5% (docs/population.md, The contract). On the CPU the conv members agree to one
    sample (tests/core/test_population.py)."""
    cfgs = [
        RunConfig(
            benchmark="split-mnist",
            scenario="task",
            n_tasks=5,
            model="conv",
            hidden=(32,),
            method="er",
            iterations=20,
            epochs=None,
            batch_size=64,
            lr=lr,
            train_seed=seed,
            device="cuda",
            val_fraction=0.01,
        )
        for lr, seed in ((1e-3, 0), (3e-4, 1))
    ]
    try:
        population = run_population(cfgs)
    except Exception as exc:  # MNIST files missing on this machine
        pytest.skip(str(exc))
    for cfg, member in zip(cfgs, population, strict=True):
        single = _result(cfg)
        assert member.device == single.device == "cuda"
        assert np.array_equal(member.acc_test[0], single.acc_test[0])  # same initialisation
        assert np.abs(member.acc_test[-1] - single.acc_test[-1]).max() <= 0.02


def _tasks(cfg: RunConfig):
    from cl_core.data import build_tasks, load_dataset

    cfg = validated(cfg)
    return build_tasks(cfg, load_dataset(cfg)).tasks


def test_tf32_is_an_opt_in_each_run_sets_for_itself():
    base = dict(**DIGITS, method="ewc", iterations=60, epochs=None, batch_size=32, device="cuda")
    fp32 = _result(RunConfig(**base))
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    tf32 = _result(RunConfig(**base, tf32=True))
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    again = _result(RunConfig(**base))  # a later fp32 run is fp32 again, bit for bit
    assert not torch.backends.cuda.matmul.allow_tf32
    assert np.array_equal(fp32.acc_test, again.acc_test)
    # the opt-in takes effect: TF32 products (about 3 digits) change the numbers; class-IL on
    # tiny digits test sets turns that into whole points (0.475 measured on an H200), so no
    # tolerance is asserted
    assert not np.array_equal(tf32.acc_test, fp32.acc_test)


def test_the_sweeps_cost_meter_reads_cudas_peak_memory():
    """The cost columns on a GPU (sweep/cost.py, which needs no Ray; CI has no GPU, and its CPU
    path is tests/sweep/test_cost.py): the peak is CUDA's, at least the 4 float32 (M, P)
    tensors of one member's parameters, gradients and Adam moments."""
    from sweep.cost import CostMeter

    cfg = validated(
        RunConfig(**DIGITS, method="ewc", iterations=20, epochs=None, batch_size=32, device="cuda")
    )
    meter = CostMeter(gpus=1.0)
    meter.watch(cfg, load_dataset(cfg))
    list(train(cfg))
    cost = meter.metrics()
    assert cost["trainable_params"] == 64 * 64 + 64 + 64 * 64 + 64 + 64 * 10 + 10
    assert cost["peak_memory_bytes"] >= 4 * 4 * cost["trainable_params"]
    assert cost["gpu_time_s"] > 0
