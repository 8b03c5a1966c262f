"""Variational autoencoders for generative replay and the generative classifier.

A VAE (Kingma & Welling 2014) with an encoder ``x -> h`` (any module: its own MLP, or the
classifier's layers in replay-through-feedback), a linear map ``h -> (μ, log σ²)`` of q(z|x),
a decoder ``z -> x̂`` (fully connected, optionally with class- or task-dependent gates) and a
prior p(z): standard normal, or a Gaussian mixture with one learnable mode per class
(van de Ven, Siegelmann & Tolias 2020, "conditional replay").

The ELBO of one sample (Kingma & Welling 2014, eq. 3 and Appendix B):
    ELBO(x) = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z)),
estimated with one reparameterised draw z = μ + σ ⊙ ε, ε ~ N(0, I). For the standard prior the
KL is analytic: −½ Σ_j (1 + log σ_j² − μ_j² − σ_j²); for a mixture prior it is the one-sample
estimate log q(z|x) − log p(z). The observation model is Bernoulli (binary cross-entropy, for
pixels in [0, 1]) or a unit-variance Gaussian (for hidden representations, and for inputs
normalised per channel). Constants are kept,
so values are true log-densities in nats.

Training minimises −ELBO / D (D = input units), as the three-scenario code base does (its
reconstruction term averages over pixels and its KL term is divided by D), so that one
learning rate serves inputs of any size.

The likelihood of the generative classifier is estimated by importance sampling with q(z|x) as
proposal (van de Ven, Li & Tolias 2021, eq. 2; Burda et al. 2016):
    log p(x) ≈ logsumexp_s [log p(x|z_s) + log p(z_s) − log q(z_s|x)] − log S,   z_s ~ q(z|x).

Two forms: the module classes (``VAE``, ``GatedDecoder``, ``GaussianMixturePrior``) are one
member's template, which fixes the layers and initialises them as torch does; training runs the
stacked form (M members, ``cl_core.models.stacked``): ``VAESpec`` names the parameters in a
stacked model's store (prefix ``vae.``) and the functions below (``negative_elbo``, ``decode``,
``log_likelihood_estimate``, ...) compute with them for every member at once, each member's noise
drawn from its own random stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cl_core.models.stacked import Params, linear, relu_stack
from cl_core.random import MemberRandom

LOG_2PI = math.log(2 * math.pi)
OBSERVATIONS = ("bernoulli", "gaussian")


def pixel_observation(normalised: bool) -> tuple[str, str]:
    """(decoder output, observation model) for replaying or modelling input pixels: sigmoid and
    Bernoulli for pixels in [0, 1] (MNIST, digits); identity and unit-variance Gaussian for
    inputs normalised per channel (CIFAR: the three-scenario code base's squared-error
    reconstruction loss for CIFAR, ``recon_loss = "MSE"`` in its param_values.py)."""
    return ("linear", "gaussian") if normalised else ("sigmoid", "bernoulli")


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear + ReLU layers through ``sizes`` (every layer followed by a ReLU)."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)


def log_normal_diag(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mean, diag(exp(logvar))) summed over the last dimension."""
    return -0.5 * (LOG_2PI + logvar + (z - mean).pow(2) / logvar.exp()).sum(-1)


def log_normal_diag_modes(
    z: torch.Tensor, means: torch.Tensor, logvars: torch.Tensor
) -> torch.Tensor:
    """log N(z_n; μ_c, diag exp(logvar_c)) of every sample n and mode c, (M, N, modes), from z
    (M, N, Z) and the modes' ``means`` and ``logvars`` (M, modes, Z).

    The square is expanded, Σ_j (z_j − μ_cj)² / σ²_cj = z²·(1/σ²_c) − 2 z·(μ_c/σ²_c) +
    Σ_j μ²_cj/σ²_cj, so that the sums over j are two matrix products instead of an
    (M, N, modes, Z) tensor and its gradient (a population's BI-R step spent most of its prior's
    time there). It is computed in float64, where the expansion's cancellation (z near μ_c) stays
    far below float32's rounding, and returned in z's dtype: as close to the exact value as
    ``log_normal_diag`` of the broadcast tensors, or closer (tests/core/test_generative.py)."""
    z64, means64, logvars64 = z.double(), means.double(), logvars.double()
    precision = torch.exp(-logvars64)  # 1/σ²
    square = (
        torch.bmm(z64 * z64, precision.transpose(1, 2))
        - 2 * torch.bmm(z64, (means64 * precision).transpose(1, 2))
        + (means64 * means64 * precision).sum(-1).unsqueeze(1)
    )
    constant = z.shape[-1] * LOG_2PI + logvars64.sum(-1).unsqueeze(1)  # (M, 1, modes)
    return (-0.5 * (constant + square)).to(z.dtype)


