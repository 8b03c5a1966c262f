"""Parameter isolation: XdG's gates and separate networks (task-IL only), per member."""

import pytest
import torch
from helpers import cifar_config, make_method, member_mlp, population_setup

from cl_core.__main__ import main
from cl_core.config import RunConfig
from cl_core.errors import ClsweepError
from cl_core.methods.separate import SeparateNetworks, per_task_hidden, scaled_hidden
from cl_core.methods.xdg import XdG, draw_gates, silenced_count
from cl_core.models import ConvNet, ModelFactory
from cl_core.random import MemberRandom
from cl_core.trainer import Run
from cl_core.validation import validated

TASK_IL = dict(benchmark="split-digits", scenario="task", n_tasks=5)


def _build(cls, hidden=(40, 30), seeds=(0,), params=({},)):
    """Context, method and model of a population with ``seeds``; ``params`` per member (or one
    dict for all)."""
    members = [{"train_seed": s} for s in seeds]
    cfgs, ctx, _ = population_setup(members, **TASK_IL, method=cls.name, hidden=hidden)
    method = make_method(cls, ctx, *params)
    factory = ModelFactory(cfgs, ctx.input_shape, ctx.scenario.out_units, ctx.device)
    return ctx, method, method.build_model(factory)


# ---- XdG ------------------------------------------------------------------------------------
def test_silenced_count_is_floor_with_float_tolerance():
    assert silenced_count(0.9, 400) == 360
    assert silenced_count(0.29, 100) == 29  # 0.29 * 100 = 28.999999999999996 in floats
    assert silenced_count(0.6, 1000) == 600
    assert silenced_count(0.0, 7) == 0 and silenced_count(1.0, 7) == 7
    assert silenced_count(0.5, 7) == 3


PROPS = [0.75, 0.5, 0.25]


def test_xdg_gates_keep_the_proportion_per_layer_and_differ_per_task():
    params = [{"gating_prop": p} for p in PROPS]
    ctx, xdg, model = _build(XdG, hidden=(40, 30), seeds=(0, 1, 2), params=params)
    assert [tuple(g.shape) for g in xdg.gates] == [(3, 5, 40), (3, 5, 30)]
    for gate, width in zip(xdg.gates, (40, 30), strict=True):
        assert set(gate.unique().tolist()) == {0.0, 1.0}
        for m, prop in enumerate(PROPS):
            # exactly floor(prop * n) silenced, n - that kept, for every task
            assert (gate[m] == 0).sum(1).tolist() == [int(prop * width)] * 5
            rows = {tuple(r.tolist()) for r in gate[m]}
            assert len(rows) == 5  # every task has its own gate


def _gated_by_hand(mlp, x, gates):
    """A plain MLP's logits with each hidden layer's output multiplied by its gate."""
    h = x
    for k, gate in enumerate(gates):
        h = torch.relu(mlp.trunk[2 * k](h)) * gate
    return mlp.head(h), h


def test_xdg_silences_gated_units_in_forward_and_per_sample_tasks_agree():
    params = [{"gating_prop": 0.5}, {"gating_prop": 0.25}]
    ctx, xdg, model = _build(XdG, hidden=(40, 30), seeds=(0, 1), params=params)
    rows = ctx.seq.tasks[2].train_idx[:16]
    batch = ctx.make_batch(torch.stack([rows, rows.flip(0)]), 2)
    logits = xdg.forward(model, batch.x, 2)
    for m in range(2):
        by_hand, last = _gated_by_hand(
            member_mlp(model, m), batch.x[m], [g[m, 2] for g in xdg.gates]
        )
        torch.testing.assert_close(logits[m], by_hand, rtol=1e-5, atol=1e-6)
        assert (last[:, xdg.gates[1][m, 2] == 0] == 0).all()  # silenced units are silent
    assert not torch.allclose(logits, model(batch.x))  # a plain forward is ungated
    # per-sample task ids give each sample its own task's gates
    tasks = torch.tensor([[0, 3, 2, 2, 4, 1] * 2 + [0, 1, 2, 3], [4, 4, 1, 0, 2, 3] * 2 + [1] * 4])
    mixed = xdg.forward(model, batch.x, tasks)
    each = {t: xdg.forward(model, batch.x, t) for t in range(5)}
    for m in range(2):
        for i, t in enumerate(tasks[m].tolist()):
            torch.testing.assert_close(mixed[m, i], each[t][m, i], rtol=0, atol=1e-6)


