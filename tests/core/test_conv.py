"""The conv net: shapes, features/head, pre-trained frozen conv layers, batch norm modes."""

import copy

import pytest
import torch
from helpers import cifar_setup
from torch import nn

from cl_core.config import RunConfig
from cl_core.errors import ClsweepError
from cl_core.methods import METHODS
from cl_core.models import ConvNet, ModelFactory
from cl_core.models.conv import load_conv_weights
from cl_core.optim import make_optimizer
from cl_core.params import resolve
from cl_core.pretrain import augment, symmetric_pad
from cl_core.trainer import _learn_task


@pytest.mark.parametrize(
    "shape,conv_units", [((1, 28, 28), 256 * 2 * 2), ((3, 32, 32), 256 * 2 * 2), ((1, 16, 16), 256)]
)
def test_conv_net_shapes_features_and_head(shape, conv_units):
    torch.manual_seed(0)
    model = ConvNet(shape, (50, 30), 10)
    channels = [m.out_channels for m in model.conv if isinstance(m, nn.Conv2d)]
    strides = [m.stride[0] for m in model.conv if isinstance(m, nn.Conv2d)]
    assert channels == [16, 32, 64, 128, 256] and strides == [1, 2, 2, 2, 2]
    # batch norm + ReLU after conv 1..4, neither after conv 5 (the reference's no_fnl)
    kinds = [type(m).__name__ for m in model.conv]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU"] * 4 + ["Conv2d"]
    assert model.fc[0].in_features == conv_units
    x = torch.rand(4, shape[0] * shape[1] * shape[2])  # inputs arrive flattened
    features = model.features(x)
    assert features.shape == (4, 30) and model.feature_dim == 30
    assert torch.equal(model(x), model.head(features)) and model(x).shape == (4, 10)
    assert model.gated_layers() == [model.fc[1], model.fc[3]]  # the fc hidden layers only


def test_images_below_16x16_refused_in_one_line():
    with pytest.raises(ClsweepError, match="at least 16x16.*8x8"):
        ConvNet((1, 8, 8), (10,), 2)
    with pytest.raises(ClsweepError, match="split-digits's images are 8x8") as err:
        RunConfig(benchmark="split-digits", model="conv").validated()
    assert "\n" not in str(err.value)


def _weights(tmp_path, shape=(3, 32, 32), seed=1):
    """A conv state dict with non-default batch norm statistics, written like pretrain does."""
    torch.manual_seed(seed)
    net = ConvNet(shape, (), 2)
    with torch.no_grad():
        net.train()
        net(torch.rand(32, shape[0] * shape[1] * shape[2]) * 3)  # moves the running statistics
    path = tmp_path / f"conv-{shape[0]}.pt"
    torch.save(net.conv.state_dict(), path)
    return path, net.conv.state_dict()


def test_frozen_pretrained_conv_unchanged_by_training_and_bn_in_eval(tmp_path):
    path, saved = _weights(tmp_path)
    cfg, ctx, model = cifar_setup(
        tmp_path,
        hidden=(32,),
        conv_weights=str(path),
        freeze_conv=True,
        weight_decay=0.1,
        optimizer="adamw",
    )
    assert all(torch.equal(model.conv.state_dict()[k], v) for k, v in saved.items())
    assert not any(p.requires_grad for p in model.conv.parameters())
    method = METHODS["finetune"]({}, ctx)
    fc_before = copy.deepcopy(model.fc.state_dict())
    opt = make_optimizer(cfg, model.parameters())
    for task in range(2):
        ctx.seen_tasks = task + 1
        _learn_task(ctx, model, method, opt, task)
        assert model.training and not model.conv.training
        assert not any(m.training for m in model.conv.modules())
    now = model.conv.state_dict()
    assert all(torch.equal(now[k], v) for k, v in saved.items())  # weights and BN statistics
    assert not all(torch.equal(model.fc.state_dict()[k], v) for k, v in fc_before.items())


def test_trainable_conv_bn_switches_between_train_and_eval(tmp_path):
    path, saved = _weights(tmp_path)
    _, ctx, model = cifar_setup(tmp_path, hidden=(8,), conv_weights=str(path))
    assert all(torch.equal(model.conv.state_dict()[k], v) for k, v in saved.items())
    bn = model.conv[1]
    x = ctx.make_batch(ctx.seq.tasks[0].train_idx[:16], 0).x
    model.eval()
    stats = bn.running_mean.clone()
    eval_out = model(x)
    assert torch.equal(bn.running_mean, stats)  # eval: stored statistics, no update
    assert torch.equal(model(x), eval_out)
    model.train()
    train_out = model(x)  # train: batch statistics, running statistics move
    assert not torch.equal(bn.running_mean, stats) and not torch.allclose(train_out, eval_out)


