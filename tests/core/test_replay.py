"""Replay methods (ER, A-GEM, iCaRL, DER, DER++): hand-computed cases and real effects on digits."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import digits_setup

from cl_core.config import RunConfig
from cl_core.errors import ClsweepError
from cl_core.methods import METHODS
from cl_core.methods.agem import project
from cl_core.methods.icarl import nearest_mean_scores
from cl_core.methods.memory import as_batch
from cl_core.models import ContinualModel
from cl_core.params import resolve
from cl_core.trainer import RunResult, train

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


def _method(name, ctx, **params):
    cls = METHODS[name]
    return cls(resolve(cls.hyperparams, params, name), ctx)


def _class_il(**overrides):
    values = dict(benchmark="split-digits", scenario="class", n_tasks=5)
    values.update(overrides)
    return digits_setup(**values)


# ---- ER ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mixing", ["weighted", "concat"])
def test_er_loss_by_hand(mixing):
    _, ctx, model = _class_il()
    er = _method("er", ctx, budget=10, mixing=mixing, replay_batch_size=16)
    er.after_task(model, 0)
    er.after_task(model, 1)
    assert torch.bincount(er.memory.data["label"]).tolist() == [10, 10, 10, 10]
    ctx.seen_tasks = 3
    batch = next(ctx.batches([2], 32))
    state = er.memory.gen.get_state()
    loss = er.loss(model, batch, 2)
    er.memory.gen.set_state(state)
    stored = er.memory.sample(16)
    current = F.cross_entropy(model(batch.x), batch.target, reduction="none")
    replayed = F.cross_entropy(model(stored["x"]), stored["target"], reduction="none")
    if mixing == "weighted":  # t = 3 tasks so far: 1/3 current, 2/3 replayed
        by_hand = current.mean() / 3 + 2 * replayed.mean() / 3
    else:  # one batch of 32 + 16
        by_hand = torch.cat([current, replayed]).mean()
    torch.testing.assert_close(loss, by_hand, rtol=1e-5, atol=1e-6)


# ---- A-GEM ---------------------------------------------------------------------------------


def test_agem_projection_equals_eq_11_on_a_toy():
    # g = ([1, 2], [3]), g_ref = ([-1, 0], [-1]): <g, g_ref> = -4, |g_ref|^2 = 2, so
    # g~ = g - (-4 / 2) g_ref = ([-1, 2], [1]) and <g~, g_ref> = 1 + 0 - 1 = 0
    grads = [torch.tensor([1.0, 2.0]), torch.tensor([3.0])]
    refs = [torch.tensor([-1.0, 0.0]), torch.tensor([-1.0])]
    assert bool(project(grads, refs))
    assert grads[0].tolist() == [-1.0, 2.0] and grads[1].tolist() == [1.0]
    # no conflict: the gradient is left exactly as it was
    grads = [torch.tensor([1.0, 2.0]), torch.tensor([3.0])]
    assert not bool(project(grads, [torch.tensor([1.0, 0.0]), torch.tensor([-0.2])]))  # 1 - .6
    assert grads[0].tolist() == [1.0, 2.0] and grads[1].tolist() == [3.0]


def test_agem_step_gradient_is_the_projection_and_never_conflicts_with_memory():
    _, ctx, model = _class_il()
    agem = _method("agem", ctx, budget=20)
    agem.after_task(model, 0)
    ctx.seen_tasks = 2
    params = list(model.parameters())
    projected = 0
    for batch in ctx.batches([1], 32):
        model.zero_grad()
        agem.loss(model, batch, 1).backward()
        g = torch.cat([p.grad.flatten() for p in params]).clone()
        state = agem.memory.gen.get_state()
        agem.before_step(model, 1)
        g_new = torch.cat([p.grad.flatten() for p in params])
        # the reference gradient on the same stored samples, computed independently
        agem.memory.gen.set_state(state)
        stored = as_batch(agem.memory.sample(ctx.cfg.batch_size))
        model.zero_grad()
        F.cross_entropy(model(stored.x), stored.target).backward()
        g_ref = torch.cat([p.grad.flatten() for p in params])
        dot = (g @ g_ref).item()
        expected = g - (dot / (g_ref @ g_ref)) * g_ref if dot < 0 else g
        projected += dot < 0
        torch.testing.assert_close(g_new, expected, rtol=1e-5, atol=1e-7)
        assert (g_new @ g_ref).item() >= -1e-5 * g_ref.norm().item() * g.norm().item()
    assert projected > 0  # class-IL task 1 conflicts with task 0's memory: the case is exercised
    assert int(agem.projected_steps) == projected


# ---- iCaRL ---------------------------------------------------------------------------------


class FirstTwoInputs(ContinualModel):
    """φ(x) = the first two inputs (so class means can be computed by hand)."""

    def __init__(self, out_units: int) -> None:
        super().__init__()
        self.head = torch.nn.Linear(2, out_units)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :2]


def _inputs(rows):
    x = torch.zeros(len(rows), 64)
    x[:, :2] = torch.tensor(rows)
    return x


def test_nearest_mean_of_exemplars_on_hand_computed_means():
    _, ctx, _ = _class_il()
    icarl = _method("icarl", ctx)
    model = FirstTwoInputs(ctx.scenario.out_units)
    # class 0: exemplars (2, 0), (0, 2) -> normalised (1, 0), (0, 1) -> mean (.5, .5) -> (s, s)
    # class 3: exemplar (-3, 0) -> (-1, 0); no other class has exemplars
    icarl.memory.classes = {
        0: {"x": _inputs([[2.0, 0.0], [0.0, 2.0]])},
        3: {"x": _inputs([[-3.0, 0.0]])},
    }
    icarl.means, icarl.has_mean = icarl.class_means(model)
    s = 2**-0.5
    torch.testing.assert_close(icarl.means[0], torch.tensor([s, s]))
    torch.testing.assert_close(icarl.means[3], torch.tensor([-1.0, 0.0]))
    assert icarl.has_mean.nonzero().flatten().tolist() == [0, 3]

    scores = icarl.predict(model, _inputs([[1.0, 0.2], [-1.0, 0.5]]), 4)
    # x1 = (1, .2)/|.| = (0.98058, 0.19612): d0 = |(0.27347, -0.51099)| = 0.57957,
    #      d3 = |(1.98058, 0.19612)| = 1.99027
    # x2 = (-1, .5)/|.| = (-0.89443, 0.44721): d0 = |(-1.60154, -0.25990)| = 1.62249,
    #      d3 = |(0.10557, 0.44721)| = 0.45951
    torch.testing.assert_close(scores[:, 0], -torch.tensor([0.57957, 1.62249]), atol=1e-4, rtol=0)
    torch.testing.assert_close(scores[:, 3], -torch.tensor([1.99027, 0.45951]), atol=1e-4, rtol=0)
    others = [u for u in range(10) if u not in (0, 3)]
    assert torch.isinf(scores[:, others]).all() and (scores[:, others] < 0).all()
    assert scores.argmax(1).tolist() == [0, 3]
    # the same rule as a function of features, means and the has-a-mean mask
    torch.testing.assert_close(
        nearest_mean_scores(torch.tensor([[1.0, 0.2]]), icarl.means, icarl.has_mean), scores[:1]
    )


def test_icarl_distils_old_units_to_the_previous_models_sigmoids():
    _, ctx, model = _class_il()
    icarl = _method("icarl", ctx, budget=0)  # no exemplars: the loss on the batch alone
    icarl.before_task(model, 1)  # the previous model = the current one, frozen
    ctx.seen_tasks = 2
    batch = next(ctx.batches([1], 16))
    with torch.no_grad():
        old = torch.sigmoid(model(batch.x)[:, :2])
    logits = model(batch.x)[:, :4]
    target = torch.cat([old, F.one_hot(batch.target - 2, 2).float()], 1)  # task 1: classes 2, 3
    by_hand = -(target * F.logsigmoid(logits) + (1 - target) * F.logsigmoid(-logits)).sum(1)
    torch.testing.assert_close(icarl.loss(model, batch, 1), by_hand.mean())


def test_icarl_refuses_task_il_before_anything_runs():
    cfg = RunConfig(benchmark="split-digits", scenario="task", method="icarl")
    with pytest.raises(ClsweepError, match="does not support the task-IL scenario"):
        cfg.validated()
    proc = subprocess.run(
        [sys.executable, "-m", "cl_core", "--method", "icarl", "--scenario", "task"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "icarl" in lines[0] and "supports: class" in lines[0]


# ---- DER / DER++ ---------------------------------------------------------------------------


def test_der_stores_the_logits_of_the_forward_pass_before_the_step():
    _, ctx, model = _class_il()
    assert _method("der", ctx, budget=2, budget_per="total").memory.capacity == 2
    der = _method("der", ctx, budget=2)  # 2 per class x 10 classes = 20 slots
    assert der.memory.capacity == 20
    batch = next(ctx.batches([0], 8))
    with torch.no_grad():
        before = model(batch.x)
    der.loss(model, batch, 0).backward()
    with torch.no_grad():
        for p in model.parameters():
            p.sub_(0.1 * p.grad)  # the optimizer step, between loss and after_step
    der.after_step(model, batch, 0)
    assert len(der.memory) == 8
    assert torch.equal(der.memory.data["logits"], before)
    assert torch.equal(der.memory.data["x"], batch.x)
    assert der.memory.data["task"].tolist() == [0] * 8


def test_der_logit_mse_by_hand_on_each_scenarios_units():
    _, ctx, _ = _class_il()
    der = _method("der", ctx)
    logits = torch.zeros(2, 10)
    stored = torch.zeros(2, 10)
    stored[0, 0], stored[1, 3] = 2.0, -4.0
    fields = {"logits": stored, "task": torch.tensor([0, 1])}
    # class-IL, all units active: (2² + 4²) / (2 samples x 10 units)
    assert der.logit_mse(logits, fields).item() == pytest.approx(1.0)
    # task-IL: each sample's own task's 2 units; sample 1 (task 1: units 2, 3) differs by 4 at
    # unit 3, sample 0 (task 0: units 0, 1) by 2 at unit 0: (4 + 16) / (2 x 2)
    _, ctx_task, _ = digits_setup(benchmark="split-digits", scenario="task", n_tasks=5)
    der_task = _method("der", ctx_task)
    assert der_task.logit_mse(logits, fields).item() == pytest.approx(5.0)
    stored[1, 3], stored[1, 9] = 0.0, 7.0  # a unit outside task 1's head: ignored in task-IL
    assert der_task.logit_mse(logits, fields).item() == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["der", "derpp"])
def test_der_loss_equals_eq_4_and_eq_6_by_hand(name):
    _, ctx, model = _class_il()
    der = _method(name, ctx, alpha=0.3, **({"beta": 0.7} if name == "derpp" else {}))
    for batch in ctx.batches([0], 32):  # fill the reservoir while "training" task 0
        der.loss(model, batch, 0)
        der.after_step(model, batch, 0)
    batch = next(ctx.batches([1], 32))
    state = der.memory.gen.get_state()
    loss = der.loss(model, batch, 1)
    der.memory.gen.set_state(state)
    n = ctx.cfg.batch_size
    first = der.memory.sample(n)
    by_hand = F.cross_entropy(model(batch.x), batch.target)
    by_hand = by_hand + 0.3 * ((model(first["x"]) - first["logits"]) ** 2).mean()
    if name == "derpp":
        second = der.memory.sample(n)
        by_hand = by_hand + 0.7 * F.cross_entropy(model(second["x"]), second["label"])
    torch.testing.assert_close(loss, by_hand, rtol=1e-5, atol=1e-6)


# ---- whole runs ----------------------------------------------------------------------------


def _run(method: str, **params) -> RunResult:
    cfg = RunConfig(
        benchmark="split-digits",
        scenario="class",
        n_tasks=5,
        method=method,
        method_params=params,
        hidden=(100, 100),
        epochs=20,
        batch_size=32,
        device="cpu",
        data_seed=1,
        train_seed=1,
    )
    return RunResult.from_reports(cfg, list(train(cfg)))


@pytest.fixture(scope="module")
def finetune() -> RunResult:
    return _run("finetune")


@pytest.mark.parametrize("method", ["er", "agem", "der", "derpp"])
def test_replay_with_an_empty_memory_is_finetune_bit_for_bit(method, finetune):
    result = _run(method, budget=0)
    assert np.array_equal(result.acc_test, finetune.acc_test)
    assert np.array_equal(result.acc_val, finetune.acc_val)


# measured (test avg acc, seed 1): finetune 0.20, ER 0.95, A-GEM 0.46, iCaRL 0.89, DER 0.95,
# DER++ 0.95; A-GEM only constrains the gradient, so its margin is smaller (as in R4's tables)
@pytest.mark.parametrize(
    ("method", "margin"),
    [("er", 0.4), ("agem", 0.15), ("icarl", 0.4), ("der", 0.4), ("derpp", 0.4)],
)
def test_replay_beats_finetune_in_class_il(method, margin, finetune):
    base = finetune.metrics("test")["avg_acc"]
    assert base < 0.3  # fine-tuning forgets every task but the last (20% on 5 tasks)
    assert _run(method).metrics("test")["avg_acc"] > base + margin
