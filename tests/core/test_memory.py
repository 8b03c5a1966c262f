"""Exemplar memory, one per member: class balance, budgets, herding by hand, reservoir sampling,
determinism (member m of a population fills the memory a run of m alone fills)."""

import pytest
import torch
from helpers import population_setup

from cl_core.methods.memory import (
    ClassBalancedMemory,
    ReservoirMemory,
    as_batch,
    herding_order,
)
from cl_core.methods.replay import features_of, task_fields
from cl_core.random import MemberRandom

SPLIT = dict(benchmark="split-digits", scenario="class", n_tasks=5)
SEEDS = [{"train_seed": 0}, {"train_seed": 1}, {"train_seed": 2}]


def test_class_balanced_per_class_budget_and_balance():
    _, ctx, _ = population_setup(SEEDS, **SPLIT)
    memory = ClassBalancedMemory(ctx.random("memory"), budget=7, per="class")
    for task in range(3):
        memory.add_classes(task_fields(ctx, task))
    assert len(memory) == 42 and memory.data["x"].shape == (3, 42, 64)
    for m in range(3):
        assert torch.bincount(memory.data["label"][m]).tolist() == [7] * 6
    # each exemplar is a real training sample of its class, stored with its task
    assert torch.equal(memory.data["task"], memory.data["label"] // 2)
    fields = task_fields(ctx, 0)
    for x, label in zip(memory.classes[1]["x"][2], memory.classes[1]["label"][2], strict=True):
        match = (fields["x"] == x).all(1)
        assert match.any() and (fields["label"][match] == label).all()
    # each member draws its own exemplars
    assert not torch.equal(memory.data["x"][0], memory.data["x"][1])


def test_total_budget_shrinks_old_classes_keeping_their_first_exemplars():
    _, ctx, _ = population_setup(SEEDS, **SPLIT)
    memory = ClassBalancedMemory(ctx.random("memory"), budget=20, per="total")
    memory.add_classes(task_fields(ctx, 0))
    first = {c: memory.classes[c]["x"].clone() for c in (0, 1)}
    assert [memory.classes[c]["x"].shape[:2] for c in (0, 1)] == [(3, 10), (3, 10)]
    memory.add_classes(task_fields(ctx, 1))
    assert len(memory) == 20
    for m in range(3):
        assert torch.bincount(memory.data["label"][m]).tolist() == [5] * 4
    for c in (0, 1):
        assert torch.equal(memory.classes[c]["x"], first[c][:, :5])


def test_memory_is_deterministic_under_the_training_seed():
    def fill(seeds):
        _, ctx, _ = population_setup([{"train_seed": s} for s in seeds], **SPLIT)
        memory = ClassBalancedMemory(ctx.random("memory"), budget=5, per="class")
        memory.add_classes(task_fields(ctx, 0))
        return memory.data["x"], memory.sample(4)["x"]

    alone0, again0, alone1 = fill([0]), fill([0]), fill([1])
    assert torch.equal(alone0[0], again0[0]) and torch.equal(alone0[1], again0[1])
    assert not torch.equal(alone0[0], alone1[0])
    # member m of a population stores and draws what a run of m alone does
    population = fill([1, 7, 0])
    for alone, m in ((alone0, 2), (alone1, 0)):
        assert torch.equal(population[0][m], alone[0][0])
        assert torch.equal(population[1][m], alone[1][0])


def test_sample_without_replacement_and_as_batch():
    _, ctx, _ = population_setup(SEEDS[:2], **{**SPLIT, "scenario": "task"})
    memory = ClassBalancedMemory(ctx.random("memory"), budget=3, per="class")
    memory.add_classes(task_fields(ctx, 0))
    drawn = memory.sample(100)  # more than stored: all 6, each once
    assert drawn["x"].shape == (2, 6, 64)
    for m in range(2):
        assert sorted(drawn["x"][m].sum(1).tolist()) == sorted(memory.data["x"][m].sum(1).tolist())
    batch = as_batch(memory.sample(4))
    assert len(batch) == 4 and batch.task.shape == (2, 4) and batch.task.dtype == torch.long
    assert batch.target.max() < 2


def test_herding_picks_the_hand_computed_order():
    # unit vectors a, b, c, d (scaled, since herding normalises): mean mu = (0.52, 0.64)
    # k=1: |mu - phi| = 0.8, 0.632, 0.4, 0.283 -> d; k=2: |mu - (d+phi)/2| -> c (0.141);
    # k=3: a (0.211) before b (0.267); then b.
    features = torch.tensor([[2.0, 0.0], [0.0, 3.0], [0.28, 0.96], [4.0, 3.0]])
    assert herding_order(features.unsqueeze(0), 4).tolist() == [[3, 2, 0, 1]]
    assert herding_order(features.unsqueeze(0), 2).tolist() == [[3, 2]]
    # members herd their own features: member 1 holds the same samples in another order
    order = torch.tensor([2, 0, 3, 1])  # member 1's sample j is member 0's sample order[j]
    both = torch.stack([features, features[order]])
    assert herding_order(both, 4).tolist() == [[3, 2, 0, 1], [2, 0, 1, 3]]


def test_herding_selection_in_memory_uses_features():
    _, ctx, model = population_setup(SEEDS[:2], **SPLIT)
    memory = ClassBalancedMemory(ctx.random("m"), budget=4, per="class", selection="herding")
    fields = task_fields(ctx, 0)
    features = features_of(model, fields["x"], 4096)
    assert features.shape == (2, len(fields["x"]), 16)
    memory.add_classes(fields, features)
    rows = (fields["label"] == 0).nonzero().flatten()
    for m in range(2):
        expected = fields["x"][rows[herding_order(features[m : m + 1, rows], 4)[0]]]
        assert torch.equal(memory.classes[0]["x"][m], expected)
    assert not torch.equal(memory.classes[0]["x"][0], memory.classes[0]["x"][1])


def _reservoir_loop(capacity, n_total, slot_draws):
    """Algorithm R one sample at a time: sample i replaces slot r_i if r_i < capacity."""
    slots = [None] * capacity
    for i in range(n_total):
        if i < capacity:
            slots[i] = i
        else:
            r = int(slot_draws[i])
            if r < capacity:
                slots[r] = i
    return slots


def test_reservoir_equals_the_sequential_algorithm():
    seeds = [3, 8]
    memory = ReservoirMemory(MemberRandom(seeds, "memory", "cpu"), capacity=10)
    ids = torch.arange(95)
    for start in range(0, 95, 16):  # batches of 16 (the last one shorter), one per member
        memory.offer({"id": ids[start : start + 16].expand(2, -1)})
    replay = MemberRandom(seeds, "memory", "cpu")  # the same uniform draws, batch by batch
    uniforms = torch.cat([replay.rand(len(ids[s : s + 16])) for s in range(0, 95, 16)], dim=1)
    slot_draws = (uniforms * (ids + 1)).long()  # r_i = ⌊u_i · (i + 1)⌋, in float32 as offered
    for m in range(2):
        assert memory.data["id"][m].tolist() == _reservoir_loop(10, 95, slot_draws[m].tolist())
    assert not torch.equal(memory.data["id"][0], memory.data["id"][1])
    assert len(memory) == 10 and memory.seen == 95


def test_reservoir_keeps_every_sample_with_equal_probability():
    # 300 members, each its own reservoir over the same 200 samples
    memory = ReservoirMemory(MemberRandom(list(range(300)), "memory", "cpu"), capacity=20)
    for start in range(0, 200, 32):
        memory.offer({"id": torch.arange(start, min(start + 32, 200)).expand(300, -1)})
    counts = torch.bincount(memory.data["id"].flatten(), minlength=200).float()
    assert all(len(set(row)) == 20 for row in memory.data["id"].tolist())  # no sample twice
    # each of 200 samples is kept with probability 20/200: 30 of 300 members expected
    assert counts.mean().item() == pytest.approx(30.0)
    first, last = counts[:100].mean().item(), counts[100:].mean().item()
    assert abs(first - last) < 3.0 and counts.min() > 10 and counts.max() < 55


def test_reservoir_sample_draws_only_stored_rows():
    # part full (7 of 10 slots), then full: a draw sees each member's stored samples only
    seeds = [3, 8]
    memory = ReservoirMemory(MemberRandom(seeds, "memory", "cpu"), capacity=10)
    draws = MemberRandom(seeds, "memory", "cpu")  # replays the memory's own draws
    for first, last in ((1, 7), (8, 30)):
        ids = torch.arange(first, last + 1)
        memory.offer({"id": ids.expand(2, -1), "x": torch.ones(2, len(ids), 3)})
        draws.rand(len(ids))
        picked = memory.sample(5)
        expected = torch.topk(draws.bits(len(memory)), 5, dim=1).indices
        assert torch.equal(picked["id"], memory.data["id"].gather(1, expected))
        assert torch.equal(picked["x"], torch.ones(2, 5, 3))  # never an empty slot's zeros
        assert set(picked["id"].flatten().tolist()) <= set(range(1, last + 1))