@pytest.mark.parametrize("method", [m for m, cls in METHODS.items() if "task" in cls.scenarios])
def test_every_task_il_method_keeps_frozen_conv_layers(method, tmp_path):
    """Each method trains through the conv net with frozen pre-trained layers (no method's
    hook, penalty or Fisher touches them)."""
    path, saved = _weights(tmp_path)
    cfg, ctx, _ = cifar_setup(
        tmp_path, hidden=(64,), conv_weights=str(path), freeze_conv=True, method=method
    )
    cls = METHODS[method]
    m = cls(resolve(cls.hyperparams, {}, method), ctx)
    torch.manual_seed(0)
    model = m.build_model(ModelFactory(cfg, ctx.input_shape, ctx.scenario.out_units, ctx.device))
    opt = make_optimizer(cfg, model.parameters())
    for task in range(2):
        ctx.seen_tasks = task + 1
        m.before_task(model, task)
        loss = _learn_task(ctx, model, m, opt, task)
        m.after_task(model, task)
        assert loss == loss  # finite, not NaN
    # the conv nets wherever the method keeps them (one per task, inside a replay model, ...)
    convs = [net.conv for net in model.modules() if isinstance(net, ConvNet)]
    assert convs
    for conv in convs:
        assert all(torch.equal(conv.state_dict()[k], v) for k, v in saved.items())


def test_conv_weights_errors_are_one_line(tmp_path):
    model = ConvNet((1, 28, 28), (4,), 2)
    with pytest.raises(ClsweepError, match="not found") as err:
        load_conv_weights(model, tmp_path / "nope.pt")
    assert "\n" not in str(err.value) and "cl_core.pretrain" in str(err.value)
    rgb, _ = _weights(tmp_path)
    with pytest.raises(ClsweepError, match="does not fit") as err:
        load_conv_weights(model, rgb)  # 3-channel filters into a 1-channel net
    assert "\n" not in str(err.value) and "0.weight is (16, 3, 3, 3), expected (16, 1, 3, 3)" in (
        str(err.value)
    )
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ClsweepError, match="not a torch state dict"):
        load_conv_weights(model, junk)
    torch.save({"conv": 1}, junk)
    with pytest.raises(ClsweepError, match="missing 0.weight.*unexpected conv|31 problems"):
        load_conv_weights(model, junk)


def test_conv_settings_validated_before_anything_loads(tmp_path):
    path, _ = _weights(tmp_path)
    with pytest.raises(ClsweepError, match="apply to model 'conv'"):
        RunConfig(conv_weights=str(path)).validated()
    conv = dict(benchmark="split-cifar10", model="conv")
    with pytest.raises(ClsweepError, match="set conv_weights"):
        RunConfig(**conv, freeze_conv=True).validated()
    with pytest.raises(ClsweepError, match="not found"):
        RunConfig(**conv, conv_weights=str(tmp_path / "missing.pt")).validated()
    cfg = RunConfig(**conv, conv_weights=str(path), freeze_conv=True).validated()
    assert cfg.conv_weights == str(path.resolve())


def test_cli_conv_flags_reach_the_config(tmp_path):
    from cl_core.__main__ import build_parser, config_from_args

    path, _ = _weights(tmp_path)
    args = build_parser().parse_args(
        ["--benchmark", "split-cifar10", "--model", "conv", "--hidden", "64"]
        + ["--conv-weights", str(path), "--freeze-conv", "true"]
    )
    cfg = config_from_args(args)
    assert (cfg.model, cfg.hidden, cfg.freeze_conv) == ("conv", (64,), True)
    assert cfg.conv_weights == str(path.resolve())


def test_symmetric_pad_matches_numpy_and_augment_crops_or_flips():
    import numpy as np

    images = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).reshape(2, 3, 5, 6)
    expected = np.pad(images.numpy(), ((0, 0), (0, 0), (2, 2), (2, 2)), mode="symmetric")
    assert np.array_equal(symmetric_pad(images, 2).numpy(), expected)
    gen = torch.Generator().manual_seed(0)
    out = augment(images, gen, pad=2)
    padded = symmetric_pad(images, 2)
    for n in range(2):
        views = [
            v
            for dy in range(5)
            for dx in range(5)
            for v in (padded[n, :, dy : dy + 5, dx : dx + 6],)
            for v in (v, v.flip(2))
        ]
        assert any(torch.equal(out[n], v) for v in views)