def test_xdg_gates_deterministic_under_train_seed_and_batch_order_untouched():
    ctx_a, xdg_a, _ = _build(XdG, seeds=(3,))
    _, xdg_b, _ = _build(XdG, seeds=(3,))
    _, xdg_c, _ = _build(XdG, seeds=(4,))
    _, xdg_pop, _ = _build(XdG, seeds=(4, 3), params=[{"gating_prop": 0.5}, {}])
    for a, b, c, pop in zip(xdg_a.gates, xdg_b.gates, xdg_c.gates, xdg_pop.gates, strict=True):
        assert torch.equal(a, b) and not torch.equal(a, c)
        assert torch.equal(pop[1], a[0])  # member 1 of a population draws what seed 3 alone does
    _, fresh_ctx, _ = population_setup([{"train_seed": 3}], **TASK_IL, hidden=(40, 30))
    draw = ctx_a.batch_random.permutation(100)
    assert torch.equal(draw, fresh_ctx.batch_random.permutation(100))


def test_draw_gates_by_hand_order_tasks_outer_layers_inner():
    props = [0.4, 0.6]
    gates = draw_gates([5, 4], 2, props, MemberRandom([11, 12], "xdg", "cpu"))
    replay = MemberRandom([11, 12], "xdg", "cpu")
    expected = [torch.ones(2, 2, 5), torch.ones(2, 2, 4)]
    for t in range(2):
        for g, w in zip(expected, (5, 4), strict=True):
            order = replay.permutation(w)  # each member's random order of the units
            for m, prop in enumerate(props):
                g[m, t, order[m, : int(prop * w)]] = 0.0  # the first ⌊prop · w⌋ are silenced
    assert all(torch.equal(a, b) for a, b in zip(gates, expected, strict=True))


def test_xdg_needs_hidden_layers():
    with pytest.raises(ClsweepError, match="hidden layers"):
        _build(XdG, hidden=())


