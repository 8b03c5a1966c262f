"""Populations: member m of M members trained as one computation reproduces the single run of
config m (docs/population.md), for every ported method and for the conv net; a diverging or
stopped member leaves the others bit-identical; grouping, stacked optimizers, per-trial fallback.

The contract, stated in what float32 rounding can change:
- parameters (and per-member buffers) after every 50 steps: within float32 tolerance of the
  single run's (rtol 1e-4, atol 1e-5; measured on these setups under every kernel set: at most
  3e-8 apart after the first 50 steps, 6e-7 after the last task), except where
  ``PARAMETER_TOLERANCE`` names a method, each with the reason and the measured value: a single
  run of those configs differs as much from itself under another kernel set;
- accuracy matrices: at most one evaluation sample per cell, |Δ| ≤ 1/len(rows) (a cell is the
  share of a task's val or test rows classified right; a rounding-level difference in a logit
  can only flip a near-tie; measured: no cell apart at all);
- exemplar memories: bit-identical where they are drawn at random or by reservoir sampling
  (counter-based streams); herding (iCaRL) ranks float32 features, so a near-tie can pick
  another exemplar, after which the runs legitimately part: the tests then xfail, naming the
  member and round, and check everything before it.
Populations and single runs differ in the shapes of their batched matmuls, so which CPU kernels
run matters: run this module under every kernel set the CPU offers, e.g.
    for c in default avx2 avx512; do
        ATEN_CPU_CAPABILITY=$c pytest tests/core/test_population.py
    done
(the header of a pytest run names the kernel set in use).
"""

import dataclasses
import logging
from functools import cache

import numpy as np
import pytest
import torch
from helpers import eval_rows, member_states, padded_digits, samples_apart

from cl_core.config import RunConfig
from cl_core.methods import METHODS, Method
from cl_core.methods.memory import ClassBalancedMemory, ReservoirMemory
from cl_core.models import ConvNet
from cl_core.optim import make_optimizer
from cl_core.population import (
    group_configs,
    population_problem,
    run_population,
    sharing_problem,
    train_population,
)
from cl_core.trainer import Run, RunResult, train
from cl_core.validation import validated

PORTED = (
    "finetune",
    "joint",
    "ewc",
    "si",
    "lwf",
    "er",
    "agem",
    "icarl",
    "der",
    "derpp",
    "xdg",
    "separate",
    "dgr",
    "bir",
    "gen_classifier",
    "fromp",
)

