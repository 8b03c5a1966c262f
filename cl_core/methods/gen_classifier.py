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

In a population every member has its own U VAEs: the store holds M·U VAEs (row m·U + c is
member m's VAE of class c), and a step trains, for every member, the VAEs of the classes in the
batch on that member's samples of them (padded to the largest count, the padding masked out).
"""

from __future__ import annotations

import math

import torch

from cl_core.errors import ClsweepError
from cl_core.methods.base import Method
from cl_core.models import ModelFactory, StackedModel
from cl_core.models.stacked import StackedParameters, template_tensors
from cl_core.models.vae import VAESpec, pixel_observation
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
    member_state = ("trained",)

    def __init__(self, params, ctx) -> None:
        super().__init__(params, ctx)
        self.noise = ctx.random("vae-noise")
        self.eval_random = ctx.random("importance-samples")
        self.evaluations = 0  # predict calls so far (keys the importance samples)
        units = ctx.scenario.out_units
        # which classes each member's VAEs have been trained on, (M, classes)
        self.trained = torch.zeros(self.size, units, dtype=torch.bool, device=ctx.device)

    def build_model(self, factory: ModelFactory) -> ClassVAEs:
        in_dim = math.prod(self.ctx.input_shape)
        hidden = (self.shared("units"),) * self.shared("layers")
        normalised = self.ctx.seq.dataset.mean is not None
        if normalised and self.shared("likelihood") == "bernoulli":
            raise ClsweepError(
                f"gen_classifier: likelihood bernoulli needs pixels in [0, 1], but "
                f"{self.ctx.cfg.benchmark}'s inputs are normalised per channel; use "
                "likelihood gaussian"
            )
        output, observation = pixel_observation(normalised)
        spec = VAESpec(
            enc_sizes=(in_dim, *hidden),
            feature_dim=hidden[-1],
            z_dim=self.shared("z_dim"),
            dec_hidden=hidden,
            out_dim=in_dim,
            output=output,
            observation=observation,
        )
        classes = self.ctx.scenario.out_units
        templates = factory.init.each(lambda: [spec.template() for _ in range(classes)])
        return ClassVAEs(spec, templates, self.ctx.device)

    def loss(self, model: ClassVAEs, batch, task: int) -> torch.Tensor:
        """Per member: Σ over the classes in its batch of that class's VAE's −ELBO / D on its
        samples of the class, (M,)."""
        m, b = batch.target.shape
        spec, classes = model.spec, model.classes
        eps = self.noise.randn(b, spec.z_dim)  # one draw per sample of each member's batch
        present = batch.target.unique()  # classes in any member's batch
        mine = batch.target.unsqueeze(1) == present.view(1, -1, 1)  # (M, C', B)
        self.trained[:, present] |= mine.any(-1)
        counts = mine.sum(-1)  # (M, C')
        k = int(counts.max())
        # each member's samples of each present class first, in batch order (stable sort)
        order = torch.sort((~mine).to(torch.uint8), dim=-1, stable=True).indices[..., :k]
        valid = torch.arange(k, device=order.device) < counts.unsqueeze(-1)  # (M, C', K)
        flat = order.reshape(m, -1)
        x = batch.x.gather(1, flat.unsqueeze(-1).expand(-1, -1, batch.x.shape[-1]))
        noise = eps.gather(1, flat.unsqueeze(-1).expand(-1, -1, spec.z_dim))
        rows = (torch.arange(m, device=order.device).unsqueeze(1) * classes + present).flatten()
        p = {name: v.index_select(0, rows) for name, v in model.params().items()}
        c = len(present)
        x = x.view(m * c, k, -1)
        recon, kl = spec.negative_elbo(p, x, noise.view(m * c, k, -1), spec.encode(p, x))
        per_sample = ((recon + kl) / x.shape[-1]).view(m, c, k) * valid
        per_class = per_sample.sum(-1) / counts.clamp_min(1)
        return per_class.sum(-1)

    @torch.no_grad()
    def predict(self, model: ClassVAEs, x: torch.Tensor, task: int) -> torch.Tensor:
        """log p(x | c) for every class (−inf for classes a member has not trained on yet),
        (M, N, classes). The importance samples of class c in this call are keyed by the call
        and c, so they never depend on which other classes are scored."""
        spec, classes = model.spec, model.classes
        m = self.size
        scores = torch.full((m, x.shape[0], classes), -math.inf, device=x.device)
        params = model.params()
        for c in self.trained.any(0).nonzero().flatten().tolist():
            rows = torch.arange(m, device=x.device) * classes + c
            p = {name: v.index_select(0, rows) for name, v in params.items()}
            random = self.eval_random.fork(f"{self.evaluations}/{c}")
            likelihood = spec.log_likelihood_estimate(
                p, x, self.shared("samples"), random, self.shared("likelihood")
            )
            scores[:, :, c] = torch.where(self.trained[:, c : c + 1], likelihood, -math.inf)
        self.evaluations += 1
        return scores


class ClassVAEs(StackedModel):
    """The VAEs of a generative classifier: M members × U classes, stored as M·U stacked VAEs
    (row m·U + c); the optimizer sees each member's U VAEs as one row of (M, U·P)."""

    def __init__(self, spec: VAESpec, templates: list[list], device: torch.device) -> None:
        classes = len(templates[0])
        store = StackedParameters(spec.shapes(), len(templates) * classes, device)
        rename = spec.rename()
        for m, member in enumerate(templates):
            for c, template in enumerate(member):
                store.load(m * classes + c, template_tensors(template, rename))
        super().__init__(store)
        self.spec = spec
        self.classes = classes

    @property
    def size(self) -> int:
        return self.store.size // self.classes

    @property
    def n_params(self) -> int:
        return self.store.n_params * self.classes

    def optimized(self) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.size
        return self.store.theta.view(m, -1), self.store.grad.view(m, -1)

    def select(self, keep: torch.Tensor, _done=None) -> None:
        rows = (keep.unsqueeze(1) * self.classes + torch.arange(self.classes, device=keep.device))
        self.store.select(rows.flatten())

    def forward(self, x, params=None, gates=None) -> torch.Tensor:
        raise TypeError("a generative classifier scores classes by likelihood: use its predict")
