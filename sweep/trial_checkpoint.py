"""A trial's checkpoint in Tune's storage, so that a trial whose node dies continues elsewhere.

The cl_core run writes its whole state after every task into a local folder (cl_core/checkpoint.py:
``run.pt`` for one run, ``group-<k>.pt`` per group of a population); each report to Tune carries
that folder as its checkpoint, which Tune copies into the trial's folder in the sweep's storage
(shared storage on a cluster) and keeps only the latest of (``CheckpointConfig(num_to_keep=1)``).
When Tune restarts the trial (``FailureConfig``), :class:`TrialCheckpoint` fetches it back
(``tune.get_checkpoint``) and the run continues from its last finished task.

A restarted run first replays the rounds it had already done (``cl_core.trainer.Run.history``);
``trial.json`` says how many rounds the trial had yielded when the checkpoint was reported, so
those are tracked but never reported again: no duplicate rows, intermediate values or ASHA reports.
It also keeps the trial's start time, the run time before the restart and the CPU and GPU seconds
spent until then (:mod:`sweep.cost`), for the trial's row.

Only ``ray.tune``'s ``report``/``get_checkpoint`` are used: the ``ray.train`` versions raise inside
a Tune trainable.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ray import tune

META_FILE = "trial.json"


class TrialCheckpoint:
    """The local folder a trial's run checkpoints into; restored from Tune's latest checkpoint
    when the trial is a restart (``restored``)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="clsweep-trial-"))
        self.rounds = 0  # rounds yielded when the restored checkpoint was reported (replayed)
        self.started_at: str | None = None
        self.wall_s = 0.0
        self.spent: dict[str, Any] = {}  # the cost meter's seconds when it was reported
        self.restored = False
        saved = tune.get_checkpoint()
        if saved is None:
            return
        with saved.as_directory() as folder:
            for item in Path(folder).iterdir():
                if item.is_file():
                    shutil.copy2(item, self.dir / item.name)
        meta = json.loads((self.dir / META_FILE).read_text())
        self.rounds = int(meta["rounds"])
        self.started_at = meta["started_at"]
        self.wall_s = float(meta["wall_s"])
        self.spent = meta.get("spent") or {}  # (checkpoints written before it have none)
        self.restored = True

    def resume(self, tracker: Any) -> None:
        """Give a restarted trial's tracker its first start, and the run time and the CPU and
        GPU time it had spent before."""
        if self.restored:
            tracker.started_at = self.started_at
            tracker.start = time.perf_counter() - self.wall_s
            tracker.cost.carry(self.spent)

    def report(self, metrics: dict[str, Any], rounds: int, tracker: Any) -> None:
        """Report ``metrics`` with the folder as the checkpoint; ``rounds``: rounds yielded so
        far (the run's file holds as many in its history)."""
        wall = time.perf_counter() - tracker.start
        meta = {"rounds": rounds, "started_at": tracker.started_at, "wall_s": wall}
        meta["node"] = tracker.node  # where it ran last (for a person reading the folder)
        meta["spent"] = tracker.cost.spent()
        (self.dir / META_FILE).write_text(json.dumps(meta))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(self.dir)))

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> TrialCheckpoint:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
