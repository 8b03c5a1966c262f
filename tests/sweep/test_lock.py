"""The folder lock: one holder at a time; freed when its holder dies, here or on another host."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest
from sweep_helpers import REPO

from sweep import lock as lockmod
from sweep.lock import LockHeld, SweepLock


def write_holder(path, **changes) -> None:
    holder = {**lockmod.me("someone-else").__dict__, **changes}
    path.write_text(json.dumps(holder))


def test_second_holder_is_refused_until_the_first_releases(tmp_path):
    first = SweepLock(tmp_path)
    first.acquire()
    try:
        with pytest.raises(LockHeld, match=rf"in use by another sweep \(pid {os.getpid()} on "):
            SweepLock(tmp_path).acquire()
    finally:
        first.release()
    assert not first.path.exists()
    with SweepLock(tmp_path):
        pass


def test_lock_file_follows_the_umask(tmp_path):
    old = os.umask(0o002)
    try:
        with SweepLock(tmp_path) as held:
            assert stat.S_IMODE(held.path.stat().st_mode) == 0o664
    finally:
        os.umask(old)


def test_dead_holder_on_this_machine_is_taken_over(tmp_path):
    """SIGKILL leaves the file; its pid no longer runs, so the lock is stale at once."""
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    path = tmp_path / ".sweep.lock"
    write_holder(path, pid=holder.pid, pid_start=lockmod.process_start(holder.pid))
    with pytest.raises(LockHeld):
        SweepLock(tmp_path).acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with SweepLock(tmp_path) as taken:
        assert json.loads(taken.path.read_text())["pid"] == os.getpid()


def test_a_recycled_pid_does_not_keep_a_lock(tmp_path):
    """The pid runs, but it is another process than the one that took the lock."""
    write_holder(tmp_path / ".sweep.lock", pid=os.getpid(), pid_start="1")
    with SweepLock(tmp_path):
        pass


def test_holder_on_another_host_is_judged_by_its_heartbeat(tmp_path, monkeypatch):
    path = tmp_path / ".sweep.lock"
    write_holder(path, host="elsewhere", boot_id="other-boot", pid=1)
    with pytest.raises(LockHeld, match="on elsewhere"):
        SweepLock(tmp_path).acquire()  # touched just now: alive
    old = time.time() - lockmod.STALE_AFTER_S - 5
    os.utime(path, (old, old))
    with SweepLock(tmp_path):  # no heartbeat for longer than STALE_AFTER_S: stale
        pass


def test_heartbeat_keeps_the_file_fresh(tmp_path, monkeypatch):
    monkeypatch.setattr(lockmod, "HEARTBEAT_S", 0.05)
    with SweepLock(tmp_path) as held:
        old = time.time() - 100
        os.utime(held.path, (old, old))
        deadline = time.monotonic() + 30  # a busy machine may run the thread late, not never
        while time.time() - held.path.stat().st_mtime >= 5:
            assert time.monotonic() < deadline, "the heartbeat never touched the file"
            time.sleep(0.05)


def test_a_killed_driver_process_frees_the_lock(tmp_path):
    """A real process takes the lock and is killed with SIGKILL: the next taker gets it."""
    code = (
        "import sys, time; from pathlib import Path; from sweep.lock import SweepLock; "
        f"SweepLock(Path({str(tmp_path)!r})).acquire(); print('held', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld):
            SweepLock(tmp_path).acquire()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with SweepLock(tmp_path):
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
