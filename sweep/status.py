"""The console status of a running sweep: one line for the whole, one per cell, every few seconds.

    [ewc 0:02:13] 37/120 trials done, 2 running, 81 to go; ETA 0:05:10
      ewc permuted-digits/domain/3  search  12/20 done, 1 running  best val_avg_acc 0.8123
      ewc permuted-digits/class/3   final    2/3  done, 1 running  best val_avg_acc 0.4411

The ETA divides the trials left by the rate at which trials ended in this run; final-phase trials
count as planned (top_k x seeds) until their search has ended. Printed when something changed,
at most every :data:`EVERY_S` seconds, and at least every :data:`QUIET_S` seconds. The best value
is in percent to 0.1 (percentage points for a difference such as forgetting), as in the report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sweep.units import SweepState

from contract.formatting import format_pm

EVERY_S = 5.0
QUIET_S = 60.0


def clock(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def progress(state: SweepState) -> list[dict[str, Any]]:
    """Per unit of ``state``: phase, trials done and planned, running, best value so far."""
    spec = state.spec
    out = []
    for unit in state.units:
        record = state.store.studies[(unit.method, unit.cell.key)]
        if not unit.search_ended:
            phase, done, total = "search", record.search_done, spec.trials
        elif unit.finals or any(r.plan.phase == "final" for r in unit.running.values()):
            phase, done, total = "final", record.final_done, unit.final_planned
        elif unit.final_planned:
            phase, done, total = "done", record.final_done, unit.final_planned
        else:  # no final phase: the search's count, not 0/0
            phase, done, total = "done", record.search_done, spec.trials
        planned_finals = spec.final_top_k * spec.final_seeds
        out.append(
            {
                "label": unit.label,
                "phase": phase,
                "done": done,
                "total": total,
                "running": len(unit.running),
                "best": record.best,
                "search_done": record.search_done,
                "final_done": record.final_done,
                "search_total": spec.trials,
                "final_total": unit.final_planned if unit.search_ended else planned_finals,
            }
        )
    return out


def status_text(
    name: str,
    metric: str,
    rows: list[dict[str, Any]],
    elapsed_s: float,
    ended_this_run: int,
) -> str:
    """The status block for ``rows`` (:func:`progress`)."""
    done = sum(r["search_done"] + r["final_done"] for r in rows)
    running = sum(r["running"] for r in rows)
    total = sum(r["search_total"] + r["final_total"] for r in rows)
    to_go = max(total - done, 0)
    if ended_this_run and elapsed_s > 0 and to_go:
        eta = f"ETA {clock(to_go * elapsed_s / ended_this_run)}"
    else:
        eta = "ETA -" if to_go else "finishing"
    lines = [
        f"[{name} {clock(elapsed_s)}] {done}/{total} trials done, {running} running, "
        f"{to_go} to go; {eta}"
    ]
    width = max(len(r["label"]) for r in rows)
    count = max(len(str(r["total"])) for r in rows)
    for r in rows:
        best = "-" if r["best"] is None else f"{format_pm(r['best'])}%"
        lines.append(
            f"  {r['label']:<{width}}  {r['phase']:<6}  {r['done']:>{count}}/{r['total']:<{count}}"
            f" done, {r['running']} running  best {metric} {best}"
        )
    return "\n".join(lines)


class StatusPrinter:
    """Prints :func:`status_text` when it changed, throttled (see the module docstring)."""

    def __init__(self, text: Callable[[], tuple[str, str]], out: Callable[[str], None]) -> None:
        self.text = text  # returns (the block, a key that changes when the numbers change)
        self.out = out
        self.last_print = 0.0
        self.last_key = ""

    def tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_print < EVERY_S:
            return
        block, key = self.text()
        if force or key != self.last_key or now - self.last_print >= QUIET_S:
            self.out(block)
            self.last_print, self.last_key = now, key
