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

The loss of a step on task t (0-based), with the three-scenario weighting (docs/references.md):
    L = 1/(t+1) · L_current + (1 − 1/(t+1)) · L_replay,
each part the classifier's loss (cross-entropy on current data; cross-entropy on hard or
distillation on soft targets for replay, no T² factor, as the three-scenario code base) plus
the VAE's −ELBO / D (see cl_core.models.vae). Replayed batches have the size of the current
batch. Every random draw (latent noise, sampled classes, gates) uses the method's own random
streams, so a run is deterministic under ``train_seed`` and replay never shifts the batch order.
Members of a population differ in the temperature and the gates' fraction; each has its own
VAE, gates and replay.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cl_core.context import member_cross_entropy
from cl_core.errors import ClsweepError
from cl_core.methods.base import Method
from cl_core.models import ModelFactory, StackedMLP, StackedModel
from cl_core.models.stacked import StackedParameters, linear, template_tensors
from cl_core.models.vae import VAESpec, pixel_observation
from cl_core.params import HyperParam

TEMPERATURE = HyperParam(
    "temperature", "float", 2.0, "distillation temperature T", low=0.0, high=100.0, low_open=True
)
DISTILL = HyperParam("distill", "bool", False, "soft targets at temperature T (distillation)")
Z_DIM = HyperParam("z_dim", "int", 100, "latent units of the VAE", low=1, high=10_000)


class ReplayModel(StackedModel):
    """Classifier ``head(upper(lower(x)))`` plus a VAE over the replay level ``lower(x)``, all
    members' parameters in one store (the classifier computes with it too).

    ``lower`` is the identity unless replay is internal (then the first hidden layer). With
    feedback the VAE's encoder *is* ``upper`` (shared parameters), so the classifier is the
    VAE's encoder plus one layer.
    """

    def __init__(
        self,
        classifier: StackedModel,
        spec: VAESpec,
        vae_templates: list,
        internal: bool,
        feedback: bool,
        masks: list[torch.Tensor] | None,
    ) -> None:
        shapes = {**classifier.store.shapes, **spec.shapes()}
        store = StackedParameters(shapes, classifier.size, classifier.theta.device)
        with torch.no_grad():
            for name, cols in classifier.store.slices.items():
                store.theta[:, store.slices[name]] = classifier.theta[:, cols]
        rename = spec.rename()
        for m, template in enumerate(vae_templates):
            store.load(m, template_tensors(template, rename))
        super().__init__(store)
        classifier.store = store  # the classifier reads its parameters from the joint store
        self.classifier = classifier
        self.spec = spec
        self.internal, self.feedback = internal, feedback
        self.n_masks = 0 if masks is None else len(masks)
        for k, mask in enumerate(masks or []):
            self.register_buffer(f"mask{k}", mask)

    def masks(self) -> list[torch.Tensor] | None:
        """The decoder's gates per hidden layer, (M, G, units) each, or None (no gating)."""
        if not self.n_masks:
            return None
        return [getattr(self, f"mask{k}") for k in range(self.n_masks)]

    def lower(self, x: torch.Tensor, params=None) -> torch.Tensor:
        """The replay level: the inputs, or the first hidden layer's units (internal replay)."""
        if not self.internal:
            return x
        p = self.params() if params is None else params
        return torch.relu(linear(x, p["fc0.weight"], p["fc0.bias"]))

    def upper(self, level: torch.Tensor, params=None) -> torch.Tensor:
        """The classifier's features from the replay level."""
        p = self.params() if params is None else params
        if not self.internal:
            return self.classifier.features(level, p)
        h = level
        for k in range(1, len(self.classifier.sizes) - 1):
            h = torch.relu(linear(h, p[f"fc{k}.weight"], p[f"fc{k}.bias"]))
        return h

    def features(self, x, params=None, gates=None) -> torch.Tensor:
        return self.upper(self.lower(x, params), params)

    def gated_widths(self) -> list[int]:
        return self.classifier.gated_widths()


