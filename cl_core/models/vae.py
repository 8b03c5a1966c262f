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
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

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


def kl_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) ‖ N(0, I)) per sample (Kingma & Welling 2014, Appendix B)."""
    return -0.5 * (1 + logvar - mean.pow(2) - logvar.exp()).sum(1)


def log_likelihood(x: torch.Tensor, x_hat: torch.Tensor, observation: str) -> torch.Tensor:
    """log p(x | z) per sample: Bernoulli with means ``x_hat`` or unit-variance Gaussian."""
    if observation == "bernoulli":
        return -F.binary_cross_entropy(x_hat, x, reduction="none").sum(1)
    return -0.5 * ((x - x_hat).pow(2) + LOG_2PI).sum(1)


class GatedDecoder(nn.Module):
    """z -> hidden layers (ReLU) -> output (sigmoid for pixels, identity otherwise).

    With ``gate_size`` > 0 every hidden layer's units are multiplied by a gate chosen by the
    sample's class or task (van de Ven et al. 2020, "context-dependent gating"): a fixed random
    mask per class/task with a fraction ``gate_prop`` of each layer's units switched off, drawn
    once from ``generator``. A sample's gate is ``gate_input @ mask`` with ``gate_input`` a one-
    hot row or a probability row (distilled soft labels give a mixture of masks).
    """

    def __init__(
        self,
        z_dim: int,
        hidden: tuple[int, ...],
        out_dim: int,
        output: str,
        gate_size: int = 0,
        gate_prop: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        sizes = [z_dim, *hidden]
        pairs = zip(sizes[:-1], sizes[1:], strict=True)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairs)
        self.out = nn.Linear(sizes[-1], out_dim)
        self.output = output
        self.gated = gate_size > 0 and gate_prop > 0
        for i, units in enumerate(hidden):
            if self.gated:
                keep = torch.rand(gate_size, units, generator=generator) >= gate_prop
                self.register_buffer(f"mask{i}", keep.float())

    def forward(self, z: torch.Tensor, gate_input: torch.Tensor | None = None) -> torch.Tensor:
        h = z
        for i, layer in enumerate(self.layers):
            h = F.relu(layer(h))
            if self.gated:
                if gate_input is None:
                    raise ValueError("a gated decoder needs each sample's class or task")
                h = h * (gate_input @ getattr(self, f"mask{i}"))
        out = self.out(h)
        return torch.sigmoid(out) if self.output == "sigmoid" else out


class GaussianMixturePrior(nn.Module):
    """p(z) = Σ_c w_c N(z; μ_c, diag σ_c²) with one learnable mode per class (BI-R's conditional
    replay); modes initialised from N(0, 1), as in the three-scenario code base."""

    def __init__(self, n_modes: int, z_dim: int) -> None:
        super().__init__()
        self.means = nn.Parameter(torch.randn(n_modes, z_dim))
        self.logvars = nn.Parameter(torch.randn(n_modes, z_dim))

    def log_prob(self, z: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """log p(z) per sample; ``weights`` (N, modes) are each sample's mode probabilities
        (one-hot for a known class, the previous model's soft labels for replay); ``None``:
        all modes equally likely."""
        per_mode = log_normal_diag(z.unsqueeze(1), self.means, self.logvars)  # (N, modes)
        if weights is None:
            return per_mode.logsumexp(1) - math.log(self.means.shape[0])
        return (per_mode + weights.clamp_min(1e-40).log()).logsumexp(1)

    def sample(self, modes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One z per entry of ``modes`` from that mode's Gaussian."""
        mean, logvar = self.means[modes], self.logvars[modes]
        eps = torch.randn(mean.shape, generator=generator, device=mean.device)
        return mean + eps * (0.5 * logvar).exp()


class VAE(nn.Module):
    """Encoder features -> q(z|x) -> decoder, with a standard or class-conditional prior.

    ``encoder`` maps inputs to ``feature_dim`` features; ``decoder`` maps z back to the
    reconstructed input; ``prior`` is None (standard normal) or a GaussianMixturePrior.
    """

    def __init__(
        self,
        encoder: nn.Module,
        feature_dim: int,
        z_dim: int,
        decoder: GatedDecoder,
        observation: str = "bernoulli",
        prior: GaussianMixturePrior | None = None,
    ) -> None:
        super().__init__()
        if observation not in OBSERVATIONS:
            raise ValueError(f"observation must be one of {OBSERVATIONS}, got {observation!r}")
        self.encoder = encoder
        self.to_z = nn.Linear(feature_dim, 2 * z_dim)
        self.decoder = decoder
        self.prior = prior
        self.z_dim = z_dim
        self.observation = observation

    def posterior(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²) of q(z|x) from the encoder's features."""
        mean, logvar = self.to_z(features).chunk(2, dim=1)
        return mean, logvar

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.posterior(self.encoder(x))

    def negative_elbo(
        self,
        x: torch.Tensor,
        generator: torch.Generator,
        gate_input: torch.Tensor | None = None,
        prior_weights: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample (−E_q log p(x|z), KL) with one reparameterised draw from ``generator``.

        ``features`` may pass encoder features computed already (replay-through-feedback shares
        them with the classifier). ``prior_weights`` select the mixture prior's modes.
        """
        if features is None:
            features = self.encoder(x)
        mean, logvar = self.posterior(features)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device)
        z = mean + eps * (0.5 * logvar).exp()
        recon = -log_likelihood(x, self.decoder(z, gate_input), self.observation)
        if self.prior is None:
            kl = kl_standard_normal(mean, logvar)
        else:
            kl = log_normal_diag(z, mean, logvar) - self.prior.log_prob(z, prior_weights)
        return recon, kl

    def loss(self, x: torch.Tensor, generator: torch.Generator, **kwargs) -> torch.Tensor:
        """Batch mean of −ELBO / D (the training objective)."""
        recon, kl = self.negative_elbo(x, generator, **kwargs)
        return (recon + kl).mean() / x.shape[1]

    @torch.no_grad()
    def sample_z(self, n: int, generator: torch.Generator, modes: torch.Tensor | None = None):
        """z from the prior: standard normal, or the mixture's ``modes`` (one per sample)."""
        if self.prior is not None and modes is not None:
            return self.prior.sample(modes, generator)
        device = self.to_z.weight.device
        return torch.randn(n, self.z_dim, generator=generator, device=device)

    @torch.no_grad()
    def log_likelihood(
        self,
        x: torch.Tensor,
        samples: int,
        generator: torch.Generator,
        observation: str | None = None,
    ) -> torch.Tensor:
        """Importance-sampled estimate of log p(x) with ``samples`` draws from q(z|x), under the
        training observation model or another one (``observation``)."""
        observation = observation or self.observation
        mean, logvar = self.encode(x)
        std = (0.5 * logvar).exp()
        total = torch.empty(samples, len(x), device=x.device)
        for s in range(samples):
            z = mean + std * torch.randn(mean.shape, generator=generator, device=mean.device)
            log_prior = (
                log_normal_diag(z, torch.zeros_like(z), torch.zeros_like(z))
                if self.prior is None
                else self.prior.log_prob(z)
            )
            total[s] = (
                log_likelihood(x, self.decoder(z), observation)
                + log_prior
                - log_normal_diag(z, mean, logvar)
            )
        return total.logsumexp(0) - math.log(samples)