# Three members per method: they differ in lr and train_seed (set in _configs) and in every
# float hyperparameter of the method; everything else is shared.
MEMBERS = {
    "finetune": [{}, {}, {}],
    "joint": [{}, {}, {}],
    "ewc": [  # online EWC: γ = 1 is the classic sum
        {"lambda": 100.0, "merge": "online", "gamma": 1.0},
        {"lambda": 1e3, "merge": "online", "gamma": 0.5},
        {"lambda": 10.0, "merge": "online", "gamma": 0.9},
    ],
    "si": [{"c": 1.0}, {"c": 10.0, "epsilon": 0.01}, {"c": 100.0, "epsilon": 1.0}],
    "lwf": [
        {"temperature": 2.0},
        {"temperature": 1.0, "weight": 0.3},
        {"temperature": 4.0, "weight": 3.0},
    ],
    "er": [{}, {}, {}],
    "agem": [{}, {}, {}],
    "icarl": [{"temperature": 1.0}, {"temperature": 2.0}, {"temperature": 0.5}],
    "der": [{"alpha": 1.0}, {"alpha": 0.3}, {"alpha": 3.0}],
    "derpp": [
        {"alpha": 1.0, "beta": 0.5},
        {"alpha": 0.3, "beta": 1.0},
        {"alpha": 3.0, "beta": 0.1},
    ],
    "xdg": [{"gating_prop": 0.9}, {"gating_prop": 0.5}, {"gating_prop": 0.75}],
    "separate": [{}, {}, {}],
    # small VAEs (z = 8; the generative classifier's 16 units), distillation on so that T matters
    "dgr": [
        {"distill": True, "temperature": 2.0, "z_dim": 8},
        {"distill": True, "temperature": 1.0, "z_dim": 8},
        {"distill": True, "temperature": 4.0, "z_dim": 8},
    ],
    "bir": [
        {"temperature": 2.0, "gate_prop": 0.1, "z_dim": 8},
        {"temperature": 1.0, "gate_prop": 0.3, "z_dim": 8},
        {"temperature": 4.0, "gate_prop": 0.5, "z_dim": 8},
    ],
    "gen_classifier": [{"units": 16, "z_dim": 4, "samples": 3}] * 3,  # no float to vary
    "fromp": [
        {"tau": 1.0, "prior_precision": 1e-3, "grad_clip": 1.0, "budget": 10},
        {"tau": 10.0, "prior_precision": 1e-2, "grad_clip": 0.5, "budget": 10},
        {"tau": 0.1, "prior_precision": 0.1, "grad_clip": 0.0, "budget": 10},
    ],
}
# Where float32 rounding is amplified: (rtol, atol, rounds checked at the module's tolerance
# first, rtol of the train losses from those rounds on). Measured on these setups: max |Δ| of
# a member's parameters, population vs single run, under ATEN_CPU_CAPABILITY=default / avx2 /
# avx512, and a single run of the same config under default or avx2 vs avx512:
PARAMETER_TOLERANCE = {
    # weights whose gradient is zero up to rounding (from pixels almost never on, e.g. 0.4-12%
    # of the digits, that only replayed images light up; from a nearly dead ReLU unit of a
    # class's VAE): Adam divides such a gradient by its own scale, so its rounding noise becomes
    # a relative error of the step. DGR on split digits 1.2e-5 / 1.2e-5 / 2.2e-5 (single run
    # against itself: 1.8e-5); the generative classifier on permuted digits 2.1e-5 / 1.8e-6 /
    # 1.8e-6 (single run: 1.1e-5). BI-R is within the module's tolerance (3.6e-7).
    "dgr": (1e-4, 1e-4, 0, 1e-4),
    "gen_classifier": (1e-4, 1e-4, 0, 1e-4),
    # FROMP's kernels K = J Σ Jᵀ are ill-conditioned (units of classes the task does not hold
    # have p_k ≈ 0, so K ≈ εI) and the regulariser applies K⁻¹ (Pan et al. 2020, eq. 9): from the
    # second task's kernels on, a rounding-level difference in the anchors or the GGN is
    # amplified. Split digits, member 1 (τ = 10): 9e-7 after task 1, then up to 6.0e-2 / 6.5e-2
    # / 4.3e-2 (single run against itself: 6.0e-2 / 4.3e-2); accuracy matrices stay within one
    # sample per cell (measured: none apart), its train losses from task 2 on within 4.0e-2 /
    # 1.3e-2 / 2.7e-2 relative. Rounds 0-2 keep the module's tolerance.
    "fromp": (1e-4, 0.1, 3, 0.1),
}
BENCHMARKS = ("split-digits", "permuted-digits")
STEPS = 50  # optimizer steps per task


def _scenario(method: str, benchmark: str) -> str:
    cls = METHODS[method]
    if len(cls.scenarios) == 1:
        return cls.scenarios[0]
    return "class" if benchmark == "split-digits" else "domain"


def _configs(method: str, benchmark: str, members=None, **overrides) -> list[RunConfig]:
    """One config per member: member m with ``members[m]``'s hyperparameters, train seed m and
    learning rate (m + 1) · lr (lr: 1e-3 unless overridden)."""
    base = dict(
        benchmark=benchmark,
        scenario=_scenario(method, benchmark),
        n_tasks=5 if benchmark == "split-digits" else 3,
        hidden=(32,),
        iterations=STEPS,
        epochs=None,
        batch_size=16,
        device="cpu",
        method=method,
    )
    base.update(overrides)
    lr = base.pop("lr", 1e-3)
    return [
        RunConfig(**base, train_seed=m, lr=lr * (1 + m), method_params=params)
        for m, params in enumerate(members if members is not None else MEMBERS[method])
    ]


