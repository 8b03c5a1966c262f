"""The folder lock: one holder at a time; freed when its holder dies, here or on another host; a
holder that finds its claim lost (another sweep broke the lock while it stalled) stops writing."""

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
from sweep.lock import LockHeld, LockLost, SweepLock


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


def test_a_lock_file_being_written_is_not_broken(tmp_path):
    """Two sweeps started together: one has created the lock file and not yet written it. The
    other must be refused, not break the lock (it once did, and both ran into one folder)."""
    path = tmp_path / ".sweep.lock"
    path.touch()  # created exclusively a moment ago, holder not written yet
    with pytest.raises(LockHeld, match="in use by another sweep .its lock file is being written"):
        SweepLock(tmp_path).acquire()
    assert path.read_text() == ""  # left as it was for its writer
    old = time.time() - lockmod.STALE_AFTER_S - 5
    os.utime(path, (old, old))  # never written: a contender that died mid-way; stale
    with SweepLock(tmp_path) as taken:
        assert json.loads(taken.path.read_text())["pid"] == os.getpid()


def test_breaking_an_unreadable_lock_puts_back_a_contenders_fresh_one(tmp_path):
    """Between judging an unreadable lock stale and moving it aside, a contender may have taken
    the folder: what was moved is put back."""
    path = tmp_path / ".sweep.lock"
    write_holder(path)  # the contender's lock, now in place
    SweepLock(tmp_path)._break(None)  # judged on the unreadable file that was there before
    assert json.loads(path.read_text())["token"] == "someone-else"


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


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_lost_claim_is_found_and_the_new_lock_never_refreshed(tmp_path, monkeypatch):
    """Another sweep broke the lock (moved it aside) and took the folder: the first holder's
    next heartbeat finds a token that is not its own, says so once, and stops touching the file."""
    monkeypatch.setattr(lockmod, "HEARTBEAT_S", 0.05)
    lost: list[LockLost] = []
    held = SweepLock(tmp_path, on_lost=lost.append)
    held.acquire()
    os.rename(held.path, tmp_path / "aside")
    write_holder(held.path, token="theirs", host="elsewhere", pid=4242)
    old = time.time() - 30
    os.utime(held.path, (old, old))
    wait_until(lambda: lost)
    time.sleep(0.3)  # several more beats
    assert held.path.stat().st_mtime == old  # the other sweep's lock was never kept fresh
    assert "lost the lock of" in str(lost[0]) and "another sweep (pid 4242 on elsewhere" in str(
        lost[0]
    )
    with pytest.raises(LockLost, match="without writing more"):
        held.check()  # what a writer calls before each write
    assert len(lost) == 1  # told once
    held.release()
    assert json.loads(held.path.read_text())["token"] == "theirs"  # not removed


def test_check_renews_the_claim_while_it_holds(tmp_path, monkeypatch):
    monkeypatch.setattr(lockmod, "HEARTBEAT_S", 60.0)  # no heartbeat during the test
    with SweepLock(tmp_path, on_lost=pytest.fail) as held:
        old = time.time() - 30
        os.utime(held.path, (old, old))
        held.check()
        assert time.time() - held.path.stat().st_mtime < 5


def test_a_lock_that_cannot_be_renewed_is_given_up_before_others_may_break_it(
    tmp_path, monkeypatch
):
    """Renewal errors are tolerated for half the stale time (no one may break the lock yet),
    then the claim counts as lost."""
    monkeypatch.setattr(lockmod, "HEARTBEAT_S", 0.05)
    monkeypatch.setattr(lockmod, "STALE_AFTER_S", 1.0)
    lost: list[LockLost] = []
    held = SweepLock(tmp_path, on_lost=lost.append)
    held.acquire()
    held.path.unlink()
    held.path.mkdir()  # opens, but cannot be read: an I/O error on every renewal
    held.check()  # just renewed: still safe to write
    assert not lost
    wait_until(lambda: lost)
    assert "could not renew the lock of" in str(lost[0])
    with pytest.raises(LockLost):
        held.check()
    held.release()
    held.path.rmdir()


