"""Deep generative replay (Shin, Lee, Kim & Kim 2017, NeurIPS), as the three-scenario code base
runs it (van de Ven & Tolias 2019; docs/references.md, The three-scenario protocol).

A VAE with the classifier's hidden sizes (Split MNIST: 784-400-400 encoder, z = 100, 100-400-400-784
decoder, Bernoulli pixels) learns alongside the classifier, on the current batch and on replay
from the VAE as it was before the task; replayed samples are labelled by the previous
classifier: its hard predictions, or with ``distill`` its soft outputs at temperature T
("DGR + distillation"; T = 2). Weighting 1/(t+1) current vs 1 − 1/(t+1) replay. One hyperparameter
switches distillation, so a sweep can search over it. The mechanics are in generative_replay.py.
"""

from __future__ import annotations

from cl_core.methods.generative_replay import DISTILL, TEMPERATURE, Z_DIM, GenerativeReplay


class DGR(GenerativeReplay):
    """Replay from a separate VAE, standard prior, labels from the previous classifier."""

    name = "dgr"
    hyperparams = {p.name: p for p in (DISTILL, TEMPERATURE, Z_DIM)}