def test_every_registered_method_is_ported():
    assert set(PORTED) == set(METHODS)
    assert set(MEMBERS) == set(PORTED)
    for method, members in MEMBERS.items():  # members differ in every float the method has
        floats = {n for n, p in METHODS[method].hyperparams.items() if p.per_member}
        varied = {n for n in floats if len({m.get(n) for m in members}) > 1}
        assert varied == floats, method


# ---- member m = single run m ---------------------------------------------------------------
def _exemplars(run: Run) -> torch.Tensor | None:
    """Each member's stored inputs (M, K·D) if the method keeps an exemplar memory."""
    memory = getattr(run.method, "memory", None)
    if not isinstance(memory, (ClassBalancedMemory, ReservoirMemory)) or not memory.data:
        return None
    return memory.data["x"].flatten(1).clone()


def _trace(cfgs, dataset=None, validate=True):
    """``helpers.trace`` that also records each member's exemplar memory after every round."""
    run = Run([validated(c) for c in cfgs] if validate else cfgs, dataset)
    reports = {i: [] for i in range(len(cfgs))}
    states = {i: [] for i in range(len(cfgs))}
    memories = {i: [] for i in range(len(cfgs))}
    for batch in run:
        state, stored = member_states(run.model), _exemplars(run)
        for pos, member in enumerate(run.ids):
            states[member].append(state[pos])
            memories[member].append(None if stored is None else stored[pos])
        for member, report in batch.items():
            reports[member].append(report)
    return reports, states, memories


@cache
def _population_and_singles(method: str, benchmark: str):
    """The population of ``MEMBERS[method]`` and each member's single run (cached: the
    parameter and the accuracy tests read the same runs)."""
    cfgs = _configs(method, benchmark)
    population = _trace(cfgs)
    singles = [_trace([cfg]) for cfg in cfgs]
    return cfgs, population, singles, None


def _first_herding_difference(population, singles, member) -> int | None:
    """The first round after which member ``member``'s herded exemplars differ from its single
    run's (None: they never do)."""
    ours, theirs = population[2][member], singles[member][2][0]
    for r, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        if (a is None) != (b is None) or (a is not None and not torch.equal(a, b)):
            return r
    return None


def _herding_flip(method, population, singles, member) -> int | None:
    """Random draws and reservoirs store bit-identical exemplars in a population and alone
    (counter-based streams); herding ranks features, so float32 rounding of the features can
    pick another exemplar at a near-tie: the round where that happened, if it did."""
    flip = _first_herding_difference(population, singles, member)
    selection = METHODS[method].hyperparams.get("selection")
    herding = selection is not None and selection.default == "herding"
    if not herding:
        assert flip is None, f"member {member}'s exemplars differ after round {flip}"
    return flip


CASES = [(m, b) for m in PORTED for b in BENCHMARKS]


@pytest.mark.parametrize(("method", "digits"), CASES)
def test_member_parameters_after_every_50_steps_are_the_single_runs(method, digits):
    cfgs, population, singles, _ = _population_and_singles(method, digits)
    flips = {}
    for m, cfg in enumerate(cfgs):
        ours, theirs = population[1][m], singles[m][1][0]
        assert len(ours) == len(theirs) == cfg.n_tasks + 1
        flip = _herding_flip(method, population, singles, m)
        checked = len(ours) if flip is None else flip + 1  # the rounds before it tells
        rtol, atol, exact, _ = PARAMETER_TOLERANCE.get(method, (1e-4, 1e-5, None, None))
        for r, (a, b) in enumerate(zip(ours[:checked], theirs[:checked], strict=True)):
            tol = (
                dict(rtol=1e-4, atol=1e-5)
                if exact is None or r < exact
                else dict(rtol=rtol, atol=atol)
            )
            torch.testing.assert_close(a, b, **tol, msg=f"member {m} round {r}")
        if flip is not None:
            flips[m] = (flip, (ours[-1] - theirs[-1]).abs().max().item())
        assert not torch.equal(ours[-1], ours[-2])  # it did train
    # the members really differ (a population is not one config M times)
    assert not torch.equal(population[1][0][-1], population[1][1][-1])
    if flips:
        pytest.xfail(_flip_message(method, digits, flips, "parameters"))


