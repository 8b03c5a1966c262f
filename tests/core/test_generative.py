"""VAE, generative replay (DGR, BI-R) and the generative classifier: values computed by hand.

Every computation runs for a population (docs/population.md): the hand values are checked member
by member, on members that differ in their parameters, hyperparameters and random streams."""

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import cifar_setup, make_method, population_setup, trace

from cl_core.config import RunConfig
from cl_core.errors import ClsweepError
from cl_core.methods.bir import BIR
from cl_core.methods.dgr import DGR
from cl_core.methods.gen_classifier import ClassVAEs, GenerativeClassifier
from cl_core.models import ModelFactory
from cl_core.models.stacked import StackedParameters
from cl_core.models.vae import VAESpec, kl_standard_normal, log_normal_diag_modes
from cl_core.random import MemberRandom
from cl_core.trainer import RunResult, train

SPLIT = dict(benchmark="split-digits", scenario="class", n_tasks=5, hidden=(32, 32))
TWO = [{"train_seed": 0}, {"train_seed": 1}]


def _toy_spec(n_modes=0, output="sigmoid", observation="bernoulli") -> VAESpec:
    """2 inputs, 1 latent unit, no encoder of its own (features = inputs), decoder = one linear
    layer."""
    return VAESpec((), 2, 1, (), 2, output, observation, n_modes)


def _params(spec: VAESpec, members: list[dict]) -> dict[str, torch.Tensor]:
    """A store of len(members) VAEs, member m's named tensors (under ``spec``'s short names,
    e.g. ``to_z.weight``) set to ``members[m]``."""
    store = StackedParameters(spec.shapes(), len(members), torch.device("cpu"))
    for m, values in enumerate(members):
        store.load(m, {spec.prefix + k: torch.tensor(v) for k, v in values.items()})
    return {k: v.detach() for k, v in store.leaves.items()}


TOY = [  # to_z rows: mean, log-variance
    {
        "to_z.weight": [[0.5, -1.0], [0.2, 0.3]],
        "to_z.bias": [0.1, -0.4],
        "dec_out.weight": [[1.5], [-0.7]],
        "dec_out.bias": [0.2, 0.1],
    },
    {
        "to_z.weight": [[-0.3, 0.8], [0.1, -0.2]],
        "to_z.bias": [0.0, 0.3],
        "dec_out.weight": [[0.4], [1.1]],
        "dec_out.bias": [-0.5, 0.3],
    },
]


def _log_normal(z, mean, var):
    return -0.5 * (math.log(2 * math.pi * var) + (z - mean) ** 2 / var)


def _posterior(values, x):
    (w_mu, w_lv), (b_mu, b_lv) = values["to_z.weight"], values["to_z.bias"]
    mean = sum(w * xi for w, xi in zip(w_mu, x, strict=True)) + b_mu
    logvar = sum(w * xi for w, xi in zip(w_lv, x, strict=True)) + b_lv
    return mean, logvar


def test_vae_loss_equals_the_elbo_by_hand():
    """−ELBO / D per member (Kingma & Welling 2014, eq. 3; analytic KL of their Appendix B)."""
    spec = _toy_spec()
    p = _params(spec, TOY)
    x = torch.tensor([[0.2, 0.9]])
    eps = MemberRandom([3, 4], "test", "cpu").randn(1, 1)  # (M, N, z): each member its own
    loss = spec.loss(p, x, eps, x)
    assert loss.shape == (2,)
    for m, values in enumerate(TOY):
        mean, logvar = _posterior(values, [0.2, 0.9])
        z = mean + eps[m, 0, 0].item() * math.exp(logvar / 2)
        (w0,), (w1,) = values["dec_out.weight"]
        b0, b1 = values["dec_out.bias"]
        means = [1 / (1 + math.exp(-(w0 * z + b0))), 1 / (1 + math.exp(-(w1 * z + b1)))]
        log_px = sum(
            xi * math.log(mu) + (1 - xi) * math.log(1 - mu)
            for xi, mu in zip([0.2, 0.9], means, strict=True)
        )
        kl = -0.5 * (1 + logvar - mean**2 - math.exp(logvar))
        assert loss[m].item() == pytest.approx(-(log_px - kl) / 2, rel=1e-5)  # D = 2 inputs


