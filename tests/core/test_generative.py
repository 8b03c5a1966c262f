"""VAE, generative replay (DGR, BI-R) and the generative classifier: values computed by hand."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import cifar_setup, digits_setup
from torch import nn

from cl_core.config import RunConfig
from cl_core.errors import ClsweepError
from cl_core.methods.bir import BIR
from cl_core.methods.dgr import DGR
from cl_core.methods.gen_classifier import ClassVAEs, GenerativeClassifier
from cl_core.models import ModelFactory
from cl_core.models.vae import VAE, GatedDecoder, GaussianMixturePrior, kl_standard_normal
from cl_core.params import resolve
from cl_core.trainer import RunResult, train

SPLIT = dict(benchmark="split-digits", scenario="class", n_tasks=5, hidden=(32, 32))


def _set(linear: nn.Linear, weight, bias) -> None:
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(weight, dtype=torch.float32))
        linear.bias.copy_(torch.tensor(bias, dtype=torch.float32))


def _toy_vae(prior=None, observation="bernoulli", output="sigmoid") -> VAE:
    """2 inputs, 1 latent unit, encoder = identity, decoder = one linear layer."""
    vae = VAE(nn.Identity(), 2, 1, GatedDecoder(1, (), 2, output), observation, prior)
    _set(vae.to_z, [[0.5, -1.0], [0.2, 0.3]], [0.1, -0.4])  # rows: mean, log-variance
    _set(vae.decoder.out, [[1.5], [-0.7]], [0.2, 0.1])
    return vae


def _log_normal(z, mean, var):
    return -0.5 * (math.log(2 * math.pi * var) + (z - mean) ** 2 / var)


def test_vae_loss_equals_the_elbo_by_hand():
    vae = _toy_vae()
    x = torch.tensor([[0.2, 0.9]])
    eps = torch.randn(1, 1, generator=torch.Generator().manual_seed(3)).item()
    mean = 0.5 * 0.2 - 1.0 * 0.9 + 0.1
    logvar = 0.2 * 0.2 + 0.3 * 0.9 - 0.4
    z = mean + eps * math.exp(logvar / 2)
    means = [1 / (1 + math.exp(-(1.5 * z + 0.2))), 1 / (1 + math.exp(-(-0.7 * z + 0.1)))]
    log_px = sum(
        xi * math.log(m) + (1 - xi) * math.log(1 - m)
        for xi, m in zip([0.2, 0.9], means, strict=True)
    )
    kl = -0.5 * (1 + logvar - mean**2 - math.exp(logvar))
    elbo = log_px - kl
    loss = vae.loss(x, torch.Generator().manual_seed(3))
    assert loss.item() == pytest.approx(-elbo / 2, rel=1e-5)  # −ELBO / D, D = 2 inputs


def test_vae_with_mixture_prior_uses_the_one_sample_kl_by_hand():
    prior = GaussianMixturePrior(2, 1)
    with torch.no_grad():
        prior.means.copy_(torch.tensor([[-1.0], [2.0]]))
        prior.logvars.copy_(torch.tensor([[0.0], [math.log(0.5)]]))
    vae = _toy_vae(prior)
    x = torch.tensor([[0.2, 0.9]])
    eps = torch.randn(1, 1, generator=torch.Generator().manual_seed(5)).item()
    mean, logvar = 0.5 * 0.2 - 0.9 + 0.1, 0.04 + 0.27 - 0.4
    z = mean + eps * math.exp(logvar / 2)
    log_q = _log_normal(z, mean, math.exp(logvar))
    weights = [0.3, 0.7]  # soft class labels select a mixture of the modes
    log_p = math.log(
        0.3 * math.exp(_log_normal(z, -1.0, 1.0)) + 0.7 * math.exp(_log_normal(z, 2.0, 0.5))
    )
    _, kl = vae.negative_elbo(
        x, torch.Generator().manual_seed(5), prior_weights=torch.tensor([weights])
    )
    assert kl.item() == pytest.approx(log_q - log_p, rel=1e-5)
    # no weights: the modes are equally likely
    uniform = math.log(
        0.5 * math.exp(_log_normal(z, -1, 1)) + 0.5 * math.exp(_log_normal(z, 2, 0.5))
    )
    _, kl = vae.negative_elbo(x, torch.Generator().manual_seed(5))
    assert kl.item() == pytest.approx(log_q - uniform, rel=1e-5)


def test_analytic_kl_matches_its_monte_carlo_estimate():
    mean, logvar = torch.tensor([[0.7, -0.3]]), torch.tensor([[-0.5, 0.4]])
    eps = torch.randn(200_000, 2, generator=torch.Generator().manual_seed(0))
    z = mean + eps * (0.5 * logvar).exp()
    log_q = -0.5 * (math.log(2 * math.pi) + logvar + eps**2).sum(1)
    log_p = -0.5 * (math.log(2 * math.pi) + z**2).sum(1)
    assert kl_standard_normal(mean, logvar).item() == pytest.approx(
        (log_q - log_p).mean().item(), abs=0.01
    )


def _linear_gaussian_vae(w: float, b: tuple[float, float]) -> tuple[VAE, torch.Tensor]:
    """x = (w, w)·z + b + N(0, I), z ~ N(0, 1), with the exact posterior as q(z|x): every
    importance weight then equals p(x), so the estimate is exact for any S."""
    vae = VAE(nn.Identity(), 2, 1, GatedDecoder(1, (), 2, "linear"), "gaussian")
    _set(vae.decoder.out, [[w], [w]], list(b))
    post_var = 1 / (1 + 2 * w * w)  # (1 + WᵀW)⁻¹
    _set(
        vae.to_z,
        [[post_var * w, post_var * w], [0.0, 0.0]],
        [-post_var * w * sum(b), math.log(post_var)],
    )
    cov = torch.tensor([[w * w + 1, w * w], [w * w, w * w + 1]])  # WWᵀ + I
    return vae, cov


def test_importance_sampled_likelihood_is_exact_with_the_true_posterior():
    vae, cov = _linear_gaussian_vae(1.3, (0.5, -0.2))
    x = torch.tensor([[1.0, 2.0], [-0.5, 0.3]])
    exact = torch.distributions.MultivariateNormal(torch.tensor([0.5, -0.2]), cov).log_prob(x)
    estimate = vae.log_likelihood(x, 3, torch.Generator().manual_seed(0))
    assert torch.allclose(estimate, exact, atol=1e-5)


def test_generative_classifier_classifies_by_likelihood_by_hand():
    """Two classes, each a linear-Gaussian VAE: the predicted class is the one with the larger
    log N(x; b_c, WWᵀ + I), computed by hand; untrained classes score −inf."""
    _, ctx, _ = digits_setup(benchmark="split-digits", scenario="class", n_tasks=5)
    params = resolve(GenerativeClassifier.hyperparams, {"samples": 4}, "gen_classifier")
    method = GenerativeClassifier(params, ctx)
    vaes = [_linear_gaussian_vae(1.0, (0.0, 0.0))[0], _linear_gaussian_vae(0.5, (2.0, 2.0))[0]]
    model = ClassVAEs(vaes + [copy.deepcopy(vaes[0]) for _ in range(8)])
    method.trained[:2] = True
    x = torch.tensor([[0.1, -0.2], [2.2, 1.7], [1.0, 1.0], [-3.0, 4.0]])
    scores = method.predict(model, x, 0)
    by_hand = []
    for w, b in ((1.0, 0.0), (0.5, 2.0)):
        cov = np.array([[w * w + 1, w * w], [w * w, w * w + 1]])
        d = x.numpy() - b
        quad = np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d)
        by_hand.append(-0.5 * (quad + np.log(np.linalg.det(cov)) + 2 * np.log(2 * np.pi)))
    by_hand = np.stack(by_hand, 1)
    assert np.allclose(scores[:, :2].numpy(), by_hand, atol=1e-4)
    assert torch.isinf(scores[:, 2:]).all()
    assert scores.argmax(1).tolist() == by_hand.argmax(1).tolist() == [0, 1, 1, 0]


def test_generative_classifier_learns_split_digits_without_forgetting():
    cfg = RunConfig(
        **{**SPLIT, "hidden": (8,)},
        method="gen_classifier",
        method_params={"units": 32, "z_dim": 4, "samples": 5},
        iterations=100,
        epochs=None,
        batch_size=32,
    )
    acc = RunResult.from_reports(cfg, list(train(cfg))).acc_test
    assert acc[-1].mean() > 0.6  # a discriminative finetune gets ~0.2 here
    assert acc[1, 1:].sum() == 0  # tasks not seen yet are never predicted


def _replay_setup(method_cls, params=None, **cfg):
    cfg, ctx, _ = digits_setup(**{**SPLIT, **cfg}, method=method_cls.name)
    method = method_cls(resolve(method_cls.hyperparams, params or {}, method_cls.name), ctx)
    torch.manual_seed(0)
    model = method.build_model(
        ModelFactory(cfg, ctx.input_shape, ctx.scenario.out_units, ctx.device)
    )
    return ctx, method, model


def test_generated_replay_is_deterministic_under_train_seed():
    def run(seed):
        cfg = RunConfig(
            **SPLIT, method="bir", iterations=20, epochs=None, batch_size=16, train_seed=seed
        )
        result = RunResult.from_reports(cfg, list(train(cfg)))
        return result.acc_test, result.train_loss

    a, b, c = run(0), run(0), run(1)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    assert a[1] != c[1]
    # the samples themselves: two methods built alike draw the same replay, and replay draws
    # never touch the trainer's batch-order generator
    samples = []
    for _ in range(2):
        ctx, method, model = _replay_setup(DGR)
        method.after_task(model, 0)
        state = ctx.gen.get_state()
        samples.append(method.sample(8))
        assert torch.equal(ctx.gen.get_state(), state)
    assert torch.equal(samples[0], samples[1])
    assert not torch.equal(method.sample(8), samples[1])  # the generator moves on


def test_replay_loss_weights_current_by_one_over_tasks_seen():
    ctx, method, model = _replay_setup(DGR)
    method.after_task(model, 0)
    method.after_task(model, 1)
    batch = next(ctx.batches([2], 16))
    noise, replay = method.noise.get_state(), method.replay_gen.get_state()
    current = method.current_loss(model, batch)
    replayed = method.replay_loss(model, 16, 2)
    method.noise.set_state(noise)
    method.replay_gen.set_state(replay)
    total = method.loss(model, batch, 2)
    assert total.item() == pytest.approx((current / 3 + 2 * replayed / 3).item(), rel=1e-5)


def test_dgr_labels_replay_with_the_previous_models_predictions():
    ctx, method, model = _replay_setup(DGR, {"distill": True, "temperature": 3.0})
    method.after_task(model, 0)
    x = method.sample(6)
    with torch.no_grad():
        old = method.previous(x)
        model.head.weight.add_(0.1)  # the current model differs from the snapshot
    new = model(x)
    soft = F.softmax(old / 3, 1)
    by_hand = -(soft * F.log_softmax(new / 3, 1)).sum(1).mean()
    assert method.replay_targets_loss(new, old, 0, 1).item() == pytest.approx(by_hand.item())
    method.params["distill"] = False
    hard = F.cross_entropy(new, old.argmax(1))
    assert method.replay_targets_loss(new, old, 0, 1).item() == pytest.approx(hard.item())


def test_bir_components_switch_the_model():
    ctx, method, model = _replay_setup(BIR, {"gate_prop": 0.25})
    # replay through feedback: the VAE's encoder is the classifier's hidden layers
    assert model.vae.encoder is model.upper
    shared = {id(p) for p in model.upper.parameters()}
    assert shared <= {id(p) for p in model.vae.parameters()}
    # conditional replay: one prior mode per class; gating: a quarter of the units off per class
    assert model.vae.prior.means.shape == (10, 100)
    masks = [model.vae.decoder.mask0, model.vae.decoder.mask1]
    assert all(m.shape == (10, 32) for m in masks)
    assert abs(1 - torch.cat(masks).mean().item() - 0.25) < 0.1
    # replay is drawn per class, from the classes seen so far, with those classes' gates
    method.after_task(model, 0)
    x, classes, tasks = method.generate(64)
    assert set(classes.tolist()) == {0, 1} and torch.equal(tasks, classes // 2)
    _, dgr, dgr_model = _replay_setup(DGR)
    assert dgr_model.vae.prior is None and not dgr_model.vae.decoder.gated
    assert not (
        {id(p) for p in dgr_model.upper.parameters()} & {id(p) for p in dgr_model.vae.parameters()}
    )


def test_bir_internal_replay_freezes_the_first_layer_and_replays_its_units():
    cfg = RunConfig(
        **SPLIT,
        method="bir",
        method_params={"internal": True},
        iterations=15,
        epochs=None,
        batch_size=16,
    )
    ctx, method, model = _replay_setup(BIR, {"internal": True})
    method.after_task(model, 0)
    assert all(not p.requires_grad for p in model.lower.parameters())
    assert method.sample(5).shape == (5, 32)  # the first hidden layer's units, not 64 pixels
    acc = RunResult.from_reports(cfg, list(train(cfg))).acc_test
    assert acc.shape == (6, 5)


def test_normalised_inputs_are_modelled_as_gaussian_and_bernoulli_scoring_is_refused(tmp_path):
    """CIFAR inputs are normalised per channel (not in [0, 1]): replayed pixels and the
    generative classifier's VAEs use a linear output with a Gaussian observation (the
    three-scenario code's squared error for CIFAR); MNIST pixels keep sigmoid and Bernoulli."""
    cfg, ctx, _ = cifar_setup(tmp_path, model="mlp", method="dgr")
    factory = ModelFactory(cfg, ctx.input_shape, ctx.scenario.out_units, ctx.device)
    dgr = DGR(resolve(DGR.hyperparams, {}, "dgr"), ctx)
    model = dgr.build_model(factory)
    assert (model.vae.observation, model.vae.decoder.output) == ("gaussian", "linear")
    batch = ctx.make_batch(ctx.seq.tasks[0].train_idx[:8], 0)
    assert batch.x.min() < 0  # normalised: a Bernoulli likelihood would be undefined here
    assert torch.isfinite(dgr.loss(model, batch, 0))
    cfg, ctx, _ = cifar_setup(tmp_path, model="mlp", scenario="class", method="gen_classifier")
    params = resolve(GenerativeClassifier.hyperparams, {}, "gen_classifier")
    vaes = GenerativeClassifier(params, ctx).build_model(factory)
    assert {v.observation for v in vaes.vaes} == {"gaussian"}
    bernoulli = GenerativeClassifier({**params, "likelihood": "bernoulli"}, ctx)
    with pytest.raises(ClsweepError, match="likelihood bernoulli needs pixels in"):
        bernoulli.build_model(factory)
    _, _, digits = _replay_setup(DGR)  # pixels in [0, 1]
    assert (digits.vae.observation, digits.vae.decoder.output) == ("bernoulli", "sigmoid")