@pytest.mark.parametrize(("method", "digits"), CASES)
def test_member_accuracy_matrices_are_the_single_runs_to_one_sample(method, digits):
    cfgs, population, singles, _ = _population_and_singles(method, digits)
    flips = {}
    for m, cfg in enumerate(cfgs):
        ours = RunResult.from_reports(cfg, population[0][m])
        theirs = RunResult.from_reports(cfg, singles[m][0][0])
        assert ours.status == theirs.status == "completed"
        flip = _herding_flip(method, population, singles, m)
        rows = slice(None) if flip is None else slice(0, flip)  # rows before it tells
        worst = 0.0
        for split in ("val", "test"):
            a, b = getattr(ours, f"acc_{split}"), getattr(theirs, f"acc_{split}")
            assert a.shape == b.shape == (cfg.n_tasks + 1, cfg.n_tasks)
            apart = samples_apart(a[rows], b[rows], eval_rows(cfg, split))
            assert apart <= 1 + 1e-6, f"member {m}, {split}: {apart:.0f} samples apart"
            worst = max(worst, samples_apart(a, b, eval_rows(cfg, split)))
        last = None if flip is None else flip + 1
        _, _, exact, loss_rtol = PARAMETER_TOLERANCE.get(method, (0, 0, None, None))
        for r, (a, b) in enumerate(zip(ours.train_loss, theirs.train_loss, strict=True)):
            if r == 0 or (last is not None and r >= last):
                continue
            rtol = 1e-4 if exact is None or r < exact else loss_rtol
            np.testing.assert_allclose(a, b, rtol=rtol, err_msg=f"member {m} round {r}")
        if flip is not None:
            flips[m] = (flip, worst)
    if flips:
        pytest.xfail(_flip_message(method, digits, flips, "samples per cell"))


def _flip_message(method, digits, flips, what) -> str:
    where = "; ".join(
        f"member {m} after round {flip}, then {apart:.2g} {what} apart"
        for m, (flip, apart) in flips.items()
    )
    return (
        f"{method} on {digits}: herding picked another exemplar than the single run's "
        f"(float32 rounding of the features at a near-tie of the herding distances): {where}"
    )


# ---- the conv net ------------------------------------------------------------------------------
# The conv net refuses 8x8 images and no benchmark serves the digits padded to 16x16
# (pad32 pads 28x28 images), so these runs take the padded digits as their dataset and skip
# validated(RunConfig) (which checks the benchmark's own 8x8 shape).
CONV = dict(model="conv", hidden=(16,), optimizer="sgd", momentum=0.0, iterations=10)


def _conv_population_and_singles(folder, kind: str, benchmark: str):
    data = padded_digits()
    settings = dict(CONV)
    if kind == "frozen":  # pre-trained conv layers, frozen and shared by the members
        torch.manual_seed(7)
        net = ConvNet(data.shape, (), 2)
        with torch.no_grad():  # non-default batch norm statistics, as a pre-trained net has
            net.train()
            net(torch.rand(64, data.input_dim))
        path = str(folder / "conv.pt")
        torch.save(net.conv.state_dict(), path)
        settings.update(conv_weights=path, freeze_conv=True, optimizer="adam", iterations=STEPS)
    elif benchmark == "split-digits":
        settings.update(n_tasks=2)  # 20 steps in all (see the test's docstring)
    if settings["optimizer"] == "sgd":
        settings["lr"] = 1e-2
    cfgs = _configs("finetune", benchmark, **settings)
    population = _trace(cfgs, data, validate=False)
    singles = [_trace([cfg], data, validate=False) for cfg in cfgs]
    return cfgs, population, singles, data