def test_vae_with_mixture_prior_uses_the_one_sample_kl_by_hand():
    """Conditional replay's prior (van de Ven, Siegelmann & Tolias 2020): a mixture of one
    Gaussian per class; its KL is the one-sample estimate log q(z|x) − log p(z)."""
    spec = _toy_spec(n_modes=2)
    modes = [([-1.0, 2.0], [1.0, 0.5]), ([0.5, -0.5], [2.0, 0.25])]  # (means, variances)
    members = [
        {**values, "prior.means": [[a], [b]], "prior.logvars": [[math.log(u)], [math.log(v)]]}
        for values, ((a, b), (u, v)) in zip(TOY, modes, strict=True)
    ]
    p = _params(spec, members)
    x = torch.tensor([[0.2, 0.9]])
    eps = MemberRandom([5, 6], "test", "cpu").randn(1, 1)
    weights = torch.tensor([[[0.3, 0.7]], [[0.9, 0.1]]])  # soft labels select a mixture of modes
    _, kl = spec.negative_elbo(p, x, eps, x, prior_weights=weights)
    _, kl_uniform = spec.negative_elbo(p, x, eps, x)  # no weights: the modes equally likely
    for m, values in enumerate(TOY):
        mean, logvar = _posterior(values, [0.2, 0.9])
        z = mean + eps[m, 0, 0].item() * math.exp(logvar / 2)
        log_q = _log_normal(z, mean, math.exp(logvar))
        (means, variances), w = modes[m], weights[m, 0].tolist()
        dens = [math.exp(_log_normal(z, mu, var)) for mu, var in zip(means, variances, strict=True)]
        log_p = math.log(w[0] * dens[0] + w[1] * dens[1])
        assert kl[m, 0].item() == pytest.approx(log_q - log_p, rel=1e-5)
        uniform = math.log(0.5 * dens[0] + 0.5 * dens[1])
        assert kl_uniform[m, 0].item() == pytest.approx(log_q - uniform, rel=1e-5)


def test_mixture_log_density_by_hand_and_without_cancellation():
    """The modes' log-densities come from an expanded square (two matrix products); checked by
    hand, and against float64 on samples next to a mode far from 0 with a small variance, where
    the expansion cancels all but a few digits (z² ~ 1e6, (z − μ)² / σ² ~ 1)."""
    z = torch.tensor([[[0.5, -1.0]]])  # (M=1, N=1, Z=2)
    means, variances = [[0.0, 1.0], [2.0, -1.0]], [[1.0, 4.0], [0.5, 2.0]]  # 2 modes
    logvars = torch.tensor([variances]).log()
    got = log_normal_diag_modes(z, torch.tensor([means]), logvars)
    for c in range(2):
        by_hand = sum(
            _log_normal(zj, mu, var)
            for zj, mu, var in zip([0.5, -1.0], means[c], variances[c], strict=True)
        )
        assert got[0, 0, c].item() == pytest.approx(by_hand, rel=1e-6)

    generator = torch.Generator().manual_seed(0)
    means = 1000 + torch.randn(3, 4, 16, generator=generator, dtype=torch.float64)
    logvars = torch.full((3, 4, 16), math.log(1e-4), dtype=torch.float64)
    z = means[:, :1] + 0.01 * torch.randn(3, 8, 16, generator=generator, dtype=torch.float64)
    z, means, logvars = z.float(), means.float(), logvars.float()
    got = log_normal_diag_modes(z, means, logvars)
    z64, m64, v64 = z.double(), means.double(), logvars.double()  # the float32 values, exactly
    exact = -0.5 * (
        math.log(2 * math.pi)
        + v64.unsqueeze(1)
        + (z64.unsqueeze(2) - m64.unsqueeze(1)) ** 2 / v64.exp().unsqueeze(1)
    ).sum(-1)
    assert got.dtype == torch.float32 and got.shape == (3, 8, 4)
    assert torch.allclose(got.double(), exact, rtol=1e-6, atol=0)  # float32 rounding of the result


