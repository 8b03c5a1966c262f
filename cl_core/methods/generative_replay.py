"""Generative replay, shared by DGR and BI-R: a classifier and a VAE trained side by side, the
VAE's samples of earlier tasks replayed, labelled by the model as it was before the task.

Deep generative replay (Shin et al. 2017) is the plain form: a separate VAE, samples drawn from a
standard normal prior, labelled with the previous classifier's hard predictions ("DGR"), or with
its soft outputs at temperature T ("DGR + distillation"). Brain-inspired replay (van de Ven,
Siegelmann & Tolias 2020, Nat. Commun.) adds five components, each a switch here:
  - feedback:    the VAE's encoder is the classifier's hidden layers ("replay through feedback");
  - conditional: a Gaussian-mixture prior with one mode per class, samples drawn per class;
  - gating:      decoder units gated per class (per task in domain-IL), a fraction ``gate_prop``
                 of each hidden layer switched off for each class;
  - internal:    replay hidden representations (after the first hidden layer, frozen once the
                 first task is learned) instead of pixels;
  - distill:     soft targets at temperature T.
All five off is DGR; DGR registers those off and keeps only ``distill``.

The loss of a step on task t (0-based), with the three-scenario weighting (REFERENCE R4):
    L = 1/(t+1) · L_current + (1 − 1/(t+1)) · L_replay,
each part the classifier's loss (cross-entropy on current data; cross-entropy on hard or
distillation on soft targets for replay, no T² factor, as the three-scenario code base) plus
the VAE's −ELBO / D (see cl_core.models.vae). Replayed batches have the size of the current
batch. Every random draw (latent noise, sampled classes) uses the method's own generators, so
a run is deterministic under ``train_seed`` and replay never shifts the batch order.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from cl_core.errors import ClsweepError
from cl_core.methods.base import Method
from cl_core.models.base import ContinualModel
from cl_core.models.vae import VAE, GatedDecoder, GaussianMixturePrior, mlp, pixel_observation
from cl_core.params import HyperParam

TEMPERATURE = HyperParam(
    "temperature", "float", 2.0, "distillation temperature T", low=0.0, high=100.0, low_open=True
)
DISTILL = HyperParam("distill", "bool", False, "soft targets at temperature T (distillation)")
Z_DIM = HyperParam("z_dim", "int", 100, "latent units of the VAE", low=1, high=10_000)


class ReplayModel(ContinualModel):
    """Classifier ``head(upper(lower(x)))`` plus a VAE over the replay level ``lower(x)``.

    ``lower`` is the identity unless replay is internal. With feedback the VAE's encoder *is*
    ``upper`` (shared parameters), so the classifier is the VAE's encoder plus one layer.
    """

    def __init__(
        self, lower: nn.Module, upper: nn.Module, head: nn.Linear, vae: VAE, feedback: bool
    ) -> None:
        super().__init__()
        self.lower, self.upper, self.head, self.vae = lower, upper, head, vae
        self.feedback = feedback

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.upper(self.lower(x))


class GenerativeReplay(Method):
    """Generative replay with BI-R's components as switches (all off: DGR)."""

    name = "generative-replay"  # abstract: DGR and BI-R register subclasses
    switches = ("feedback", "conditional", "gating", "internal")

    def __init__(self, params, ctx) -> None:
        super().__init__(params, ctx)
        self.previous: ReplayModel | None = None  # the model before the current task, frozen
        self.noise = ctx.new_generator("vae-noise")  # reparameterisation draws in training
        self.replay_gen = ctx.new_generator("replay")  # latent draws and classes of replay
        self.replay_classes = torch.empty(0, dtype=torch.long, device=ctx.device)
        self.replay_tasks = torch.empty(0, dtype=torch.long, device=ctx.device)

    def on(self, switch: str) -> bool:
        """Whether a BI-R component is switched on (DGR declares none of them: off)."""
        return bool(self.params.get(switch, False))

    # ---- the model ----------------------------------------------------------------------------
    def build_model(self, factory) -> ReplayModel:
        cfg, scenario = self.ctx.cfg, self.ctx.scenario
        classifier = factory()
        in_dim = math.prod(self.ctx.input_shape)
        hidden = tuple(cfg.hidden)
        if self.on("internal"):
            trunk = getattr(classifier, "trunk", None)
            if not isinstance(trunk, nn.Sequential) or len(hidden) < 2:
                raise ClsweepError(
                    "internal replay needs an MLP with at least two hidden layers (it replays the "
                    "first hidden layer's units); set hidden to e.g. 400,400 or internal=false"
                )
            lower, upper = trunk[:2], trunk[2:]
            replay_dim, enc_hidden = hidden[0], hidden[1:]
            output, observation = "linear", "gaussian"  # hidden units: real-valued
        else:
            lower, upper = nn.Identity(), _Features(classifier)
            replay_dim, enc_hidden = in_dim, hidden
            output, observation = pixel_observation(self.ctx.seq.dataset.mean is not None)
        z_dim = self.params["z_dim"]
        if self.on("feedback"):
            encoder, feature_dim = upper, classifier.feature_dim
        else:
            encoder, feature_dim = mlp([replay_dim, *enc_hidden]), enc_hidden[-1]
        gate_size = 0
        if self.on("gating"):
            gate_size = scenario.n_tasks if scenario.kind == "domain" else scenario.out_units
        decoder = GatedDecoder(
            z_dim,
            tuple(reversed(enc_hidden)),
            replay_dim,
            output,
            gate_size=gate_size,
            gate_prop=self.params.get("gate_prop", 0.0),
            generator=_cpu_gen(self.ctx),
        )
        prior = GaussianMixturePrior(self.n_classes, z_dim) if self.on("conditional") else None
        vae = VAE(encoder, feature_dim, z_dim, decoder, observation, prior)
        return ReplayModel(lower, upper, classifier.head, vae, self.on("feedback")).to(
            self.ctx.device
        )

    @property
    def n_classes(self) -> int:
        """Classes the prior's modes and class gates stand for: the output units (task- and
        class-IL), the within-task labels (domain-IL)."""
        return self.ctx.scenario.out_units

    # ---- a task -------------------------------------------------------------------------------
    def after_task(self, model: ReplayModel, task: int) -> None:
        """Freeze the replay level (internal replay), snapshot the model, and record which
        classes and tasks replay may now generate."""
        if self.on("internal"):
            model.lower.requires_grad_(False)
        self.previous = copy.deepcopy(model).eval()
        self.previous.requires_grad_(False)
        scenario, device = self.ctx.scenario, self.ctx.device
        c = scenario.classes_per_task
        self.replay_tasks = torch.arange(task + 1, device=device)
        units = c if scenario.kind == "domain" else (task + 1) * c
        self.replay_classes = torch.arange(units, device=device)

    def current_weight(self, task: int) -> float:
        """Weight of the current batch: 1/(t+1) with t previous tasks (REFERENCE R4); ½ in a
        task-free stream (the reference's stream training)."""
        return 0.5 if self.ctx.task_free else 1.0 / (task + 1)

    # ---- a step -------------------------------------------------------------------------------
    def loss(self, model: ReplayModel, batch, task: int) -> torch.Tensor:
        current = self.current_loss(model, batch)
        if self.previous is None:
            return current
        w = self.current_weight(task)
        return w * current + (1 - w) * self.replay_loss(model, len(batch), task)

    def current_loss(self, model: ReplayModel, batch) -> torch.Tensor:
        """Cross-entropy plus the VAE's −ELBO / D on the current batch."""
        level = model.lower(batch.x)
        features = model.upper(level)
        logits = model.head(features)
        ce = F.cross_entropy(self.ctx.active_logits(logits, batch.task), batch.target)
        classes = self.class_of(batch.label, batch.target)
        one_hot = F.one_hot(classes, self.n_classes).float()
        gate = self.gate_input(one_hot, batch.task, len(batch))
        vae = model.vae.loss(
            level.detach(),
            self.noise,
            gate_input=gate,
            prior_weights=one_hot,
            features=features if model.feedback else None,
        )
        return ce + vae

    def class_of(self, label: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The class a sample stands for in the prior and the gates: its output unit (task- and
        class-IL: the global label), its within-task label (domain-IL)."""
        return target if self.ctx.scenario.kind == "domain" else label

    def gate_input(self, class_probs: torch.Tensor, task, n: int) -> torch.Tensor | None:
        """Per-sample gate selector: class probabilities, or the task one-hot in domain-IL."""
        if not self.on("gating"):
            return None
        if self.ctx.scenario.kind != "domain":
            return class_probs
        tasks = torch.as_tensor(task, device=self.ctx.device).expand(n)
        return F.one_hot(tasks, self.ctx.scenario.n_tasks).float()

    # ---- replay -------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``n`` replayed inputs (at the replay level) from the previous model's VAE, with the
        classes they were drawn for (conditional or gated replay) and their tasks."""
        prev, gen = self.previous, self.replay_gen
        scenario = self.ctx.scenario
        classes = tasks = None
        if self.on("conditional") or self.on("gating"):
            pick = torch.randint(len(self.replay_classes), (n,), generator=gen, device=gen.device)
            classes = self.replay_classes[pick]
        if scenario.kind == "domain":
            pick = torch.randint(len(self.replay_tasks), (n,), generator=gen, device=gen.device)
            tasks = self.replay_tasks[pick]
        elif classes is not None:
            tasks = classes // scenario.classes_per_task
        z = prev.vae.sample_z(n, gen, classes if self.on("conditional") else None)
        gate = None
        if self.on("gating"):
            one_hot = F.one_hot(classes, self.n_classes).float()
            gate = self.gate_input(one_hot, tasks, n)
        return prev.vae.decoder(z, gate), classes, tasks

    def replay_loss(self, model: ReplayModel, n: int, task: int) -> torch.Tensor:
        """The classifier's and the VAE's losses on ``n`` generated samples."""
        x, _, tasks = self.generate(n)
        with torch.no_grad():
            old = self.previous.head(self.previous.upper(x))
        features = model.upper(x)
        logits = model.head(features)
        heads = self.replay_heads(task, tasks)
        ce = sum(self.replay_targets_loss(logits, old, h, task) for h in heads) / len(heads)
        probs = self.replay_class_probs(old, heads[0], task)
        gate = self.gate_input(probs, tasks if tasks is not None else 0, n)
        vae = model.vae.loss(
            x,
            self.noise,
            gate_input=gate,
            prior_weights=probs,
            features=features if model.feedback else None,
        )
        return ce + vae

    def replay_heads(self, task: int, tasks: torch.Tensor | None) -> list:
        """The heads replay is scored on: in task-IL each sample's own task when it was drawn
        for a class, else every previous task's head in turn (the three-scenario code base);
        otherwise the one shared set of units."""
        if self.ctx.scenario.kind != "task":
            return [0]
        if tasks is not None:
            return [tasks]
        return list(range(task))

    def replay_targets_loss(
        self, logits: torch.Tensor, old: torch.Tensor, head, task: int
    ) -> torch.Tensor:
        """Cross-entropy on the previous model's hard labels, or distillation of its soft
        labels at temperature T: −Σ_c softmax(old/T)_c log softmax(new/T)_c, batch mean."""
        new = self.ctx.active_logits(logits, head)
        target = self.previous_scores(old, head, task)
        if not self.params["distill"]:
            return F.cross_entropy(new, target.argmax(1))
        temperature = self.params["temperature"]
        soft = F.softmax(target / temperature, dim=1)
        soft = F.pad(soft, (0, new.shape[1] - soft.shape[1]))  # current-task units get 0
        return -(soft * F.log_softmax(new / temperature, dim=1)).sum(1).mean()

    def previous_scores(self, old: torch.Tensor, head, task: int) -> torch.Tensor:
        """The previous model's scores over the units it could label: the head's units, and in
        class-IL with only the seen units active, those of the tasks before ``task``."""
        scenario = self.ctx.scenario
        if scenario.kind == "class" and scenario.class_il_units == "seen":
            return old[:, : task * scenario.classes_per_task]
        return self.ctx.active_logits(old, head)

    def replay_class_probs(self, old: torch.Tensor, head, task: int) -> torch.Tensor:
        """Each replayed sample's class distribution over all classes (prior modes, gates):
        one-hot of the previous model's prediction, or its softmax at T when distilling."""
        scores = self.previous_scores(old, head, task)
        if self.params["distill"]:
            probs = F.softmax(scores / self.params["temperature"], dim=1)
        else:
            probs = F.one_hot(scores.argmax(1), scores.shape[1]).float()
        scenario = self.ctx.scenario
        offset = 0
        if scenario.kind == "task":
            offset = head * scenario.classes_per_task  # int or per-sample tensor
        if isinstance(offset, torch.Tensor):
            out = torch.zeros(len(probs), self.n_classes, device=probs.device)
            cols = offset.unsqueeze(1) + torch.arange(probs.shape[1], device=probs.device)
            return out.scatter(1, cols, probs)
        return F.pad(probs, (offset, self.n_classes - offset - probs.shape[1]))

    # ---- for tests and inspection -------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """``n`` replayed inputs as the next step would draw them (advances the generator)."""
        if self.previous is None:
            raise ValueError("nothing to replay before the first task is learned")
        return self.generate(n)[0]


class _Features(nn.Module):
    """A classifier's feature extractor as a module (the encoder of replay-through-feedback)."""

    def __init__(self, classifier: ContinualModel) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(x)


def _cpu_gen(ctx) -> torch.Generator:
    """The gates' generator: masks are drawn on the CPU (then moved with the model), seeded
    from ``train_seed`` so that they are the same on every device."""
    return torch.Generator().manual_seed(ctx.new_generator("gates").initial_seed())