def test_xdg_and_separate_refused_outside_task_il(capsys):
    for method in ("xdg", "separate"):
        with pytest.raises(ClsweepError, match="supports: task"):
            validated(RunConfig(benchmark="split-digits", scenario="class", method=method))
    assert main(["--benchmark", "split-digits", "--scenario", "class", "--method", "xdg"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'xdg'" in err[0] and "supports: task" in err[0]


# ---- separate networks -------------------------------------------------------------------------
def test_separate_width_rule_split_mnist_by_hand():
    """784-400-400 with 10 outputs: 784·400+400 + 400·400+400 + 400·10+10 = 478,410 parameters.
    Per task (2 outputs, width w): 784w+w + w²+w + 2w+2; w = 106 -> 94,766, x5 = 473,830 ≤
    478,410; w = 107 -> 95,767, x5 = 478,835 > 478,410."""
    cfg = validated(RunConfig(benchmark="split-mnist", scenario="task", hidden=(400, 400)))
    factory = ModelFactory([cfg], (1, 28, 28), 10, torch.device("cpu"))
    assert factory.n_params() == 478_410
    assert factory.n_params((106, 106), 2) == 94_766
    assert factory.n_params((107, 107), 2) == 95_767
    assert per_task_hidden(factory, 5, 2) == (106, 106)


def test_separate_width_rule_uneven_widths_and_rng_untouched():
    cfg = validated(RunConfig(benchmark="split-mnist", scenario="task", hidden=(300, 100)))
    factory = ModelFactory([cfg], (1, 28, 28), 10, torch.device("cpu"))
    torch.manual_seed(5)
    hidden = per_task_hidden(factory, 5, 2)
    after = torch.rand(3)
    torch.manual_seed(5)
    assert torch.equal(after, torch.rand(3))  # counting never consumes the init's random stream
    k = hidden[0]
    assert hidden == scaled_hidden((300, 100), k) == (k, k // 3)
    budget = factory.n_params()
    assert 5 * factory.n_params(hidden, 2) <= budget
    assert 5 * factory.n_params(scaled_hidden((300, 100), k + 1), 2) > budget


def test_separate_routes_samples_to_their_task_network():
    ctx, sep, nets = _build(SeparateNetworks, hidden=(20,), seeds=(0, 1))
    assert len(nets.networks) == 5
    assert all(net.store.shapes["head.weight"][0] == 2 for net in nets.networks)
    rows = ctx.seq.tasks[1].train_idx[:8]
    batch = ctx.make_batch(torch.stack([rows, rows.flip(0)]), 1)
    logits = sep.forward(nets, batch.x, 3)
    assert logits.shape == (2, 8, 10)
    assert torch.equal(logits[..., 6:8], nets.networks[3](batch.x))
    assert (logits[..., :6] == 0).all() and (logits[..., 8:] == 0).all()
    tasks = torch.tensor([[4, 0, 3, 0, 1, 2, 4, 4], [1, 1, 2, 0, 3, 3, 4, 0]])
    mixed = sep.forward(nets, batch.x, tasks)
    each = {t: sep.forward(nets, batch.x, t) for t in range(5)}
    for m in range(2):
        for i, t in enumerate(tasks[m].tolist()):
            torch.testing.assert_close(mixed[m, i], each[t][m, i])
    with pytest.raises(TypeError, match="routed"):
        nets(batch.x)


def _networks(model):
    """Every task network's parameters and buffers (cloned), and the frozen conv layers'."""
    state = []
    for net in model.networks:
        tensors = [net.theta] + [b for b in net.buffers()]
        if getattr(net, "trunk", None) is not None:
            tensors += list(net.trunk.state_dict().values())
        state.append([t.detach().clone() for t in tensors])
    return state


@pytest.mark.parametrize("optimizer,model", [("adamw", "mlp"), ("sgd", "mlp"), ("adam", "conv")])
def test_separate_networks_leave_earlier_networks_bit_identical(optimizer, model, tmp_path):
    """Weight decay, momentum and Adam's state never touch a network outside its task (conv:
    pre-trained frozen conv layers, the CIFAR-100 protocol; their batch norm stays put too),
    for every member of a population."""
    settings = dict(
        method="separate",
        model=model,
        hidden=(16,),
        optimizer=optimizer,
        lr=0.05 if optimizer == "sgd" else 1e-2,
        weight_decay=0.1,
        batch_size=64,
        device="cpu",
    )
    members = [{"train_seed": 0}, {"train_seed": 1, "lr": settings["lr"] / 2}]
    if model == "conv":  # Split CIFAR-10 files written here, frozen "pre-trained" conv layers
        weights = tmp_path / "conv.pt"
        torch.save(ConvNet((3, 32, 32), (), 2).conv.state_dict(), weights)
        settings.update(conv_weights=str(weights), freeze_conv=True, batch_size=16)
        cfgs = [cifar_config(tmp_path, **{**settings, **m}) for m in members]
    else:
        cfgs = [validated(RunConfig(**TASK_IL, **{**settings, **m})) for m in members]
    run = Run(cfgs)
    rounds = iter(run)
    next(rounds)  # the untrained model
    for task in range(3):
        before = _networks(run.model)
        assert all(r.status == "ok" for r in next(rounds).values())
        after = _networks(run.model)
        moved = [
            k
            for k, (a, b) in enumerate(zip(before, after, strict=True))
            if not all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
        ]
        assert moved == [task]  # only the current task's network changed
        # in every member: each member's row of that network moved
        assert (after[task][0] != before[task][0]).any(1).all()