def kl_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) ‖ N(0, I)) per sample (Kingma & Welling 2014, Appendix B)."""
    return -0.5 * (1 + logvar - mean.pow(2) - logvar.exp()).sum(-1)


def log_likelihood(x: torch.Tensor, x_hat: torch.Tensor, observation: str) -> torch.Tensor:
    """log p(x | z) per sample: Bernoulli with means ``x_hat`` or unit-variance Gaussian."""
    if observation == "bernoulli":
        # torch's binary cross-entropy refuses NaN means; a diverged member's NaN must instead
        # reach its loss (and be reported) while finite rows keep their exact bits (+0.0)
        x = x.expand_as(x_hat)
        finite = torch.isfinite(x_hat) & torch.isfinite(x)
        means, x = torch.where(finite, x_hat, 0.5), torch.where(finite, x, 0.5)
        nll = F.binary_cross_entropy(means, x, reduction="none").sum(-1)
        return -(nll + torch.where(finite.all(-1), 0.0, float("nan")))
    return -0.5 * ((x - x_hat).pow(2) + LOG_2PI).sum(-1)


class GatedDecoder(nn.Module):
    """One member's decoder template: z -> hidden layers (ReLU) -> output (sigmoid for pixels,
    identity otherwise). Gates (``decode``'s masks) are drawn by the method, not here."""

    def __init__(self, z_dim: int, hidden: tuple[int, ...], out_dim: int, output: str) -> None:
        super().__init__()
        sizes = [z_dim, *hidden]
        pairs = zip(sizes[:-1], sizes[1:], strict=True)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairs)
        self.out = nn.Linear(sizes[-1], out_dim)
        self.output = output


class GaussianMixturePrior(nn.Module):
    """One member's prior template: p(z) = Σ_c w_c N(z; μ_c, diag σ_c²) with one learnable mode per
    class (BI-R's conditional replay); modes initialised from N(0, 1), as in the three-scenario
    code base."""

    def __init__(self, n_modes: int, z_dim: int) -> None:
        super().__init__()
        self.means = nn.Parameter(torch.randn(n_modes, z_dim))
        self.logvars = nn.Parameter(torch.randn(n_modes, z_dim))