def test_analytic_kl_matches_its_monte_carlo_estimate():
    mean, logvar = torch.tensor([[0.7, -0.3]]), torch.tensor([[-0.5, 0.4]])
    eps = torch.randn(200_000, 2, generator=torch.Generator().manual_seed(0))
    z = mean + eps * (0.5 * logvar).exp()
    log_q = -0.5 * (math.log(2 * math.pi) + logvar + eps**2).sum(1)
    log_p = -0.5 * (math.log(2 * math.pi) + z**2).sum(1)
    assert kl_standard_normal(mean, logvar).item() == pytest.approx(
        (log_q - log_p).mean().item(), abs=0.01
    )


def _linear_gaussian(w: float, b: tuple[float, float]) -> tuple[dict, torch.Tensor]:
    """x = (w, w)·z + b + N(0, I), z ~ N(0, 1), with the exact posterior as q(z|x): every
    importance weight then equals p(x), so the estimate is exact for any S. Returns the VAE's
    tensors and the covariance WWᵀ + I of p(x)."""
    post_var = 1 / (1 + 2 * w * w)  # (1 + WᵀW)⁻¹
    values = {
        "dec_out.weight": [[w], [w]],
        "dec_out.bias": list(b),
        "to_z.weight": [[post_var * w, post_var * w], [0.0, 0.0]],
        "to_z.bias": [-post_var * w * sum(b), math.log(post_var)],
    }
    cov = torch.tensor([[w * w + 1, w * w], [w * w, w * w + 1]])
    return values, cov


def test_importance_sampled_likelihood_is_exact_with_the_true_posterior():
    """log p(x) ≈ logsumexp_s [log p(x|z_s) + log p(z_s) − log q(z_s|x)] − log S (van de Ven,
    Li & Tolias 2021, eq. 2), per member."""
    spec = _toy_spec(output="linear", observation="gaussian")
    setups = [_linear_gaussian(1.3, (0.5, -0.2)), _linear_gaussian(0.4, (-1.0, 2.0))]
    p = _params(spec, [values for values, _ in setups])
    x = torch.tensor([[1.0, 2.0], [-0.5, 0.3]])
    estimate = spec.log_likelihood_estimate(p, x, 3, MemberRandom([0, 1], "test", "cpu"))
    assert estimate.shape == (2, 2)
    for m, (values, cov) in enumerate(setups):
        mvn = torch.distributions.MultivariateNormal(torch.tensor(values["dec_out.bias"]), cov)
        torch.testing.assert_close(estimate[m], mvn.log_prob(x), rtol=0, atol=1e-5)


def _class_vaes(per_member: list[list[dict]]) -> ClassVAEs:
    """A generative classifier's VAEs on 2-D inputs: member m's VAE of class c holds
    ``per_member[m][c]`` (10 classes; those not given keep their initialisation)."""
    spec = _toy_spec(output="linear", observation="gaussian")
    templates = [[spec.template() for _ in range(10)] for _ in per_member]
    model = ClassVAEs(spec, templates, torch.device("cpu"))
    for m, classes in enumerate(per_member):
        for c, values in enumerate(classes):
            named = {spec.prefix + k: torch.tensor(v) for k, v in values.items()}
            model.store.load(m * 10 + c, named)
    return model


def _log_density(x: np.ndarray, w: float, b: float) -> np.ndarray:
    """log N(x; (b, b), WWᵀ + I) with W = (w, w)ᵀ."""
    cov = np.array([[w * w + 1, w * w], [w * w, w * w + 1]])
    d = x - b
    quad = np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d)
    return -0.5 * (quad + np.log(np.linalg.det(cov)) + 2 * np.log(2 * np.pi))


