"""One sweep per folder: a lock file that works on NFS and frees itself when its holder dies.

Why a lock file and not ``flock``/``fcntl``: on NFS those depend on the lock manager (NLM, or
NFSv4 state), which is often disabled (``nolock`` mounts: the lock is then local to each client,
and two machines both "hold" it), and a crashed client's locks linger until the server notices.
What NFS does guarantee (v3 and later) is that ``open(O_CREAT | O_EXCL)`` and ``rename`` are atomic
on the server, so:

- taking the lock is creating ``.sweep.lock`` exclusively; it records the host, the boot id, the
  pid namespace, the pid and that process's start time, and a random token;
- while the sweep runs, a thread renews the claim every :data:`HEARTBEAT_S` seconds: it opens
  the file, checks that it still holds this sweep's token and only then touches *that open file*
  (so it can never keep another sweep's lock fresh);
- a lock is stale when its holder is provably dead: on the same machine (same boot id and pid
  namespace) when no process with that pid and start time exists, or the machine rebooted;
  from another machine, when its heartbeat is older than :data:`STALE_AFTER_S`. Ages are measured
  on the file server's clock (the mtime of a file touched just now), so client clocks that
  disagree do not matter. A lock file that cannot be read yet (a contender between creating it
  and writing its holder) is judged by its age too;
- a stale lock is broken by renaming it aside (one contender wins the rename) and checking the
  token of what was renamed, so a lock taken in the meantime by another contender is put back.

The lock is released on a clean exit; after ``kill -9`` it stays until the next start finds its
holder dead, which is immediate on the same machine.

A lost claim. A holder on another machine whose file system stalls for longer than
:data:`STALE_AFTER_S` (an NFS server that hangs, a paused VM) looks dead, and a second sweep may
break its lock. When the stalled holder wakes up, its next renewal finds a token that is not its
own: the claim is lost and the sweep stops at once (``on_lost``; by default one ``error:`` line
and ``os._exit``, so no ``finally`` block writes a compaction or a sweep.json into a folder that
is now another sweep's; the sweep's watchdog then ends the Ray processes it started). Writers call
:meth:`SweepLock.check` right before each write: it renews the claim, so a write never follows a
stall unchecked. What no lock file can close is a stall that falls between that check and the
write itself; it would have to outlast :data:`STALE_AFTER_S` there.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from cl_core.errors import ClsweepError
from contract.schema import LOCK_FILE

HEARTBEAT_S = 10.0
STALE_AFTER_S = 60.0
EXIT_LOST = 2  # the exit code of a sweep that lost its lock (an error line, as for usage errors)


class LockHeld(ClsweepError):
    """Another live sweep holds the folder."""


class LockLost(ClsweepError):
    """This sweep no longer holds its folder: another sweep broke its lock while it stalled."""


def stop_process(lost: LockLost) -> NoReturn:
    """The default reaction to a lost claim: one line on stderr, then end the process without
    running ``finally`` blocks or exit handlers, so that nothing more is written."""
    with contextlib.suppress(Exception):
        sys.stderr.write(f"error: {lost}\n")
        sys.stderr.flush()
    os._exit(EXIT_LOST)


@dataclass(frozen=True)
class Holder:
    host: str
    boot_id: str
    pid_ns: str
    pid: int
    pid_start: str
    started_at: str
    token: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, since {self.started_at}"


def _parse(text: str | bytes) -> Holder | None:
    try:
        return Holder(**json.loads(text))
    except (ValueError, TypeError):
        return None


def _read(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return ""


def boot_id() -> str:
    return _read("/proc/sys/kernel/random/boot_id")


def pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


def process_start(pid: int) -> str:
    """The start time of ``pid`` in clock ticks since boot (field 22 of /proc/<pid>/stat);
    "" if there is no such process (or no /proc). Guards against a recycled pid."""
    text = _read(f"/proc/{pid}/stat")
    if not text:
        return ""
    return text.rsplit(")", 1)[1].split()[19]


def pid_alive(pid: int, start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    now = process_start(pid)
    return not start or not now or now == start


def me(token: str) -> Holder:
    pid = os.getpid()
    return Holder(
        host=socket.gethostname(),
        boot_id=boot_id(),
        pid_ns=pid_namespace(),
        pid=pid,
        pid_start=process_start(pid),
        started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        token=token,
    )


class SweepLock:
    """The lock of one sweep folder; ``acquire`` raises LockHeld if a live sweep holds it.

    ``on_lost`` is called once, from the heartbeat thread or from :meth:`check`, when the claim
    turns out lost; the default, :func:`stop_process`, ends the process.
    """

    def __init__(self, folder: Path, on_lost: Callable[[LockLost], None] | None = None) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.token = ""
        self.on_lost = on_lost or stop_process
        self.lost: LockLost | None = None
        self._renewed = 0.0  # time.monotonic() of the last renewal that found our token
        self._guard = threading.Lock()  # one renewal at a time (heartbeat and check())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- taking and giving back ------------------------------------------------------------------

    def acquire(self) -> None:
        for _ in range(10):
            token = uuid.uuid4().hex
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                # A lock file not readable yet is a contender's, between its exclusive create
                # and its write: judged by its age like a lock from another machine (breaking
                # it at once handed one folder to two sweeps started together).
                holder = self.holder()
                if self.alive(holder):
                    who = holder.describe() if holder else "its lock file is being written"
                    raise LockHeld(
                        f"{self.folder} is in use by another sweep ({who}); "
                        "wait for it to end, or use --name NEW for a sweep of its own"
                    ) from None
                self._break(holder)
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump(me(token).__dict__, handle)
                handle.flush()
                os.fsync(handle.fileno())
            self.token = token
            self.lost = None
            self._renewed = time.monotonic()
            self._start_heartbeat()
            return
        raise LockHeld(f"{self.folder}: could not take the lock {self.path}; try again")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        holder = self.holder()
        if self.token and holder is not None and holder.token == self.token:
            self.path.unlink(missing_ok=True)
        self.token = ""

    def __enter__(self) -> SweepLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    # -- who holds it ----------------------------------------------------------------------------

    def holder(self) -> Holder | None:
        """The recorded holder; None if the file is missing or not (yet) readable."""
        try:
            return _parse(self.path.read_text())
        except OSError:
            return None

    def alive(self, holder: Holder | None) -> bool:
        """Whether the lock's holder may still run (see the module docstring)."""
        if (
            holder is not None
            and holder.host == socket.gethostname()
            and holder.boot_id == boot_id()
            and holder.pid_ns == pid_namespace()
            and holder.boot_id
        ):
            return pid_alive(holder.pid, holder.pid_start)
        same_host = holder is not None and holder.host == socket.gethostname()
        if same_host and holder.boot_id and holder.boot_id != boot_id():
            return False  # this machine rebooted since
        age = self._heartbeat_age()
        return age is not None and age < STALE_AFTER_S

    def _heartbeat_age(self) -> float | None:
        """Seconds since the lock file was last touched, on the file server's clock."""
        probe = self.folder / f".clock-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        try:
            probe.touch()
            now = probe.stat().st_mtime
            return now - self.path.stat().st_mtime
        except FileNotFoundError:
            return None
        finally:
            probe.unlink(missing_ok=True)

    def _break(self, stale: Holder | None) -> None:
        """Move a stale lock aside; if what moved was a fresh lock of another contender, put it
        back (another process may have broken the same stale lock a moment earlier)."""
        aside = self.path.with_name(f"{LOCK_FILE}.stale-{os.getpid()}-{uuid.uuid4().hex[:6]}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            moved = _parse(aside.read_text())
        except OSError:
            moved = None
        if moved is not None and (stale is None or moved.token != stale.token):
            with contextlib.suppress(OSError):
                os.link(aside, self.path)
        aside.unlink(missing_ok=True)

    # -- heartbeat -------------------------------------------------------------------------------

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="sweep-lock", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self.check()
            except LockLost:
                return  # on_lost has been told

    # -- the claim -------------------------------------------------------------------------------

    def check(self) -> None:
        """Renew the claim now; raise LockLost (after telling ``on_lost``) if this sweep no
        longer holds the folder. Call it right before writing into the folder.

        A file-system error while renewing is tolerated as long as the last renewal is younger
        than half of :data:`STALE_AFTER_S`: no other sweep can have judged the lock stale yet.
        """
        try:
            self._renew()
        except OSError:
            self._give_up_if_expired()

    def _renew(self) -> None:
        """Touch the lock file if it still holds our token (the touched inode is the one whose
        token was read: a file swapped in meanwhile is never refreshed); else the claim is lost."""
        with self._guard:
            if self.lost is not None:
                raise self.lost
            if not self.token:
                raise LockLost(f"{self.folder}: this sweep does not hold the folder's lock")
            whom = "(its lock file is gone)"
            try:
                fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                pass
            else:
                try:
                    holder = _parse(os.read(fd, 1 << 16))
                    if holder is not None and holder.token == self.token:
                        os.utime(fd)
                        self._renewed = time.monotonic()
                        return
                    whom = "to a lock file it cannot read"
                    if holder is not None:
                        whom = f"to another sweep ({holder.describe()})"
                finally:
                    os.close(fd)
        self._lose(f"this sweep lost the lock of {self.folder} {whom}")

    def _give_up_if_expired(self) -> None:
        """After failed renewals: the claim is lost once another sweep may judge it stale."""
        silent = time.monotonic() - self._renewed
        if silent >= STALE_AFTER_S / 2:
            self._lose(f"this sweep could not renew the lock of {self.folder} for {silent:.0f} s")

    def _lose(self, what: str) -> NoReturn:
        with self._guard:
            first = self.lost is None
            if first:
                self.lost = LockLost(
                    f"{what} (a sweep whose file system stalls for over {STALE_AFTER_S:.0f} s "
                    "looks dead to others); it stops here without writing more, so that two "
                    "sweeps never write one folder; see that folder's results once its sweep ends"
                )
            lost = self.lost
        if first:
            self.on_lost(lost)
        raise lost