# A holder "on another machine" (its lock names another host, so it is judged by its heartbeat):
# it writes one row per line read from stdin, each after lock.check(), as the sweep's writers do.
STALLING_HOLDER = """
import dataclasses, json, sys
from pathlib import Path
from sweep import lock as lockmod

lockmod.HEARTBEAT_S, lockmod.STALE_AFTER_S = 0.1, 1.0
real_me = lockmod.me
lockmod.me = lambda token: dataclasses.replace(real_me(token), host="node-a", boot_id="boot-a")
folder = Path(sys.argv[1])
lock = lockmod.SweepLock(folder)
lock.acquire()
print("held", flush=True)
for line in sys.stdin:
    lock.check()
    with open(folder / "rows.jsonl", "a") as rows:
        rows.write(json.dumps({"row": int(line), "by": "first"}) + "\\n")
    print("wrote", int(line), flush=True)
"""


@pytest.mark.parametrize("write_pending", [False, True], ids=["idle", "write-pending"])
def test_a_stalled_holder_whose_lock_was_broken_stops_without_writing(
    tmp_path, monkeypatch, write_pending
):
    """The first sweep stalls (SIGSTOP: an NFS hang, a paused machine) past the stale time; a
    second sweep breaks its lock and goes on writing rows. When the first wakes up it stops with
    one error line, whether it was idle or about to write: every row is written once."""
    monkeypatch.setattr(lockmod, "HEARTBEAT_S", 0.1)
    monkeypatch.setattr(lockmod, "STALE_AFTER_S", 1.0)
    first = subprocess.Popen(
        [sys.executable, "-c", STALLING_HOLDER, str(tmp_path)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    second = SweepLock(tmp_path, on_lost=pytest.fail)
    try:
        assert first.stdout.readline() == "held\n"
        for row in range(3):
            first.stdin.write(f"{row}\n")
            first.stdin.flush()
            assert first.stdout.readline() == f"wrote {row}\n"
        first.send_signal(signal.SIGSTOP)
        if write_pending:  # a row on its way when the stall began
            first.stdin.write("3\n")
            first.stdin.flush()
        with pytest.raises(LockHeld):
            second.acquire()  # the first's heartbeat is still fresh
        deadline = time.monotonic() + 20
        while True:  # until the first's heartbeat is older than STALE_AFTER_S
            try:
                second.acquire()
                break
            except LockHeld:
                assert time.monotonic() < deadline, "the stalled lock was never broken"
                time.sleep(0.1)
        with open(tmp_path / "rows.jsonl", "a") as rows:
            for row in range(3, 6):
                second.check()
                rows.write(json.dumps({"row": row, "by": "second"}) + "\n")
        first.send_signal(signal.SIGCONT)
        code = first.wait(timeout=30)
        out, err = first.communicate()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert code == lockmod.EXIT_LOST
    assert err.count("\n") == 1 and err.startswith("error: this sweep lost the lock of"), err
    assert f"to another sweep (pid {os.getpid()} on " in err
    assert out == ""  # the pending row was not written
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert [r["row"] for r in rows] == [0, 1, 2, 3, 4, 5]
    assert [r["by"] for r in rows] == ["first"] * 3 + ["second"] * 3
    assert second.holder().token == second.token  # the first neither removed nor refreshed it
    second.check()
    second.release()
    assert not second.path.exists()


def test_the_results_store_checks_the_claim_before_every_write(tmp_path):
    """The runner sets the store's before_write to the lock's check(): a sweep whose lock was
    taken by another writes no Parquet part and compacts nothing."""
    from sweep_helpers import TINY_SPACE, write_space

    from sweep.results import ResultsStore
    from sweep.space import load_space

    spec = load_space(write_space(tmp_path, TINY_SPACE))
    folder = tmp_path / "sweep"
    folder.mkdir()
    lost: list[LockLost] = []
    held = SweepLock(folder, on_lost=lost.append)
    held.acquire()
    store = ResultsStore(spec, folder)
    store.before_write = held.check
    write_holder(held.path, token="another-sweeps")  # broken and taken while this one stalled
    with pytest.raises(LockLost, match="lost the lock"):
        store.add({"trial_id": "t1"}, [])
    with pytest.raises(LockLost):
        store.compact()
    assert len(lost) == 1 and not (folder / "trials.parquet").exists()
    held.release()
    assert held.path.exists()  # the other sweep's lock is left alone