class VAE(nn.Module):
    """One member's VAE template: its own encoder (or none: the classifier's layers encode),
    ``to_z`` (features -> μ, log σ²), the decoder and the prior (None: standard normal). Modules
    are created in this order: encoder, decoder, prior, ``to_z`` (the initialisation order)."""

    def __init__(
        self,
        encoder: nn.Module,
        feature_dim: int,
        z_dim: int,
        decoder: GatedDecoder,
        prior: GaussianMixturePrior | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.prior = prior
        self.to_z = nn.Linear(feature_dim, 2 * z_dim)


@dataclass(frozen=True)
class VAESpec:
    """The shape of a stacked VAE: which parameters it has under ``prefix`` in a store, and how
    it computes. ``enc_sizes`` are its own encoder's layer widths (input first; empty when the
    classifier's layers encode: replay through feedback)."""

    enc_sizes: tuple[int, ...]
    feature_dim: int
    z_dim: int
    dec_hidden: tuple[int, ...]
    out_dim: int
    output: str  # "sigmoid" | "linear"
    observation: str  # "bernoulli" | "gaussian"
    n_modes: int = 0  # 0: standard normal prior; else a mixture with one mode per class
    prefix: str = "vae."

    def __post_init__(self) -> None:
        if self.observation not in OBSERVATIONS:
            raise ValueError(f"observation must be one of {OBSERVATIONS}, got {self.observation!r}")

    @property
    def n_enc(self) -> int:
        return max(len(self.enc_sizes) - 1, 0)

    def template(self) -> VAE:
        """One member's template, initialised by torch from the global random state."""
        encoder = mlp(list(self.enc_sizes)) if self.n_enc else nn.Identity()
        decoder = GatedDecoder(self.z_dim, self.dec_hidden, self.out_dim, self.output)
        prior = GaussianMixturePrior(self.n_modes, self.z_dim) if self.n_modes else None
        return VAE(encoder, self.feature_dim, self.z_dim, decoder, prior)

    def rename(self) -> dict[str, str]:
        """Template parameter names -> stacked names."""
        p = self.prefix
        names = {f"encoder.{2 * k}.{w}": f"{p}enc{k}.{w}" for k in range(self.n_enc) for w in WB}
        names.update(
            {
                f"decoder.layers.{k}.{w}": f"{p}dec{k}.{w}"
                for k in range(len(self.dec_hidden))
                for w in WB
            }
        )
        names.update({f"decoder.out.{w}": f"{p}dec_out.{w}" for w in WB})
        names.update({f"to_z.{w}": f"{p}to_z.{w}" for w in WB})
        if self.n_modes:
            names.update({"prior.means": f"{p}prior.means", "prior.logvars": f"{p}prior.logvars"})
        return names

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Stacked names -> one member's shapes."""
        template = self.template_shapes()
        return {stacked: template[name] for name, stacked in self.rename().items()}

    def template_shapes(self) -> dict[str, tuple[int, ...]]:
        with torch.random.fork_rng(devices=[]):
            return {n: tuple(t.shape) for n, t in self.template().named_parameters()}

    # ---- computation, every member at once --------------------------------------------------
    def encode(self, p: Params, x: torch.Tensor) -> torch.Tensor:
        """Its own encoder's features of ``x`` (M, N, D)."""
        return relu_stack(x, p, f"{self.prefix}enc", self.n_enc)

    def posterior(self, p: Params, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²) of q(z|x) from the encoder's features, (M, N, z) each."""
        out = linear(features, p[f"{self.prefix}to_z.weight"], p[f"{self.prefix}to_z.bias"])
        mean, logvar = out.chunk(2, dim=-1)
        return mean, logvar

    def decode(
        self,
        p: Params,
        z: torch.Tensor,
        gate_input: torch.Tensor | None = None,
        masks: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """z (M, N, z) -> reconstruction (M, N, D). With ``masks`` (one (M, G, units) per hidden
        layer: a fixed random mask per class or task) every hidden layer's units are multiplied
        by the sample's gate ``gate_input @ mask`` (van de Ven et al. 2020, context-dependent
        gating), ``gate_input`` (M, N, G) a one-hot row or a probability row (distilled soft
        labels give a mixture of masks)."""
        h = z
        for k in range(len(self.dec_hidden)):
            name = f"{self.prefix}dec{k}"
            h = torch.relu(linear(h, p[f"{name}.weight"], p[f"{name}.bias"]))
            if masks is not None:
                if gate_input is None:
                    raise ValueError("a gated decoder needs each sample's class or task")
                h = h * torch.bmm(gate_input, masks[k])
        out = linear(h, p[f"{self.prefix}dec_out.weight"], p[f"{self.prefix}dec_out.bias"])
        return torch.sigmoid(out) if self.output == "sigmoid" else out

    def log_prior(
        self, p: Params, z: torch.Tensor, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """log p(z) per sample (M, N): standard normal, or the mixture with ``weights``
        (M, N, modes) each sample's mode probabilities (one-hot for a known class, the previous
        model's soft labels for replay); ``None``: all modes equally likely."""
        if not self.n_modes:
            return log_normal_diag(z, torch.zeros_like(z), torch.zeros_like(z))
        means = p[f"{self.prefix}prior.means"]  # (M, modes, z)
        logvars = p[f"{self.prefix}prior.logvars"]
        per_mode = log_normal_diag_modes(z, means, logvars)  # (M, N, modes)
        if weights is None:
            return per_mode.logsumexp(-1) - math.log(self.n_modes)
        return (per_mode + weights.clamp_min(1e-40).log()).logsumexp(-1)

    def negative_elbo(
        self,
        p: Params,
        x: torch.Tensor,
        eps: torch.Tensor,
        features: torch.Tensor,
        gate_input: torch.Tensor | None = None,
        masks: list[torch.Tensor] | None = None,
        prior_weights: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample (−E_q log p(x|z), KL), (M, N) each, with one reparameterised draw
        z = μ + σ ⊙ ``eps``; ``features`` are the encoder's features of ``x``."""
        mean, logvar = self.posterior(p, features)
        z = mean + eps * (0.5 * logvar).exp()
        recon = -log_likelihood(x, self.decode(p, z, gate_input, masks), self.observation)
        if self.n_modes:
            kl = log_normal_diag(z, mean, logvar) - self.log_prior(p, z, prior_weights)
        else:
            kl = kl_standard_normal(mean, logvar)
        return recon, kl

    def loss(self, p: Params, x: torch.Tensor, eps: torch.Tensor, features, **kwargs):
        """Each member's batch mean of −ELBO / D (the training objective), (M,)."""
        recon, kl = self.negative_elbo(p, x, eps, features, **kwargs)
        return (recon + kl).mean(-1) / x.shape[-1]

    def sample_z(
        self, p: Params, n: int, random: MemberRandom, modes: torch.Tensor | None = None
    ) -> torch.Tensor:
        """z (M, n, z) from the prior: standard normal, or the mixture's ``modes`` (M, n)."""
        eps = random.randn(n, self.z_dim)
        if not self.n_modes or modes is None:
            return eps
        index = modes.unsqueeze(-1).expand(*modes.shape, self.z_dim)
        mean = p[f"{self.prefix}prior.means"].gather(1, index)
        logvar = p[f"{self.prefix}prior.logvars"].gather(1, index)
        return mean + eps * (0.5 * logvar).exp()

    @torch.no_grad()
    def log_likelihood_estimate(
        self, p: Params, x: torch.Tensor, samples: int, random: MemberRandom, observation=None
    ) -> torch.Tensor:
        """Importance-sampled estimate of log p(x) (M, N) with ``samples`` draws from q(z|x),
        under the training observation model or another one (``observation``)."""
        observation = observation or self.observation
        mean, logvar = self.posterior(p, self.encode(p, x))
        std = (0.5 * logvar).exp()
        eps = random.randn(samples, *mean.shape[1:])  # (M, S, N, z): one draw for all samples
        total = []
        for s in range(samples):
            z = mean + std * eps[:, s]
            total.append(
                log_likelihood(x, self.decode(p, z), observation)
                + self.log_prior(p, z)
                - log_normal_diag(z, mean, logvar)
            )
        return torch.stack(total).logsumexp(0) - math.log(samples)


WB = ("weight", "bias")
