"""Per-task checkpoints of the whole continual-learning state of a run (M ≥ 1 members).

After every task a run (``cl_core.trainer.Run``) writes itself to one file: the model's
parameters and buffers, the optimizer's state, the method's state (Fisher and anchors, SI's path
integrals, replay memories with their stored logits, old models, generators, gates, exemplar
means, memorable points), every random stream's counter, the members still training and every
report so far. Only the data is left out (it is loaded again). A run that finds the file
continues from its last finished task and gives the numbers an uninterrupted run gives on the
same device: the random streams are counters (``cl_core.random``), so nothing else carries state.

The file is written atomically (a temporary file, then a rename), so a run killed while writing
leaves the previous checkpoint. It is a pickle (``torch.save`` of the run object): load only
checkpoints your own runs wrote, as for any pickle.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from cl_core.errors import ClsweepError

if TYPE_CHECKING:
    from cl_core.config import RunConfig


class CheckpointedRun(Protocol):
    """What this module reads and writes of a ``cl_core.trainer.Run`` (described, not imported:
    the trainer imports this module)."""

    cfgs: list[RunConfig]
    device: torch.device
    ctx: Any
    progress: Any
    protocol: dict | None

    def _resume(self, saved: Any) -> None: ...


FORMAT = 1  # raised when the layout of a checkpoint changes
CHECKPOINT_FILE = "run.pt"  # the file in a checkpoint folder (``--checkpoint-dir``)


def save_checkpoint(run: CheckpointedRun, path: Path) -> None:
    """Write ``run`` (without its data and caches) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with _without_data(run):
            payload = {
                "format": FORMAT,
                "configs": [c.to_dict() for c in run.cfgs],
                "protocol": run.protocol,
                "run": run,
            }
            torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def snapshot(run: CheckpointedRun) -> bytes:
    """The whole state of ``run`` (as a checkpoint holds it) in memory: the per-task selection
    protocol trains one task several times from the same state (cl_core.per_task)."""
    buffer = io.BytesIO()
    with _without_data(run):
        torch.save(run, buffer)
    return buffer.getvalue()


def restore(run: CheckpointedRun, state: bytes) -> None:
    """Put ``run`` back into the state of :func:`snapshot` (its data stays)."""
    run._resume(torch.load(io.BytesIO(state), map_location=run.device, weights_only=False))


@contextlib.contextmanager
def _without_data(run: CheckpointedRun) -> Iterator[None]:
    """The data, the permuted-rows cache and the progress display are not state: left out."""
    ctx = run.ctx
    dataset, permuted, progress = ctx.seq.dataset, ctx._permuted, run.progress
    ctx.seq.dataset, ctx._permuted, run.progress = None, None, None
    try:
        yield
    finally:
        ctx.seq.dataset, ctx._permuted, run.progress = dataset, permuted, progress


def load_checkpoint(
    path: Path, cfgs: list[RunConfig], device: torch.device, protocol: dict | None = None
) -> CheckpointedRun:
    """The run saved at ``path``, for configs ``cfgs`` trained under ``protocol`` (None: plain
    training; see ``Run``); a usage error if it holds another run."""
    try:
        payload = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same one-line error
        raise ClsweepError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}); remove it to start over"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ClsweepError(
            f"checkpoint {path} was written by another version of clsweep; remove it to start over"
        )
    saved = payload["configs"]
    given = [c.to_dict() for c in cfgs]
    if saved != given:
        field = _first_difference(saved, given)
        raise ClsweepError(
            f"checkpoint {path} holds another run ({field} differs); remove it or choose "
            "another checkpoint folder"
        )
    saved_protocol = payload.get("protocol")  # absent before per-task runs kept checkpoints
    if saved_protocol != protocol:
        raise ClsweepError(
            f"checkpoint {path} was written by {_protocol_text(saved_protocol)}, not by "
            f"{_protocol_text(protocol)}; remove it or choose another checkpoint folder"
        )
    return payload["run"]


def _protocol_text(protocol: dict | None) -> str:
    if protocol is None:
        return "a plain run"
    return " and ".join(
        f"{name} ({', '.join(f'{k} {v}' for k, v in settings.items())})"
        for name, settings in protocol.items()
    )


def remove_checkpoint(path: Path) -> None:
    """Remove a finished run's checkpoint."""
    Path(path).unlink(missing_ok=True)


def _first_difference(saved: list[dict], given: list[dict]) -> str:
    if len(saved) != len(given):
        return f"the number of members ({len(saved)} vs {len(given)})"
    for a, b in zip(saved, given, strict=True):
        for key in a:
            if a[key] != b.get(key):
                return f"{key} ({a[key]!r} saved, {b.get(key)!r} now)"
    return "a setting"