def test_generative_classifier_classifies_by_likelihood_by_hand():
    """Each class a linear-Gaussian VAE: the predicted class is the one with the larger
    log N(x; b_c, WWᵀ + I), computed by hand; classes a member has not trained score −inf
    (member 0 has trained classes 0 and 1, member 1 classes 0, 1 and 2)."""
    _, ctx, _ = population_setup(TWO, **SPLIT)
    method = make_method("gen_classifier", ctx, {"samples": 4})
    params = {  # (w, b) of each member's VAE of classes 0, 1, 2
        0: [(1.0, 0.0), (0.5, 2.0), (1.0, 0.0)],
        1: [(0.5, 2.0), (1.0, 0.0), (0.3, -3.0)],
    }
    model = _class_vaes([[_linear_gaussian(w, (b, b))[0] for w, b in params[m]] for m in range(2)])
    method.trained[0, :2] = True
    method.trained[1, :3] = True
    x = torch.tensor([[0.1, -0.2], [2.2, 1.7], [1.0, 1.0], [-3.0, 4.0], [-2.8, -3.1]])
    scores = method.predict(model, x, 0)
    assert scores.shape == (2, 5, 10)
    for m, trained in ((0, 2), (1, 3)):
        by_hand = np.stack([_log_density(x.numpy(), w, b) for w, b in params[m][:trained]], 1)
        np.testing.assert_allclose(scores[m, :, :trained].numpy(), by_hand, atol=1e-4)
        assert torch.isinf(scores[m, :, trained:]).all()
    assert scores.argmax(-1).tolist() == [[0, 1, 1, 0, 0], [1, 0, 0, 1, 2]]


def test_generative_classifier_loss_sums_each_class_vae_on_the_members_own_samples():
    """Per member: Σ over the classes in its batch of that class's VAE's −ELBO / D averaged over
    its samples of the class (the stacked step pads and masks; this recomputes it class by
    class, each VAE alone)."""
    _, ctx, _ = population_setup(TWO, **SPLIT)
    method = make_method("gen_classifier", ctx, {"units": 8, "z_dim": 3})
    model = method.build_model(ModelFactory(ctx.cfgs, ctx.input_shape, 10, ctx.device))
    batch = next(ctx.batches([0], 16))
    state = method.noise.state_dict()
    loss = method.loss(model, batch, 0)
    method.noise.load_state_dict(state)
    eps = method.noise.randn(16, 3)
    spec, params = model.spec, model.params()
    assert loss.shape == (2,)
    for m in range(2):
        by_hand = 0.0
        for c in batch.target[m].unique().tolist():
            rows = (batch.target[m] == c).nonzero().flatten()
            p = {k: v[m * 10 + c : m * 10 + c + 1] for k, v in params.items()}
            x = batch.x[m, rows].unsqueeze(0)
            by_hand += spec.loss(p, x, eps[m, rows].unsqueeze(0), spec.encode(p, x))[0]
        torch.testing.assert_close(loss[m], by_hand, rtol=1e-5, atol=1e-6)
        trained = set(batch.target[m].tolist())
        assert method.trained[m].nonzero().flatten().tolist() == sorted(trained)
    # the batch is the members' own: their class counts differ
    assert not torch.equal(batch.target[0].sort().values, batch.target[1].sort().values)


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


def _replay_setup(method, *params, members=TWO, **cfg):
    """Context, method (member m with ``params[m]``, one dict: all) and its model."""
    cfgs, ctx, _ = population_setup(members, **{**SPLIT, **cfg})
    replay = make_method(method, ctx, *params)
    factory = ModelFactory(cfgs, ctx.input_shape, ctx.scenario.out_units, ctx.device)
    return ctx, replay, replay.build_model(factory)


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
    # the samples themselves: two methods built alike draw the same replay, each member its
    # own, and replay draws never touch the batch-order stream
    samples = []
    for _ in range(2):
        ctx, method, model = _replay_setup("dgr", {"z_dim": 8})
        method.after_task(model, 0)
        counter = ctx.batch_random.counter
        samples.append(method.sample(8))
        assert ctx.batch_random.counter == counter
    assert samples[0].shape == (2, 8, 64)
    assert torch.equal(samples[0], samples[1])
    assert not torch.equal(samples[0][0], samples[0][1])  # members draw their own
    assert not torch.equal(method.sample(8), samples[1])  # the stream moves on


