"""Brain-inspired replay (van de Ven, Siegelmann & Tolias 2020, Nat. Commun.), each of its
components a switch so that ablations are sweepable (see generative_replay.py for the loss).

Defaults are the three-scenario code base's for Split MNIST (``--brain-inspired``;
params/param_values.py): replay through feedback, conditional replay (one prior mode per class),
gating of the decoder by class (by task in domain-IL) with a fraction 0.1 of each decoder layer's
units switched off per class (0 in task-IL, where the reference leaves gates off), distillation
at T = 2, z = 100. Internal replay is off by default: in that code base it replays the output of
pre-trained, frozen convolutional layers and has no effect on an MLP; here it is available as
replay of the first hidden layer, which is frozen once the first task is learned.
"""

from __future__ import annotations

from cl_core.methods.generative_replay import DISTILL, TEMPERATURE, Z_DIM, GenerativeReplay
from cl_core.params import HyperParam


class BIR(GenerativeReplay):
    """Generative replay through feedback, conditional, gated, internal, distilled."""

    name = "bir"
    hyperparams = {
        p.name: p
        for p in (
            HyperParam("feedback", "bool", True, "the VAE's encoder is the classifier's layers"),
            HyperParam("conditional", "bool", True, "Gaussian-mixture prior, one mode per class"),
            HyperParam("gating", "bool", True, "gate the decoder's units per class (domain: task)"),
            HyperParam(
                "gate_prop", "float", 0.1, "fraction of decoder units gated off", low=0.0, high=0.99
            ),
            HyperParam("internal", "bool", False, "replay the first hidden layer, not pixels"),
            HyperParam(DISTILL.name, "bool", True, DISTILL.help),
            TEMPERATURE,
            Z_DIM,
        )
    }
