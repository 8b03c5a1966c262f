"""Whether Ctrl-C stopped a Tune run.

Tune turns SIGINT into a graceful stop (its state saved, ``fit()`` returns) and re-installs the
handler it found. Ray's workers get the same SIGINT and die, so the trials running then end as
errored, and counting ended trials cannot tell an interruption from a finished phase. A marker
handler installed before ``fit()`` settles it: finding the marker back means Tune caught SIGINT.
Trials killed that way are not failures; they are left for ``--resume``.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


def _marker(signum, frame) -> None:  # reached only by a second Ctrl-C after Tune's
    raise KeyboardInterrupt


@contextmanager
def watching_sigint() -> Iterator[None]:
    """Install the marker for the duration of a ``fit()`` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, _marker)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def sigint_received() -> bool:
    """True once Tune has caught a SIGINT inside ``watching_sigint``."""
    return signal.getsignal(signal.SIGINT) is _marker
