"""A quiet console: Ray's own messages go to a file, a failed trial is one line.

A sweep's console is for its status block and its results. Ray writes start-up warnings, INFO
lines and, when a trial fails, whole stack traces through the ``ray`` logger; :func:`ray_log_to`
sends them to ``<sweep folder>/ray.log`` instead. A failed trial then prints one line
(:class:`FailureLines`): the trial, its cause, and the file that holds its traceback (Tune's
``error.txt`` for a worker that died, the one :func:`save_traceback` writes for a run that
raised), under ``<sweep folder>/ray/run-*/<trial id>/``.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from contract.schema import ERROR, tasks_in_run

RAY_LOG = "ray.log"
"""Ray's own messages, in the sweep folder."""
ERROR_FILE = "error.txt"
"""A failed trial's traceback, in its Tune trial folder (the name Tune uses for its own)."""
GENERIC = "trial failed"
"""The message a trial gets when Tune reports a failure without a readable cause."""


@contextlib.contextmanager
def ray_log_to(path: Path) -> Iterator[Path]:
    """Send the ``ray`` logger (Ray, Tune and their children) to ``path`` instead of the
    terminal while the block runs; the file is created only when Ray first writes to it."""
    logger = logging.getLogger("ray")
    if not logger.handlers:  # Ray adds its terminal handler when first imported
        import ray  # noqa: F401
    saved = (list(logger.handlers), logger.propagate)
    handler = logging.FileHandler(path, delay=True, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.handlers = [h for h in saved[0] if not _to_terminal(h)] + [handler]
    logger.propagate = False
    printer = _RayPrinter(logger)
    try:
        yield path
    finally:
        printer.restore()
        logger.handlers, logger.propagate = saved
        handler.close()


class _RayPrinter:
    """Ray prints the raylet's error messages ("A worker died ...") to the terminal itself, not
    through its logger (``ray._private.worker.print_to_stdstream``, looked up on each call):
    while a sweep runs they go to the log file instead. Ray-internal: left alone if absent."""

    def __init__(self, logger: logging.Logger) -> None:
        import ray._private.worker as ray_worker

        self.module = ray_worker
        self.original = getattr(ray_worker, "print_to_stdstream", None)
        if self.original is not None:
            ray_worker.print_to_stdstream = lambda data, **_: logger.warning(
                "(%s) %s", data.get("pid", "ray"), "\n".join(data.get("lines", []))
            )

    def restore(self) -> None:
        if self.original is not None:
            self.module.print_to_stdstream = self.original


def _to_terminal(handler: logging.Handler) -> bool:
    stream = getattr(handler, "stream", None)
    return stream in (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__) or (
        type(handler).__name__ == "PlainRayHandler"  # writes to whatever sys.stderr is now
    )


def save_traceback(error: BaseException) -> Path | None:
    """Write ``error``'s traceback to the running Tune trial's folder (``error.txt``), so that
    the console's one line can point to it; None outside a Tune trial or if it cannot write."""
    try:
        from ray import tune

        folder = Path(tune.get_context().get_trial_dir())
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / ERROR_FILE
        path.write_text("".join(traceback.format_exception(error)))
        return path
    except Exception:  # noqa: BLE001 - a missing log must not hide the trial's own error
        return None


def trial_log(folder: Path, row: dict[str, Any]) -> Path | None:
    """The ``error.txt`` of a trial's newest Tune folder (or its population's), where Tune puts
    it by the end of the run (it may not be there yet when the trial has just failed)."""
    names = [row["trial_id"], row.get("population")]
    found = [p for name in names if name for p in (Path(folder) / "ray").glob(f"run-*/{name}")]
    if not found:
        return None
    return max(found, key=lambda p: p.stat().st_mtime) / ERROR_FILE


def failure_cause(message: str | None) -> str:
    """The cause of a failure in a few words. The trainable reports every error of a run with
    its message; a failure Tune reports without one means the worker stopped without reporting
    (a process killed or crashed)."""
    text = (message or "").strip()
    if text and text != GENERIC:
        return text.splitlines()[-1]
    return (
        "its Ray worker stopped without reporting (a killed or crashed process: out of memory, "
        "a signal, a fatal error)"
    )


def failure_line(folder: Path, row: dict[str, Any]) -> str:
    """One line for a failed trial: which, where in its run, why, and where its log is."""
    log = trial_log(folder, row)
    where = f"{row['method']} on {row['cell']}, {row['tasks_completed']}/{tasks_in_run(row)} tasks"
    text = f"failed: {row['trial_id']} ({where}): {failure_cause(row.get('message'))}"
    return text + (f"; log: {_relative(log)}" if log is not None else "")


def _relative(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


class FailureLines:
    """A :class:`sweep.results.ResultsStore` listener: one line per trial recorded as failed."""

    def __init__(self, folder: Path, out: Callable[[str], None] | None = None) -> None:
        self.folder = Path(folder)
        self.out = out or (lambda text: print(text, file=sys.stdout, flush=True))

    def __call__(self, row: dict[str, Any]) -> None:
        if row.get("status") == ERROR:
            self.out(failure_line(self.folder, row))
