"""Generative classifier (van de Ven, Li & Tolias 2021, CVPR-W "Class-incremental learning with
generative classifiers"): one VAE per class, classification by Bayes' rule with a uniform prior
over classes, i.e. by each class's estimated likelihood:
    ŷ = argmax_c log p(x | c),   log p(x | c) ≈ logsumexp_s [log p(x|z_s) + log p(z_s)
                                               − log q(z_s|x)] − log S,   z_s ~ q_c(z|x)
(importance sampling with S samples; their eq. 2). Each VAE only ever sees its own class, so
nothing is forgotten and no task boundary is used: class-IL only.

Sizes of the three-scenario code base for Split MNIST (compare.py: fc_units_gc = 85, fc_lay_gc =
3, z_dim_gc = 5, lr 0.001; eval_s = 50): encoder 784-85-85, z = 5, decoder 5-85-85-784, trained
with Bernoulli pixels (binary cross-entropy; a unit-variance Gaussian for inputs normalised per
channel, CIFAR), scored with a unit-variance Gaussian observation model (as that code base scores;
``likelihood`` switches to Bernoulli, for pixels in [0, 1] only). The VAEs ignore the run's
``hidden`` setting. Differences: the reference trains each class's VAE on its own batches of 128
for iterations/2 steps; here every step of the run's batches updates the VAEs of the classes in
the batch on their samples (about 64 per class on Split MNIST, twice as many steps: the same
number of samples), as the reference's task-free version does. Classes not seen yet score −inf
(an untrained VAE models no class); this only changes the accuracy on tasks not learned yet.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cl_core.errors import ClsweepError
from cl_core.methods.base import Method
from cl_core.models.vae import VAE, GatedDecoder, mlp, pixel_observation
from cl_core.params import HyperParam


class GenerativeClassifier(Method):
    """One VAE per class; predict by importance-sampled likelihood."""

    name = "gen_classifier"
    scenarios = ("class",)
    hyperparams = {
        p.name: p
        for p in (
            HyperParam("units", "int", 85, "hidden units per layer of each VAE", low=1, high=10**5),
            HyperParam("layers", "int", 2, "hidden layers of encoder and decoder", low=1, high=10),
            HyperParam("z_dim", "int", 5, "latent units of each VAE", low=1, high=10_000),
            HyperParam(
                "samples", "int", 50, "importance samples S per class at test", low=1, high=10**5
            ),
            HyperParam(
                "likelihood",
                "choice",
                "gaussian",
                "observation model scoring p(x|z) at test",
                choices=("gaussian", "bernoulli"),
            ),
        )
    }

    def __init__(self, params, ctx) -> None:
        super().__init__(params, ctx)
        self.noise = ctx.new_generator("vae-noise")
        self.eval_gen = ctx.new_generator("importance-samples")
        self.trained = torch.zeros(ctx.scenario.out_units, dtype=torch.bool, device=ctx.device)

    def build_model(self, factory) -> nn.Module:
        in_dim = math.prod(self.ctx.input_shape)
        hidden = (self.params["units"],) * self.params["layers"]
        z = self.params["z_dim"]
        normalised = self.ctx.seq.dataset.mean is not None
        if normalised and self.params["likelihood"] == "bernoulli":
            raise ClsweepError(
                f"gen_classifier: likelihood bernoulli needs pixels in [0, 1], but "
                f"{self.ctx.cfg.benchmark}'s inputs are normalised per channel; use "
                "likelihood gaussian"
            )
        output, observation = pixel_observation(normalised)
        vaes = [
            VAE(
                mlp([in_dim, *hidden]),
                hidden[-1],
                z,
                GatedDecoder(z, hidden, in_dim, output),
                observation,
            )
            for _ in range(self.ctx.scenario.out_units)
        ]
        return ClassVAEs(vaes).to(self.ctx.device)

    def loss(self, model: ClassVAEs, batch, task: int) -> torch.Tensor:
        """Σ over the classes in the batch of that class's VAE's −ELBO / D on its samples."""
        total = torch.zeros((), device=self.ctx.device)
        present = batch.target.unique()
        self.trained[present] = True
        for c in present.tolist():
            total = total + model.vaes[c].loss(batch.x[batch.target == c], self.noise)
        return total

    @torch.no_grad()
    def predict(self, model: ClassVAEs, x: torch.Tensor, task: int) -> torch.Tensor:
        """log p(x | c) for every class (−inf for classes not trained on yet)."""
        scores = torch.full((len(x), len(model.vaes)), -math.inf, device=x.device)
        for c in self.trained.nonzero().flatten().tolist():
            scores[:, c] = model.vaes[c].log_likelihood(
                x, self.params["samples"], self.eval_gen, self.params["likelihood"]
            )
        return scores


class ClassVAEs(nn.Module):
    """The VAEs of a generative classifier, one per class."""

    def __init__(self, vaes: list[VAE]) -> None:
        super().__init__()
        self.vaes = nn.ModuleList(vaes)
