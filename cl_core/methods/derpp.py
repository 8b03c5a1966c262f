"""DER++ (Buzzega et al. 2020, "Dark Experience for General Continual Learning: a Strong,
Simple Baseline", NeurIPS, eq. 6): DER plus cross-entropy on stored labels.

    L = CE(current batch) + α · MSE(h_θ(x'), z') + β · CE(h_θ(x''), y''),
with (x', z') and (x'', y'') two independent draws from the reservoir memory (see ``der.py``;
the same units, capacity rule and stored logits). The replayed cross-entropy scores each sample
on its own task's active units with its stored target, as the current batch's does.

Defaults α = 1.0, β = 0.5: the paper's best Seq-MNIST configuration (its appendix; Mammoth's
``best_args.py``) at buffer 500, the published size nearest to our 1,000 slots.
"""

from __future__ import annotations

import torch

from cl_core.context import member_cross_entropy
from cl_core.methods.der import DER, weight_hyperparam
from cl_core.methods.memory import Fields


class DERpp(DER):
    """DER with a second replayed batch trained on its stored labels."""

    name = "derpp"
    stability = ("alpha", "beta")
    n_draws = 2
    hyperparams = {
        **DER.hyperparams,
        "beta": weight_hyperparam("beta", 0.5, "weight β of the replayed cross-entropy term"),
    }

    def replay_loss(self, logits: list[torch.Tensor], draws: list[Fields]) -> torch.Tensor:
        second = draws[1]
        active = self.ctx.active_logits(logits[1], second["task"])
        ce = member_cross_entropy(active, second["target"])
        return super().replay_loss(logits, draws) + self.column("beta") * ce