class GenerativeReplay(Method):
    """Generative replay with BI-R's components as switches (all off: DGR)."""

    name = "generative-replay"  # abstract: DGR and BI-R register subclasses
    switches = ("feedback", "conditional", "gating", "internal")
    member_state = ("previous", "frozen_lower")

    def __init__(self, params, ctx) -> None:
        super().__init__(params, ctx)
        self.previous: ReplayModel | None = None  # the model before the current task, frozen
        self.frozen_lower: torch.Tensor | None = None  # internal replay: the first layer, fixed
        self.noise = ctx.random("vae-noise")  # reparameterisation draws in training
        self.replay_random = ctx.random("replay")  # latent draws and classes of replay
        self.replay_classes = torch.empty(0, dtype=torch.long, device=ctx.device)
        self.replay_tasks = torch.empty(0, dtype=torch.long, device=ctx.device)

    def on(self, switch: str) -> bool:
        """Whether a BI-R component is switched on (DGR declares none of them: off)."""
        return bool(self.params[0].get(switch, False))

    # ---- the model ----------------------------------------------------------------------------
    def build_model(self, factory: ModelFactory) -> ReplayModel:
        cfg, scenario = self.ctx.cfg, self.ctx.scenario
        classifier = factory()
        in_dim = math.prod(self.ctx.input_shape)
        hidden = tuple(cfg.hidden)
        if self.on("internal"):
            if not isinstance(classifier, StackedMLP) or len(hidden) < 2:
                raise ClsweepError(
                    "internal replay needs an MLP with at least two hidden layers (it replays the "
                    "first hidden layer's units); set hidden to e.g. 400,400 or internal=false"
                )
            replay_dim, enc_hidden = hidden[0], hidden[1:]
            output, observation = "linear", "gaussian"  # hidden units: real-valued
        else:
            replay_dim, enc_hidden = in_dim, hidden
            output, observation = pixel_observation(self.ctx.seq.dataset.mean is not None)
        feedback = self.on("feedback")
        spec = VAESpec(
            enc_sizes=() if feedback else (replay_dim, *enc_hidden),
            feature_dim=classifier.feature_dim if feedback else enc_hidden[-1],
            z_dim=self.shared("z_dim"),
            dec_hidden=tuple(reversed(enc_hidden)),
            out_dim=replay_dim,
            output=output,
            observation=observation,
            n_modes=self.n_classes if self.on("conditional") else 0,
        )
        templates = factory.init.each(spec.template)
        masks = None
        if self.on("gating"):
            size = scenario.n_tasks if scenario.kind == "domain" else scenario.out_units
            masks = self.draw_masks(size, spec.dec_hidden)
        return ReplayModel(classifier, spec, templates, self.on("internal"), feedback, masks)

    def draw_masks(self, size: int, widths: tuple[int, ...]) -> list[torch.Tensor]:
        """Per decoder layer an (M, size, units) mask: each class's (task's) gate keeps a unit
        with probability 1 − gate_prop (the member's own fraction)."""
        random = self.ctx.random("gates")
        prop = self.column("gate_prop").view(-1, 1, 1)
        return [(random.rand(size, units) >= prop).float() for units in widths]

    @property
    def n_classes(self) -> int:
        """Classes the prior's modes and class gates stand for: the output units (task- and
        class-IL), the within-task labels (domain-IL)."""
        return self.ctx.scenario.out_units

    # ---- a task -------------------------------------------------------------------------------
    def after_task(self, model: ReplayModel, task: int) -> None:
        """Freeze the replay level (internal replay), snapshot the model, and record which
        classes and tasks replay may now generate."""
        if self.on("internal") and self.frozen_lower is None:
            self.frozen_lower = model.theta[:, self._lower_columns(model)].detach().clone()
        self.previous = model.frozen_copy()
        scenario, device = self.ctx.scenario, self.ctx.device
        c = scenario.classes_per_task
        self.replay_tasks = torch.arange(task + 1, device=device)
        units = c if scenario.kind == "domain" else (task + 1) * c
        self.replay_classes = torch.arange(units, device=device)

    @staticmethod
    def _lower_columns(model: ReplayModel) -> slice:
        return model.store.columns(["fc0.weight", "fc0.bias"])

    @torch.no_grad()
    def after_step(self, model: ReplayModel, batch, task: int) -> None:
        """Internal replay: the first layer stays as it was when the first task ended (the
        optimizer never moves it, as if it had no gradient)."""
        if self.frozen_lower is not None:
            model.theta[:, self._lower_columns(model)] = self.frozen_lower

    def current_weight(self, task: int) -> float:
        """Weight of the current batch: 1/(t+1) with t previous tasks (the three-scenario
        protocol); ½ in a task-free stream (the reference's stream training)."""
        return 0.5 if self.ctx.task_free else 1.0 / (task + 1)

    # ---- a step -------------------------------------------------------------------------------
    def loss(self, model: ReplayModel, batch, task: int) -> torch.Tensor:
        current = self.current_loss(model, batch)
        if self.previous is None:
            return current
        w = self.current_weight(task)
        return w * current + (1 - w) * self.replay_loss(model, len(batch), task)

    def vae_loss(self, model: ReplayModel, x, features, gate, prior_weights) -> torch.Tensor:
        """The VAE's −ELBO / D on replay-level inputs ``x`` (M, n, R), (M,)."""
        p, spec = model.params(), model.spec
        eps = self.noise.randn(x.shape[1], spec.z_dim)
        features = features if model.feedback else spec.encode(p, x)
        return spec.loss(
            p, x, eps, features, gate_input=gate, masks=model.masks(), prior_weights=prior_weights
        )

    def current_loss(self, model: ReplayModel, batch) -> torch.Tensor:
        """Cross-entropy plus the VAE's −ELBO / D on the current batch, (M,)."""
        level = model.lower(batch.x)
        features = model.upper(level)
        logits = model.head(features)
        ce = self.ctx.cross_entropy(logits, batch)
        classes = self.class_of(batch.label, batch.target)
        one_hot = F.one_hot(classes, self.n_classes).float()
        gate = self.gate_input(one_hot, batch.task, len(batch))
        return ce + self.vae_loss(model, level.detach(), features, gate, one_hot)

    def class_of(self, label: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The class a sample stands for in the prior and the gates: its output unit (task- and
        class-IL: the global label), its within-task label (domain-IL)."""
        return target if self.ctx.scenario.kind == "domain" else label

    def gate_input(self, class_probs: torch.Tensor, task, n: int) -> torch.Tensor | None:
        """Per-sample gate selector (M, n, G): class probabilities, or the task one-hot in
        domain-IL."""
        if not self.on("gating"):
            return None
        if self.ctx.scenario.kind != "domain":
            return class_probs
        tasks = torch.as_tensor(task, device=self.ctx.device).expand(self.size, n)
        return F.one_hot(tasks, self.ctx.scenario.n_tasks).float()

    # ---- replay -------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``n`` replayed inputs per member (M, n, R) (at the replay level) from the previous
        model's VAE, with the classes they were drawn for (conditional or gated replay) and
        their tasks, (M, n) each."""
        prev, random = self.previous, self.replay_random
        scenario = self.ctx.scenario
        classes = tasks = None
        if self.on("conditional") or self.on("gating"):
            classes = self.replay_classes[random.randint(len(self.replay_classes), n)]
        if scenario.kind == "domain":
            tasks = self.replay_tasks[random.randint(len(self.replay_tasks), n)]
        elif classes is not None:
            tasks = classes // scenario.classes_per_task
        p = prev.params()
        z = prev.spec.sample_z(p, n, random, classes if self.on("conditional") else None)
        gate = None
        if self.on("gating"):
            one_hot = F.one_hot(classes, self.n_classes).float()
            gate = self.gate_input(one_hot, tasks, n)
        return prev.spec.decode(p, z, gate, prev.masks()), classes, tasks

    def replay_loss(self, model: ReplayModel, n: int, task: int) -> torch.Tensor:
        """The classifier's and the VAE's losses on ``n`` generated samples per member, (M,)."""
        x, _, tasks = self.generate(n)
        with torch.no_grad():
            old = self.previous.head(self.previous.upper(x))
        features = model.upper(x)
        logits = model.head(features)
        heads = self.replay_heads(task, tasks)
        ce = sum(self.replay_targets_loss(logits, old, h, task) for h in heads) / len(heads)
        probs = self.replay_class_probs(old, heads[0], task)
        gate = self.gate_input(probs, tasks if tasks is not None else 0, n)
        return ce + self.vae_loss(model, x, features, gate, probs)

    def replay_heads(self, task: int, tasks: torch.Tensor | None) -> list:
        """The heads replay is scored on: in task-IL each sample's own task when it was drawn
        for a class, else every previous task's head in turn (the three-scenario code base);
        otherwise the one shared set of units."""
        if self.ctx.scenario.kind != "task":
            return [0]
        if tasks is not None:
            return [tasks]
        return list(range(task))

    def temperature(self) -> torch.Tensor:
        """T per member, (M, 1, 1)."""
        return self.column("temperature").view(-1, 1, 1)

    def replay_targets_loss(
        self, logits: torch.Tensor, old: torch.Tensor, head, task: int
    ) -> torch.Tensor:
        """Cross-entropy on the previous model's hard labels, or distillation of its soft
        labels at temperature T: −Σ_c softmax(old/T)_c log softmax(new/T)_c, batch mean; (M,)."""
        new = self.ctx.active_logits(logits, head)
        target = self.previous_scores(old, head, task)
        if not self.shared("distill"):
            return member_cross_entropy(new, target.argmax(-1))
        temperature = self.temperature()
        soft = F.softmax(target / temperature, dim=-1)
        soft = F.pad(soft, (0, new.shape[-1] - soft.shape[-1]))  # current-task units get 0
        return -(soft * F.log_softmax(new / temperature, dim=-1)).sum(-1).mean(-1)

    def previous_scores(self, old: torch.Tensor, head, task: int) -> torch.Tensor:
        """The previous model's scores over the units it could label: the head's units, and in
        class-IL with only the seen units active, those of the tasks before ``task``."""
        scenario = self.ctx.scenario
        if scenario.kind == "class" and scenario.class_il_units == "seen":
            return old[..., : task * scenario.classes_per_task]
        return self.ctx.active_logits(old, head)

    def replay_class_probs(self, old: torch.Tensor, head, task: int) -> torch.Tensor:
        """Each replayed sample's class distribution over all classes (prior modes, gates),
        (M, n, classes): one-hot of the previous model's prediction, or its softmax at T when
        distilling."""
        scores = self.previous_scores(old, head, task)
        if self.shared("distill"):
            probs = F.softmax(scores / self.temperature(), dim=-1)
        else:
            probs = F.one_hot(scores.argmax(-1), scores.shape[-1]).float()
        scenario = self.ctx.scenario
        offset = 0
        if scenario.kind == "task":
            offset = head * scenario.classes_per_task  # int or per-sample tensor (M, n)
        if isinstance(offset, torch.Tensor):
            out = torch.zeros(*probs.shape[:-1], self.n_classes, device=probs.device)
            cols = offset.unsqueeze(-1) + torch.arange(probs.shape[-1], device=probs.device)
            return out.scatter(-1, cols, probs)
        return F.pad(probs, (offset, self.n_classes - offset - probs.shape[-1]))

    # ---- for tests and inspection -------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """``n`` replayed inputs per member as the next step would draw them (advances the
        stream)."""
        if self.previous is None:
            raise ValueError("nothing to replay before the first task is learned")
        return self.generate(n)[0]
