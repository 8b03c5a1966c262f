"""Why a trial's worker failed, in one line: a lost node, a preemption, a dead worker.

The trainables turn every exception of a run into a report (sweep/trainable.py), so the only
failures Tune itself sees are of the infrastructure: the worker process or its node went away.
Tune then retries the trial from its last checkpoint (``resources.max_failures``) and the driver
says so in one line (:func:`restart_line`) instead of Ray's stack trace; once the retries are
spent the trial's row is an error whose message starts with its cause (:func:`give_up_message`),
and a cause in :data:`RERUN_CAUSES` is run again by ``--resume`` (contract.schema.lost_to_node).
"""

from __future__ import annotations

import re
import socket

from contract.schema import NODE_LOST, NODE_PREEMPTED, RERUN_CAUSES, WORKER_DIED

OUT_OF_MEMORY = "worker killed for lack of memory"

__all__ = ["NODE_LOST", "NODE_PREEMPTED", "OUT_OF_MEMORY", "RERUN_CAUSES", "WORKER_DIED"]

_IP = re.compile(r"(?:\bip: |Node IP: )([0-9a-fA-F.:]+[0-9a-fA-F])")


def cause_of(error: BaseException | str | None, node_gone: bool | None = None) -> tuple[str, str]:
    """(cause, where) of a failure Tune saw: the cause is one of the constants above, or the
    error's last line; ``where`` names the node's address when Ray gave one ("" otherwise).

    ``node_gone`` (:func:`node_gone`): whether the node the trial last reported from is gone.
    A node that dies is often seen first as a closed connection to the trial's worker, before
    Ray's health checks mark the node dead (seconds later), so the error text alone cannot
    tell a lost node from a dead worker."""
    text = str(error or "")
    lowered = text.lower()
    found = _IP.search(text)
    where = f"node {found.group(1)}" if found else ""
    if getattr(error, "preempted", False) or "preempt" in lowered:
        return NODE_PREEMPTED, where
    if node_gone or any(marker in lowered for marker in _NODE_MARKERS):
        return NODE_LOST, where
    if "memory" in lowered and ("oom" in lowered or "out of memory" in lowered):
        return OUT_OF_MEMORY, where
    if node_gone is False or any(marker in lowered for marker in _WORKER_MARKERS):
        return WORKER_DIED, where
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else "trial failed"), ""


_NODE_MARKERS = (
    "node has died",
    "node was terminated",
    "node it was running on is dead",
    "node is dead",
    "nodediederror",
)
_WORKER_MARKERS = (
    "worker process has died",
    "actor died",
    "owner has died",
    "is unavailable",  # the connection to the worker closed: a dead worker, if its node lives
    "socket closed",
)


def node_gone(node: str | None, timeout_s: float = 1.0) -> bool | None:
    """Whether the Ray node ``node`` (a row's ``node``: host/node id prefix) is gone: marked dead,
    or its raylet no longer accepts connections. None when unknown (no node, not found)."""
    import ray

    prefix = (node or "").rsplit("/", 1)[-1]
    if not prefix or not ray.is_initialized():
        return None
    try:
        entry = next((n for n in ray.nodes() if n["NodeID"].startswith(prefix)), None)
    except Exception:  # noqa: BLE001 - the cluster's state is unavailable: unknown
        return None
    if entry is None:
        return None
    if not entry.get("Alive", False):
        return True
    try:
        address = (entry["NodeManagerAddress"], int(entry["NodeManagerPort"]))
        socket.create_connection(address, timeout=timeout_s).close()
    except (OSError, KeyError, ValueError):
        return True
    return False


def _cause_text(cause: str, where: str) -> str:
    return f"{cause} ({where})" if where else cause


def restart_line(
    who: str, error: BaseException | str | None, restart: int, limit: int, gone: bool | None
) -> str:
    """The console line of a trial (``who``: "trial <id>", "population <id> (<ids>)") that Tune
    restarts from its checkpoint."""
    cause, where = cause_of(error, gone)
    return (
        f"{who}: {_cause_text(cause, where)}; restarting from its last finished task "
        f"(restart {restart} of {limit})"
    )


def give_up_message(
    error: BaseException | str | None, restarts: int, limit: int, gone: bool | None
) -> str:
    """The row's message of a trial whose retries are spent; it starts with the cause."""
    cause, where = cause_of(error, gone)
    text = _cause_text(cause, where)
    if cause not in (NODE_LOST, NODE_PREEMPTED, WORKER_DIED, OUT_OF_MEMORY):
        return text  # not an infrastructure failure: the error's own line
    tail = f"after {restarts} restart(s), resources.max_failures: {limit}"
    if cause in RERUN_CAUSES:
        return f"{text}; gave up {tail}; --resume runs it again"
    return f"{text}; gave up {tail}"
