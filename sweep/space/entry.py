"""``from_entry: FILE`` in a space: the fixed settings of a registry entry (docs/registry.md).

The entry is read and verified first (its keys and integrity hash: a hand-edited entry is
refused). It then supplies what the space leaves unset: the method, the grid cell, every
training setting and the method's hyperparameters. The space's own keys win, and so does
anything it searches; seeds and the task window stay the sweep's own (they are the run's, not
the configuration's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contract.registry import RegistryError, read_entry
from sweep.errors import SpaceError, shown
from sweep.space.keys import TRAIN_KEYS

NOT_FROM_ENTRY = ("data_seed", "train_seed", "task_start", "task_stop")
"""Settings an entry holds for its own run that a new sweep does not inherit."""


def apply_entry(raw: dict[str, Any], space_file: Path, label: str) -> None:
    """Fill ``raw`` from the entry its ``from_entry`` names (in place)."""
    if "from_entry" not in raw:
        return
    given = raw.pop("from_entry")
    if not isinstance(given, str) or not given:
        fix = "write e.g. `from_entry: registry/split-mnist/class-5/ewc.end-of-sequence.yaml`"
        raise SpaceError(label, "from_entry", f"expected a file path, got {shown(given)}", fix)
    path = Path(given).expanduser()
    if not path.is_absolute() and not path.exists():
        path = space_file.parent / path  # relative to the space file
    try:
        entry = read_entry(path)
    except RegistryError as exc:
        raise SpaceError(label, "from_entry", str(exc), "see docs/registry.md") from None
    config = entry["config"]
    method = raw.setdefault("method", config["method"])
    if method != config["method"]:
        raise SpaceError(
            label,
            "from_entry",
            f"the entry {path} holds {config['method']}'s settings; the space names "
            f"{shown(method)}",
            f"set method: {config['method']} or remove `method` to take the entry's",
        )
    raw.setdefault(
        "grid",
        {key: config[key] for key in ("benchmark", "scenario", "n_tasks")},
    )
    searched = set(raw.get("search") or {})
    train = raw.setdefault("train", {})
    hyperparams = raw.setdefault("hyperparams", {})
    if not isinstance(train, dict) or not isinstance(hyperparams, dict):
        return  # the validator names the malformed section
    for key, value in config.items():
        if value is None and key not in ("epochs", "iterations"):
            continue  # not recorded (an older schema): the default
        if key in TRAIN_KEYS and key not in NOT_FROM_ENTRY and key not in searched:
            train.setdefault(key, list(value) if isinstance(value, tuple) else value)
    for key, value in (config.get("method_params") or {}).items():
        if key not in searched:
            hyperparams.setdefault(key, value)