def test_replay_loss_weights_current_by_one_over_tasks_seen():
    """L = 1/(t+1) · L_current + (1 − 1/(t+1)) · L_replay (the three-scenario weighting,
    docs/references.md), per member."""
    ctx, method, model = _replay_setup("dgr", {"z_dim": 8})
    method.after_task(model, 0)
    method.after_task(model, 1)
    batch = next(ctx.batches([2], 16))
    noise, replay = method.noise.state_dict(), method.replay_random.state_dict()
    current = method.current_loss(model, batch)
    replayed = method.replay_loss(model, 16, 2)
    method.noise.load_state_dict(noise)
    method.replay_random.load_state_dict(replay)
    total = method.loss(model, batch, 2)
    assert total.shape == (2,)
    torch.testing.assert_close(total, current / 3 + 2 * replayed / 3, rtol=1e-5, atol=1e-6)
    assert not torch.equal(replayed, torch.zeros(2))


def test_dgr_labels_replay_with_the_previous_models_predictions():
    """Distillation: −Σ_c softmax(old/T)_c log softmax(new/T)_c, batch mean (Hinton et al. 2015,
    no T² factor as the three-scenario code base), each member at its own T; without
    distillation, cross-entropy on the previous model's argmax."""
    ctx, method, model = _replay_setup(
        "dgr", {"distill": True, "temperature": 3.0, "z_dim": 8}, {"distill": True, "z_dim": 8}
    )
    method.after_task(model, 0)
    x = method.sample(6)
    with torch.no_grad():
        old = method.previous(x)
        model.theta[:, model.store.slices["head.weight"]] += 0.1  # the current model moves on
    new = model(x)
    assert not torch.allclose(new, old)
    loss = method.replay_targets_loss(new, old, 0, 1)
    for m, t in enumerate((3.0, 2.0)):  # member 1 at the default T = 2
        soft = F.softmax(old[m] / t, 1)
        by_hand = -(soft * F.log_softmax(new[m] / t, 1)).sum(1).mean()
        assert loss[m].item() == pytest.approx(by_hand.item(), rel=1e-6)
    for p in method.params:
        p["distill"] = False
    hard = method.replay_targets_loss(new, old, 0, 1)
    for m in range(2):
        assert hard[m].item() == pytest.approx(F.cross_entropy(new[m], old[m].argmax(1)).item())


