"""Scenario label and output-unit logic (docs/references.md, The three-scenario protocol)."""

import torch
from helpers import digits_setup

from cl_core.data import Scenario


def test_task_il_masks_to_the_task_units():
    s = Scenario("task", n_tasks=5, classes_per_task=2)
    assert s.out_units == 10
    logits = torch.arange(20.0).reshape(2, 10)
    assert s.active(logits, 3, seen_tasks=4).tolist() == [[6.0, 7.0], [16.0, 17.0]]
    per_sample = s.active(logits, torch.tensor([0, 4]), seen_tasks=5)
    assert per_sample.tolist() == [[0.0, 1.0], [18.0, 19.0]]
    # members first: logits (M, N, units), per-sample tasks (M, N)
    members = torch.stack([logits, logits + 100])
    per_member = s.active(members, torch.tensor([[0, 4], [1, 1]]), seen_tasks=5)
    assert per_member.tolist() == [[[0.0, 1.0], [18.0, 19.0]], [[102.0, 103.0], [112.0, 113.0]]]
    assert s.active(members, 3, seen_tasks=4)[1].tolist() == [[106.0, 107.0], [116.0, 117.0]]
    assert s.targets(torch.tensor([6, 7]), 3).tolist() == [0, 1]


def test_domain_il_has_one_head_with_within_task_labels():
    s = Scenario("domain", n_tasks=5, classes_per_task=2)
    assert s.out_units == 2
    assert s.targets(torch.tensor([8, 9]), 4).tolist() == [0, 1]
    assert s.targets(torch.tensor([2, 9]), torch.tensor([1, 4])).tolist() == [0, 1]


def test_class_il_units_all_or_seen():
    logits = torch.zeros(3, 1, 10)
    assert Scenario("class", 5, 2, "all").active(logits, 1, seen_tasks=2).shape == (3, 1, 10)
    assert Scenario("class", 5, 2, "seen").active(logits, 1, seen_tasks=2).shape == (3, 1, 4)
    assert Scenario("class", 5, 2).targets(torch.tensor([7]), 3).tolist() == [7]


def test_split_batches_carry_scenario_targets():
    _, ctx, _ = digits_setup(benchmark="split-digits", scenario="task", n_tasks=5, data_seed=0)
    batch = next(ctx.batches([2], 64))
    # task 2 holds classes (4, 5): within-task targets 0/1 match the raw labels
    raw = ctx.seq.dataset.y_train[ctx.seq.tasks[2].train_idx]
    assert batch.target.shape == (1, 64)  # (members, batch)
    assert set(batch.target.flatten().tolist()) == {0, 1} and set(raw.tolist()) == {4, 5}


def test_permuted_class_il_gives_each_task_new_labels():
    _, ctx, _ = digits_setup(scenario="class", n_tasks=3)
    assert ctx.scenario.out_units == 30
    batch = next(ctx.batches([2], 50))
    assert batch.target.min() >= 20 and batch.target.max() <= 29


def test_permutation_is_applied_as_gather():
    _, ctx, _ = digits_setup(n_tasks=2)
    task = ctx.seq.tasks[1]
    row = task.train_idx[:1]
    x = ctx.make_batch(row, 1).x
    raw = ctx.seq.dataset.x_train[row].float() / 16
    assert torch.equal(x, raw[:, task.perm])
    mixed = ctx.make_batch(torch.cat([row, row]), torch.tensor([0, 1])).x
    assert torch.equal(mixed[1], x[0]) and torch.equal(mixed[0], raw[0, ctx.seq.tasks[0].perm])
    # a training batch of (members, batch) rows: the same gathers, members first
    per_member = ctx.make_batch(torch.stack([row, row]), torch.tensor([[1], [0]])).x
    assert torch.equal(per_member[:, 0], mixed.flip(0))