@pytest.mark.parametrize("digits", BENCHMARKS)
@pytest.mark.parametrize("kind", ["trainable", "frozen"])
def test_conv_net_members_are_the_single_runs(kind, digits, tmp_path):
    """The conv net of the three-scenario protocol on the digits padded to 16x16, three members
    (lr, seed): parameters and batch norm statistics within float32 tolerance after every task,
    accuracy matrices to one sample per cell.

    Trainable conv layers: 10 SGD steps per task (3 permuted tasks, 2 split ones). Longer runs
    are chaotic at the float32 level, single runs too: batch norm over 16 images of 2x2 maps,
    and the conv biases before batch norm, whose gradient is zero up to rounding noise, amplify
    rounding differences (measured on this setup: after 50 steps parameters 1.7e-3 apart
    relative to their scale with SGD, 2e-3 with Adam, which turns the noise gradient of those
    biases into ±lr steps from the first step on; a single run differs from itself by 3e-4
    (SGD) and 5e-3 (Adam) under another ATEN_CPU_CAPABILITY, and by up to 6 test samples per
    cell after 5 tasks). Frozen pre-trained conv layers (the Split CIFAR-100 protocol) train
    only the fully connected layers: 50 Adam steps per task, as the MLP cases."""
    cfgs, population, singles, data = _conv_population_and_singles(tmp_path, kind, digits)
    for m, cfg in enumerate(cfgs):
        ours, theirs = population[1][m], singles[m][1][0]
        assert len(ours) == len(theirs) == cfg.n_tasks + 1
        for r, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=f"member {m} round {r}")
        assert not torch.equal(ours[-1], ours[0])
        for split in ("val", "test"):
            a = np.array([getattr(r, f"{split}_acc") for r in population[0][m]])
            b = np.array([getattr(r, f"{split}_acc") for r in singles[m][0][0]])
            assert samples_apart(a, b, eval_rows(cfg, split, data)) <= 1 + 1e-6


# ---- members that leave ------------------------------------------------------------------------
# Where the remaining members' numbers are not bit-identical when the population narrows: CPU
# BLAS picks its kernel by the batch count M for a few shapes, so a member's last bits can
# depend on how many others there are (measured on these setups: a single-row batch through
# a 64->32 layer; iCaRL's first-layer weight gradient on its batch with exemplars, 16 + 13
# rows; separate networks' output-layer weight gradient, (10 x 16)·(16 x 13) per member).
# Those members stay within float32 tolerance and one sample per cell.
NARROWING_NOT_BITWISE = {
    "icarl": "the first layer's weight gradient on 16 + 13 rows depends on M in the last bit",
    "separate": "the 13-unit networks' output weight gradient depends on M in the last bit",
    "gen_classifier": "its VAEs are M x classes stacked rows: the batch count of every matmul "
    "changes with M",
}


def _assert_same_numbers(method, ours, theirs, cfg) -> None:
    """``ours`` and ``theirs`` ((reports, states) of one member) bit-identical; where the core
    is known not to be (``NARROWING_NOT_BITWISE``), float32-close and one sample per cell,
    and the test xfails naming why."""
    (a_reports, a_states), (b_reports, b_states) = ours, theirs
    assert [r.status for r in a_reports] == [r.status for r in b_reports]
    same = all(torch.equal(x, y) for x, y in zip(a_states, b_states, strict=True)) and [
        (r.val_acc, r.test_acc, r.train_loss) for r in a_reports
    ] == [(r.val_acc, r.test_acc, r.train_loss) for r in b_reports]
    if same:
        return
    for x, y in zip(a_states, b_states, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)
    for split in ("val", "test"):
        a = np.array([getattr(r, f"{split}_acc") for r in a_reports])
        b = np.array([getattr(r, f"{split}_acc") for r in b_reports])
        assert samples_apart(a, b, eval_rows(cfg, split)) <= 1 + 1e-6
    assert method in NARROWING_NOT_BITWISE, "not bit-identical"
    pytest.xfail(f"{method}: not bit-identical: {NARROWING_NOT_BITWISE[method]}")