def test_bir_components_switch_the_model():
    ctx, method, model = _replay_setup("bir", {"gate_prop": 0.25}, {"gate_prop": 0.5})
    # replay through feedback: the VAE has no encoder of its own; it encodes with the
    # classifier's hidden layers, so its loss trains them
    assert model.spec.enc_sizes == () and not any(".enc" in n for n in model.store.shapes)
    x = ctx.make_batch(ctx.seq.tasks[0].train_idx[:16].expand(2, 16), 0).x
    probs = F.one_hot(torch.zeros(2, 16, dtype=torch.long), 10).float()
    method.vae_loss(model, x, model.upper(x), probs, probs).sum().backward()
    assert model.params()["fc0.weight"].grad.abs().sum() > 0
    # conditional replay: one prior mode per class; gating: per class a fraction gate_prop of
    # each decoder layer's units off, each member its own fraction
    assert model.params()["vae.prior.means"].shape == (2, 10, 100)
    masks = model.masks()
    assert [m.shape for m in masks] == [(2, 10, 32), (2, 10, 32)]
    off = 1 - torch.cat(masks, 1).mean((1, 2))
    assert abs(off[0].item() - 0.25) < 0.05 and abs(off[1].item() - 0.5) < 0.05
    # replay is drawn per class, from the classes seen so far
    method.after_task(model, 0)
    _, classes, tasks = method.generate(64)
    assert set(classes.flatten().tolist()) == {0, 1} and torch.equal(tasks, classes // 2)
    # DGR: standard normal prior, no gates, a VAE with its own encoder, which the classifier
    # does not share
    _, dgr, dgr_model = _replay_setup("dgr")
    assert dgr_model.spec.n_modes == 0 and dgr_model.masks() is None
    assert dgr_model.spec.enc_sizes == (64, 32, 32)
    dgr_model.zero_grad_()
    dgr.vae_loss(dgr_model, x, dgr_model.upper(x), None, None).sum().backward()
    grads = dgr_model.params()
    assert grads["vae.enc0.weight"].grad.abs().sum() > 0
    assert all(grads[n].grad.abs().sum() == 0 for n in ("fc0.weight", "fc1.weight"))


def test_bir_internal_replay_freezes_the_first_layer_and_replays_its_units():
    """Internal replay: once the first task is learned, the first hidden layer never moves
    again (checked through the real loop, after every task) and replay is of its 32 units."""
    ctx, method, model = _replay_setup("bir", {"internal": True, "z_dim": 8})
    method.after_task(model, 0)
    assert method.sample(5).shape == (2, 5, 32)  # the first hidden layer's units, not 64 pixels
    cfg = RunConfig(
        **SPLIT,
        method="bir",
        method_params={"internal": True, "z_dim": 8},
        iterations=15,
        epochs=None,
        batch_size=16,
        train_seed=1,
    )
    reports, states = trace([cfg, dataclasses.replace(cfg, train_seed=2)])
    first = model.store.columns(["fc0.weight", "fc0.bias"])
    for m in range(2):
        assert [r.tasks_learned for r in reports[m]] == list(range(6))
        assert not torch.equal(states[m][0][first], states[m][1][first])  # task 0 trains it
        for later in states[m][2:]:
            assert torch.equal(later[first], states[m][1][first])
        assert not torch.equal(states[m][-1], states[m][1])  # the rest still trains


def test_normalised_inputs_are_modelled_as_gaussian_and_bernoulli_scoring_is_refused(tmp_path):
    """CIFAR inputs are normalised per channel (not in [0, 1]): replayed pixels and the
    generative classifier's VAEs use a linear output with a Gaussian observation (the
    three-scenario code's squared error for CIFAR); MNIST pixels keep sigmoid and Bernoulli."""
    cfg, ctx, _ = cifar_setup(tmp_path, model="mlp", method="dgr")
    factory = ModelFactory([cfg], ctx.input_shape, ctx.scenario.out_units, ctx.device)
    dgr = make_method(DGR, ctx)
    model = dgr.build_model(factory)
    assert (model.spec.observation, model.spec.output) == ("gaussian", "linear")
    batch = ctx.make_batch(ctx.seq.tasks[0].train_idx[:8].unsqueeze(0), 0)
    assert batch.x.min() < 0  # normalised: a Bernoulli likelihood would be undefined here
    assert torch.isfinite(dgr.loss(model, batch, 0)).all()
    cfg, ctx, _ = cifar_setup(tmp_path, model="mlp", scenario="class", method="gen_classifier")
    vaes = make_method(GenerativeClassifier, ctx).build_model(factory)
    assert vaes.spec.observation == "gaussian"
    bernoulli = make_method(GenerativeClassifier, ctx, {"likelihood": "bernoulli"})
    with pytest.raises(ClsweepError, match="likelihood bernoulli needs pixels in"):
        bernoulli.build_model(factory)
    _, _, digits = _replay_setup(BIR)  # pixels in [0, 1]
    assert (digits.spec.observation, digits.spec.output) == ("bernoulli", "sigmoid")
