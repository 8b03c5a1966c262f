"""Ray Tune + Optuna sweeps over the cl_core trainer: `python -m sweep --space ewc.yaml`."""