def _divergence_configs(method):
    """Two calm members and one whose SGD steps explode (lr 1e20: NaN loss within 50 steps of
    task 1; at 1e6 or 1e10 the ReLUs die and the loss stays finite); the calm twin of the
    third member differs only in its learning rate."""
    members = MEMBERS[method]
    calm = _configs(method, "permuted-digits", members, optimizer="sgd", lr=0.01, iterations=60)
    bad = _configs(method, "permuted-digits", members, optimizer="sgd", iterations=60)[1]
    bad.train_seed = 5
    twin = dataclasses.replace(bad, lr=0.02)
    bad.lr = 1e20
    return calm[0], bad, twin, calm[2]


def _late_divergence_configs(_method):
    """EWC whose penalty is too strong for plain SGD: it explodes on task 2, once a Fisher
    exists (its EWC terms stay in the computation to the end)."""
    base = dict(DIGITS, epochs=3, optimizer="sgd", lr=0.05, method="ewc", batch_size=64)
    first, last = (RunConfig(**base, train_seed=s, method_params={"lambda": 10.0}) for s in (0, 1))
    bad = RunConfig(**base, train_seed=5, method_params={"lambda": 1e13})
    twin = RunConfig(**base, train_seed=5, method_params={"lambda": 1.0})
    return first, bad, twin, last


DIVERGING = [(m, _divergence_configs) for m in PORTED] + [("ewc", _late_divergence_configs)]


