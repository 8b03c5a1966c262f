"""Fine-tuning: plain sequential training, no protection (the lower bound)."""

from cl_core.methods.base import Method


class Finetune(Method):
    """Train on each task's data in turn; forgetting is left unchecked."""

    name = "finetune"
