"""clsweep's continual-learning core: data, scenarios, models, methods, trainer, metrics.

Imports torch, torchvision and numpy only; never Ray or Optuna
(docs/design.md, Packages and arrows).
"""
