"""Exemplar memory: class balance, budgets, herding by hand, reservoir sampling, determinism."""

import pytest
import torch
from helpers import digits_setup

from cl_core.methods.memory import (
    ClassBalancedMemory,
    ReservoirMemory,
    as_batch,
    batch_fields,
    herding_order,
)


def _task_fields(ctx, task):
    return batch_fields(ctx.make_batch(ctx.seq.tasks[task].train_idx, task))


def test_class_balanced_per_class_budget_and_balance():
    _, ctx, _ = digits_setup(benchmark="split-digits", scenario="class", n_tasks=5)
    memory = ClassBalancedMemory(ctx.new_generator("memory"), budget=7, per="class")
    for task in range(3):
        memory.add_classes(_task_fields(ctx, task))
    counts = torch.bincount(memory.data["label"]).tolist()
    assert counts == [7] * 6 and len(memory) == 42
    # each exemplar is a real training sample of its class, stored with its task
    assert torch.equal(memory.data["task"], memory.data["label"] // 2)
    assert memory.data["x"].shape == (42, 64)


def test_total_budget_shrinks_old_classes_keeping_their_first_exemplars():
    _, ctx, _ = digits_setup(benchmark="split-digits", scenario="class", n_tasks=5)
    memory = ClassBalancedMemory(ctx.new_generator("memory"), budget=20, per="total")
    memory.add_classes(_task_fields(ctx, 0))
    first = {c: memory.classes[c]["x"].clone() for c in (0, 1)}
    assert [len(memory.classes[c]["x"]) for c in (0, 1)] == [10, 10]
    memory.add_classes(_task_fields(ctx, 1))
    assert len(memory) == 20 and torch.bincount(memory.data["label"]).tolist() == [5] * 4
    for c in (0, 1):
        assert torch.equal(memory.classes[c]["x"], first[c][:5])


def test_memory_is_deterministic_under_the_training_seed():
    def fill(seed):
        _, ctx, _ = digits_setup(
            benchmark="split-digits", scenario="class", n_tasks=5, train_seed=seed
        )
        memory = ClassBalancedMemory(ctx.new_generator("memory"), budget=5, per="class")
        memory.add_classes(_task_fields(ctx, 0))
        return memory.data["x"], memory.sample(4)["x"]

    a, b, c = fill(0), fill(0), fill(1)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_sample_without_replacement_and_as_batch():
    _, ctx, _ = digits_setup(benchmark="split-digits", scenario="task", n_tasks=5)
    memory = ClassBalancedMemory(ctx.new_generator("memory"), budget=3, per="class")
    memory.add_classes(_task_fields(ctx, 0))
    drawn = memory.sample(100)  # more than stored: all 6, each once
    assert len(drawn["x"]) == 6
    assert sorted(drawn["x"].sum(1).tolist()) == sorted(memory.data["x"].sum(1).tolist())
    batch = as_batch(memory.sample(4))
    assert len(batch) == 4 and batch.task.dtype == torch.long and batch.target.max() < 2


def test_herding_picks_the_hand_computed_order():
    # unit vectors a, b, c, d (scaled, since herding normalises): mean mu = (0.52, 0.64)
    # k=1: |mu - phi| = 0.8, 0.632, 0.4, 0.283 -> d; k=2: |mu - (d+phi)/2| -> c (0.141);
    # k=3: a (0.211) before b (0.267); then b.
    features = torch.tensor([[2.0, 0.0], [0.0, 3.0], [0.28, 0.96], [4.0, 3.0]])
    assert herding_order(features, 4).tolist() == [3, 2, 0, 1]
    assert herding_order(features, 2).tolist() == [3, 2]


def test_herding_selection_in_memory_uses_features():
    _, ctx, model = digits_setup(benchmark="split-digits", scenario="class", n_tasks=5)
    memory = ClassBalancedMemory(ctx.new_generator("m"), budget=4, per="class", selection="herding")
    fields = _task_fields(ctx, 0)
    with torch.no_grad():
        features = model.features(fields["x"])
    memory.add_classes(fields, features)
    rows = (fields["label"] == 0).nonzero().flatten()
    expected = fields["x"][rows[herding_order(features[rows], 4)]]
    assert torch.equal(memory.classes[0]["x"], expected)


def _reservoir_loop(capacity, n_total, draws):
    """Algorithm R one sample at a time, with the same uniform draws."""
    slots = [None] * capacity
    for i in range(n_total):
        if i < capacity:
            slots[i] = i
        else:
            r = int(draws[i] * (i + 1))
            if r < capacity:
                slots[r] = i
    return slots


def test_reservoir_equals_the_sequential_algorithm():
    gen = torch.Generator().manual_seed(3)
    memory = ReservoirMemory(gen, capacity=10)
    ids = torch.arange(95)
    for start in range(0, 95, 16):  # batches of 16 (the last one shorter)
        memory.offer({"id": ids[start : start + 16]})
    replay = torch.Generator().manual_seed(3)
    draws = torch.cat(
        [torch.rand(len(ids[s : s + 16]), generator=replay) for s in range(0, 95, 16)]
    )
    assert memory.data["id"].tolist() == _reservoir_loop(10, 95, draws.tolist())
    assert len(memory) == 10 and memory.seen == 95


def test_reservoir_keeps_every_sample_with_equal_probability():
    counts = torch.zeros(200)
    for seed in range(300):
        memory = ReservoirMemory(torch.Generator().manual_seed(seed), capacity=20)
        for start in range(0, 200, 32):
            memory.offer({"id": torch.arange(start, min(start + 32, 200))})
        counts[memory.data["id"]] += 1
    # each of 200 samples is kept with probability 20/200: 30 of 300 runs expected
    assert counts.mean().item() == pytest.approx(30.0)
    first, last = counts[:100].mean().item(), counts[100:].mean().item()
    assert abs(first - last) < 3.0 and counts.min() > 10 and counts.max() < 55
