"""Parameter isolation: XdG's gates and separate networks (task-IL only)."""

import copy

import pytest
import torch
from helpers import cifar_setup, digits_setup

from cl_core.__main__ import main
from cl_core.config import RunConfig
from cl_core.errors import ClsweepError
from cl_core.methods.separate import SeparateNetworks, per_task_hidden, scaled_hidden
from cl_core.methods.xdg import XdG, draw_gates, silenced_count
from cl_core.models import ConvNet, ModelFactory
from cl_core.optim import make_optimizer
from cl_core.params import resolve
from cl_core.trainer import _learn_task

TASK_IL = dict(benchmark="split-digits", scenario="task", n_tasks=5)


def _method(cls, ctx, **params):
    return cls(resolve(cls.hyperparams, params, cls.name), ctx)


def _build(cls, hidden=(40, 30), seed=0, **params):
    cfg, ctx, _ = digits_setup(**TASK_IL, method=cls.name, hidden=hidden, train_seed=seed)
    method = _method(cls, ctx, **params)
    torch.manual_seed(cfg.train_seed)
    factory = ModelFactory(cfg, ctx.input_shape, ctx.scenario.out_units, ctx.device)
    return ctx, method, method.build_model(factory)


# ---- XdG ------------------------------------------------------------------------------------
def test_silenced_count_is_floor_with_float_tolerance():
    assert silenced_count(0.9, 400) == 360
    assert silenced_count(0.29, 100) == 29  # 0.29 * 100 = 28.999999999999996 in floats
    assert silenced_count(0.6, 1000) == 600
    assert silenced_count(0.0, 7) == 0 and silenced_count(1.0, 7) == 7
    assert silenced_count(0.5, 7) == 3


def test_xdg_gates_keep_the_proportion_per_layer_and_differ_per_task():
    ctx, xdg, model = _build(XdG, hidden=(40, 30), gating_prop=0.75)
    assert [tuple(g.shape) for g in xdg.gates] == [(5, 40), (5, 30)]
    for gate, width in zip(xdg.gates, (40, 30), strict=True):
        assert set(gate.unique().tolist()) == {0.0, 1.0}
        # exactly floor(0.75 * n) silenced, n - that kept, for every task
        assert (gate == 0).sum(1).tolist() == [int(0.75 * width)] * 5
        rows = {tuple(r.tolist()) for r in gate}
        assert len(rows) == 5  # every task has its own gate


def test_xdg_silences_gated_units_in_forward_and_per_sample_tasks_agree():
    ctx, xdg, model = _build(XdG, hidden=(40, 30), gating_prop=0.5)
    seen = {}
    for k, layer in enumerate(model.gated_layers()):  # runs after XdG's own hook
        layer.register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(k, o.detach()))
    batch = ctx.make_batch(ctx.seq.tasks[2].train_idx[:16], 2)
    logits = xdg.forward(model, batch.x, 2)
    first = torch.relu(model.trunk[0](batch.x))
    assert torch.equal(seen[0], first * xdg.gates[0][2])  # kept units unchanged, others 0
    for k in (0, 1):
        assert (seen[k][:, xdg.gates[k][2] == 0] == 0).all()
    assert not torch.equal(logits, model(batch.x))  # a plain forward is ungated
    # per-sample task ids give each sample its own task's gates
    tasks = torch.tensor([0, 3, 2, 2, 4, 1] * 2 + [0, 1, 2, 3])
    mixed = xdg.forward(model, batch.x, tasks)
    for i, t in enumerate(tasks.tolist()):
        alone = xdg.forward(model, batch.x[i : i + 1], t)
        torch.testing.assert_close(mixed[i : i + 1], alone, rtol=0, atol=1e-6)


def test_xdg_gates_deterministic_under_train_seed_and_batch_order_untouched():
    ctx_a, xdg_a, _ = _build(XdG, seed=3)
    ctx_b, xdg_b, _ = _build(XdG, seed=3)
    ctx_c, xdg_c, _ = _build(XdG, seed=4)
    for a, b, c in zip(xdg_a.gates, xdg_b.gates, xdg_c.gates, strict=True):
        assert torch.equal(a, b) and not torch.equal(a, c)
    _, fresh_ctx, _ = digits_setup(**TASK_IL, hidden=(40, 30), train_seed=3)
    draw = torch.randperm(100, generator=ctx_a.gen)
    assert torch.equal(draw, torch.randperm(100, generator=fresh_ctx.gen))


def test_draw_gates_by_hand_order_tasks_outer_layers_inner():
    gen = torch.Generator().manual_seed(11)
    gates = draw_gates([5, 4], 2, 0.4, gen)
    gen = torch.Generator().manual_seed(11)
    expected = [torch.ones(2, 5), torch.ones(2, 4)]
    for t in range(2):
        for g, w in zip(expected, (5, 4), strict=True):
            g[t, torch.randperm(w, generator=gen)[: int(0.4 * w)]] = 0.0
    assert all(torch.equal(a, b) for a, b in zip(gates, expected, strict=True))