@pytest.mark.parametrize(("method", "configs"), DIVERGING, ids=[*PORTED, "ewc-on-task-2"])
def test_a_diverging_member_leaves_the_others_bit_identical(method, configs):
    """A diverged member keeps its slot (docs/population.md): the others' reports, parameters
    and buffers after every task are the bits of the same population in which that member
    trains calmly."""
    first, bad, twin, last = configs(method)
    with_bad = _trace([first, bad, last])
    calm = _trace([first, twin, last])
    bad_reports = with_bad[0][1]
    assert bad_reports[-1].status == "diverged"
    assert "lower the learning rate" in bad_reports[-1].message
    assert all(r.status == "ok" for r in bad_reports[:-1])
    # the diverged member's reports are its single run's
    alone = list(train(bad))
    assert [(r.tasks_learned, r.status) for r in alone] == [
        (r.tasks_learned, r.status) for r in bad_reports
    ]
    assert [r.test_acc for r in alone[:-1]] == [r.test_acc for r in bad_reports[:-1]]
    for member in (0, 2):
        assert [r.status for r in with_bad[0][member]] == ["ok"] * 4
        ours = [(r.val_acc, r.test_acc, r.train_loss) for r in with_bad[0][member]]
        theirs = [(r.val_acc, r.test_acc, r.train_loss) for r in calm[0][member]]
        assert ours == theirs
        for a, b in zip(with_bad[1][member], calm[1][member], strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize("method", PORTED)
def test_a_stopped_member_trains_no_further_task_and_the_others_continue_bit_identical(method):
    """``Run.stop`` between tasks (early stopping): the stopped member's reports end there;
    the others' are those of the population that never stopped it, to the bit."""
    cfgs = [validated(c) for c in _configs(method, "permuted-digits")]
    full = _trace(cfgs)
    run = Run(cfgs)
    seen = {i: [] for i in range(3)}
    states = {i: [] for i in range(3)}
    for batch in run:
        state = member_states(run.model)
        for pos, member in enumerate(run.ids):
            states[member].append(state[pos])
        for i, report in batch.items():
            seen[i].append(report)
        if batch[0].tasks_learned == 1:
            run.stop(1)
    assert [r.tasks_learned for r in seen[1]] == [0, 1]
    assert [r.test_acc for r in seen[1]] == [r.test_acc for r in full[0][1][:2]]
    for i in (0, 2):
        assert [r.tasks_learned for r in seen[i]] == list(range(cfgs[i].n_tasks + 1))
        _assert_same_numbers(method, (seen[i], states[i]), (full[0][i], full[1][i]), cfgs[i])


def test_population_rounds_status_and_stop():
    cfgs = _configs("ewc", "permuted-digits")
    full = run_population(cfgs)
    population = train_population(cfgs)
    seen: dict[int, list[int]] = {i: [] for i in range(3)}
    reports = {i: [] for i in range(3)}
    for batch in population:
        for i, report in batch.items():
            seen[i].append(report.tasks_learned)
            reports[i].append(report)
        if 1 in batch and batch[1].tasks_learned == 1:
            assert population.running() == [0, 1, 2]
            population.stop(1)
            population.stop(1)  # twice: nothing more happens
    assert seen == {0: [0, 1, 2, 3], 1: [0, 1], 2: [0, 1, 2, 3]}
    assert population.status == {0: "completed", 1: "stopped", 2: "completed"}
    for i in (0, 2):
        result = RunResult.from_reports(cfgs[i], reports[i])
        assert np.array_equal(result.acc_test, full[i].acc_test)
    partial = RunResult.from_reports(cfgs[1], reports[1])
    assert np.array_equal(partial.acc_test, full[1].acc_test[:2])


# ---- grouping and fallback ---------------------------------------------------------------------
DIGITS = dict(benchmark="permuted-digits", scenario="domain", n_tasks=3, hidden=(32,), device="cpu")


class Unbatched(Method):
    """A method that declares it has no population form."""

    name = "unbatched"
    population_form = False


def test_a_method_without_population_form_runs_alone_with_a_one_line_notice(monkeypatch, caplog):
    monkeypatch.setitem(METHODS, "unbatched", Unbatched)
    pop_cfg = RunConfig(**DIGITS, method="finetune")
    other = RunConfig(**DIGITS, method="unbatched", train_seed=1)
    assert population_problem(pop_cfg) is None
    assert population_problem(other) == (
        "method 'unbatched' has no population form (docs/population.md says why)"
    )
    with caplog.at_level(logging.WARNING, logger="cl_core.population"):
        results = run_population([pop_cfg, other, pop_cfg])
    notices = [r.getMessage() for r in caplog.records if r.name == "cl_core.population"]
    assert notices == [
        "population: 1 config(s) [1] run one by one: method 'unbatched' has no population form "
        "(docs/population.md says why)"
    ]
    # the fallback member is the single run itself, in step with the population
    alone = RunResult.from_reports(other, list(train(other)))
    assert np.array_equal(results[1].acc_test, alone.acc_test)
    assert np.array_equal(results[0].acc_test, results[2].acc_test)
    assert results[1].status == "completed"


def test_sharing_rules_name_what_differs():
    a = validated(RunConfig(**DIGITS, method="ewc"))
    faster = validated(
        RunConfig(
            **{**DIGITS, "lr": 0.1}, method="ewc", train_seed=4, method_params={"lambda": 3.0}
        )
    )
    assert sharing_problem([a, faster]) is None  # lr, seed and floats may differ
    b = validated(RunConfig(**{**DIGITS, "hidden": (64,)}, method="ewc"))
    assert sharing_problem([a, faster, b]) == (
        "config 2: hidden differs ((64,) vs (32,)); members must share it"
    )
    c = validated(RunConfig(**DIGITS, method="ewc", method_params={"merge": "separate"}))
    assert sharing_problem([a, c]) == (
        "config 1: ewc merge='separate' vs 'sum'; members must share every hyperparameter that "
        "is not a float"
    )
    d = validated(RunConfig(**DIGITS, method="si"))
    assert (
        sharing_problem([a, d]) == "config 1: method differs ('si' vs 'ewc'); members must share it"
    )
    groups = group_configs([a, b, a, c, d, faster])
    assert groups == [([0, 2, 5], None), ([1], None), ([3], None), ([4], None)]


def test_configs_that_cannot_share_train_in_groups_each_its_single_run():
    """A population of configs with different shapes or shared settings is split into groups;
    every member still gets its single run's numbers."""
    cfgs = [
        RunConfig(**DIGITS, method="ewc", epochs=1, batch_size=64),
        RunConfig(**DIGITS, method="ewc", epochs=1, batch_size=64, method_params={"merge": "mean"}),
        RunConfig(**{**DIGITS, "hidden": (16,)}, method="ewc", epochs=1, batch_size=64),
        RunConfig(**DIGITS, method="ewc", epochs=1, batch_size=64, train_seed=3, lr=3e-3),
    ]
    assert [g for g, _ in group_configs(cfgs)] == [[0, 3], [1], [2]]
    for cfg, ours in zip(cfgs, run_population(cfgs), strict=True):
        theirs = RunResult.from_reports(cfg, list(train(cfg)))
        for split in ("val", "test"):
            a, b = getattr(ours, f"acc_{split}"), getattr(theirs, f"acc_{split}")
            assert samples_apart(a, b, eval_rows(cfg, split)) <= 1 + 1e-6


# ---- the optimizer -----------------------------------------------------------------------------
def _torch_optimizer(cfg: RunConfig, param) -> torch.optim.Optimizer:
    """torch.optim's reference (single-tensor) implementation with ``cfg``'s settings."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            [param], cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, foreach=False
        )
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls([param], cfg.lr, weight_decay=cfg.weight_decay, foreach=False)


@pytest.mark.parametrize("kind", ["adam", "adamw", "sgd"])
def test_stacked_optimizers_match_torch_optim_step_by_step(kind):
    settings = [(1e-3, 0.0, 0.9), (3e-2, 1e-2, 0.5), (0.1, 1e-4, 0.0)]
    cfgs = [
        RunConfig(optimizer=kind, lr=lr, weight_decay=wd, momentum=mu) for lr, wd, mu in settings
    ]
    gen = torch.Generator().manual_seed(0)
    theta = torch.randn(3, 200, generator=gen)
    singles = [torch.nn.Parameter(row.clone()) for row in theta]
    torch_optims = [_torch_optimizer(c, p) for c, p in zip(cfgs, singles, strict=True)]
    stacked = make_optimizer(cfgs, theta)
    for _ in range(20):
        grad = torch.randn(3, 200, generator=gen)
        stacked.step(theta, grad.clone())
        for i, (p, opt) in enumerate(zip(singles, torch_optims, strict=True)):
            p.grad = grad[i].clone()
            opt.step()
            torch.testing.assert_close(theta[i], p.detach(), rtol=1e-6, atol=1e-8)
    # dropping a member keeps the others' state: their next steps are unchanged
    stacked.select(torch.tensor([0, 2]))
    theta = theta[[0, 2]].clone()
    grad = torch.randn(3, 200, generator=gen)
    stacked.step(theta, grad[[0, 2]].clone())
    for row, i in enumerate((0, 2)):
        singles[i].grad = grad[i].clone()
        torch_optims[i].step()
        torch.testing.assert_close(theta[row], singles[i].detach(), rtol=1e-6, atol=1e-8)


def test_population_speed_benchmark_runs_both_paths_and_they_agree(capsys):
    """The benchmark's CPU run (the code path ``--device cuda`` takes on a GPU): a population of
    2 and the per-trial path, side by side, their final accuracies within one sample."""
    from benchmarks.population_speed import main

    args = ["--method", "ewc", "--sizes", "2", "--repeats", "1", "--per-trial", "1"]
    rows = main([*args, "--tasks", "2", "--iterations", "20"])
    torch.set_num_threads(1)  # the benchmark sets its own thread count
    out = capsys.readouterr().out
    assert "max Δ (samples)" in out and len(out.strip().splitlines()) == 2
    ((row),) = rows
    assert row["method"] == "ewc" and row["n"] == 2
    assert row["population_s"] > 0 and row["per_trial_s"] > 0
    assert row["max_test_diff_samples"] <= 1 + 1e-6
