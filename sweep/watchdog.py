"""``python -m sweep.watchdog PID``: end the processes a sweep driver started once it is gone.

A local Ray is a tree of processes under the driver (GCS, raylet, agents, workers). When the
driver ends normally, ``ray.shutdown()`` stops them; when it is killed (SIGKILL, SIGTERM, a
closed terminal) some of them, re-parented to init, live on for minutes. The runner starts this
watchdog in a session of its own (so a signal to the driver's process group does not reach it).
It records, twice a second, every descendant of the driver with its start time; when the driver
is gone it stops (SIGSTOP) the recorded processes that still exist as the same processes (same
pid and start time, so a recycled pid is never touched), adds any children they started since,
and kills them all (SIGKILL). Processes are found by pid through /proc, never by name, so no other
Ray on the machine is touched. Only the standard library is imported: it starts in milliseconds.
Linux only (/proc); elsewhere the runner does not start it. Why: docs/design.md, "The watchdog".
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

POLL_S = 0.5


def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, start time) of every process visible in /proc."""
    table: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        table[int(entry.name)] = (int(fields[1]), fields[19])
    return table


def descendants(roots: dict[int, str], table: dict[int, tuple[int, str]]) -> dict[int, str]:
    """Every process below ``roots`` (pid -> start time), by walking parent links."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: dict[int, str] = {}
    stack = list(roots)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found and child not in roots:
                found[child] = table[child][1]
                stack.append(child)
    return found


def same_process(pid: int, start: str, table: dict[int, tuple[int, str]]) -> bool:
    return pid in table and table[pid][1] == start


def end_processes(recorded: dict[int, str]) -> list[int]:
    """Freeze the recorded processes still alive, take in their children, kill them all."""
    me = os.getpid()
    table = process_table()
    targets = {p: s for p, s in recorded.items() if same_process(p, s, table) and p not in (1, me)}
    frozen: set[int] = set()
    while True:
        for pid in set(targets) - frozen:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGSTOP)
            frozen.add(pid)
        table = process_table()
        more = {p: s for p, s in descendants(targets, table).items() if p not in (1, me)}
        more = {p: s for p, s in more.items() if p not in targets}
        if not more:
            break
        targets.update(more)
    for pid, start in targets.items():
        if same_process(pid, start, table):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    return sorted(targets)


def watch(driver: int) -> list[int]:
    """Record the driver's descendants until it is gone; then end them. Returns their pids."""
    table = process_table()
    if driver not in table:
        return []
    driver_start = table[driver][1]
    recorded: dict[int, str] = {}
    while same_process(driver, driver_start, table):
        recorded.update(descendants({driver: driver_start}, table))
        recorded.pop(os.getpid(), None)
        time.sleep(POLL_S)
        table = process_table()
        recorded = {p: s for p, s in recorded.items() if same_process(p, s, table)}
    return end_processes(recorded)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # outlive a Ctrl-C to be able to clean up
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python -m sweep.watchdog DRIVER_PID", file=sys.stderr)
        return 2
    watch(int(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