def test_xdg_needs_hidden_layers():
    with pytest.raises(ClsweepError, match="hidden layers"):
        _build(XdG, hidden=())


def test_xdg_and_separate_refused_outside_task_il(capsys):
    for method in ("xdg", "separate"):
        with pytest.raises(ClsweepError, match="supports: task"):
            RunConfig(benchmark="split-digits", scenario="class", method=method).validated()
    assert main(["--benchmark", "split-digits", "--scenario", "class", "--method", "xdg"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'xdg'" in err[0] and "supports: task" in err[0]


# ---- separate networks -------------------------------------------------------------------------
def test_separate_width_rule_split_mnist_by_hand():
    """784-400-400 with 10 outputs: 784·400+400 + 400·400+400 + 400·10+10 = 478,410 parameters.
    Per task (2 outputs, width w): 784w+w + w²+w + 2w+2; w = 106 -> 94,766, x5 = 473,830 ≤
    478,410; w = 107 -> 95,767, x5 = 478,835 > 478,410."""
    cfg = RunConfig(benchmark="split-mnist", scenario="task", hidden=(400, 400)).validated()
    factory = ModelFactory(cfg, (1, 28, 28), 10, torch.device("cpu"))
    assert factory.n_params() == 478_410
    assert factory.n_params((106, 106), 2) == 94_766
    assert factory.n_params((107, 107), 2) == 95_767
    assert per_task_hidden(factory, 5, 2) == (106, 106)


def test_separate_width_rule_uneven_widths_and_rng_untouched():
    cfg = RunConfig(benchmark="split-mnist", scenario="task", hidden=(300, 100)).validated()
    factory = ModelFactory(cfg, (1, 28, 28), 10, torch.device("cpu"))
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
    ctx, sep, nets = _build(SeparateNetworks, hidden=(20,))
    assert len(nets) == 5 and all(net.head.out_features == 2 for net in nets)
    batch = ctx.make_batch(ctx.seq.tasks[1].train_idx[:8], 1)
    logits = sep.forward(nets, batch.x, 3)
    assert logits.shape == (8, 10)
    assert torch.equal(logits[:, 6:8], nets[3](batch.x))
    assert (logits[:, :6] == 0).all() and (logits[:, 8:] == 0).all()
    tasks = torch.tensor([4, 0, 3, 0, 1, 2, 4, 4])
    mixed = sep.forward(nets, batch.x, tasks)
    for i, t in enumerate(tasks.tolist()):
        torch.testing.assert_close(mixed[i], sep.forward(nets, batch.x[i : i + 1], t)[0])


@pytest.mark.parametrize("optimizer,model", [("adamw", "mlp"), ("sgd", "mlp"), ("adam", "conv")])
def test_separate_networks_leave_earlier_networks_bit_identical(optimizer, model, tmp_path):
    """Weight decay, momentum and Adam's state never touch a network outside its task (conv:
    pre-trained frozen conv layers, the CIFAR-100 protocol; their batch norm stays put too)."""
    settings = dict(
        method="separate",
        model=model,
        hidden=(16,),
        optimizer=optimizer,
        lr=0.05 if optimizer == "sgd" else 1e-2,
        weight_decay=0.1,
        batch_size=64,
    )
    if model == "conv":  # Split CIFAR-10 files written here, frozen "pre-trained" conv layers
        weights = tmp_path / "conv.pt"
        torch.save(ConvNet((3, 32, 32), (), 2).conv.state_dict(), weights)
        settings.update(conv_weights=str(weights), freeze_conv=True, batch_size=16)
        cfg, ctx, _ = cifar_setup(tmp_path, **settings)
    else:
        cfg, ctx, _ = digits_setup(**TASK_IL, **settings)
    sep = _method(SeparateNetworks, ctx)
    torch.manual_seed(0)
    nets = sep.build_model(ModelFactory(cfg, ctx.input_shape, ctx.scenario.out_units, ctx.device))
    opt = make_optimizer(cfg, nets.parameters())
    snapshots = []
    for task in range(3):
        ctx.seen_tasks = task + 1
        before = copy.deepcopy(nets.state_dict())
        sep.before_task(nets, task)
        _learn_task(ctx, nets, sep, opt, task)
        after = nets.state_dict()
        moved = {k.split(".")[0] for k in after if not torch.equal(after[k], before[k])}
        assert moved == {str(task)}  # only the current task's network changed
        snapshots.append(copy.deepcopy(nets[task].state_dict()))
    for task, snap in enumerate(snapshots):
        now = nets[task].state_dict()
        assert all(torch.equal(now[k], v) for k, v in snap.items())
