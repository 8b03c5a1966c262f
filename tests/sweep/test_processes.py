"""No process a driver started outlives it: the watchdog ends them by pid when the driver dies,
whatever killed it. Checked on a plain process tree, then on a real sweep with its own Ray."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sweep_helpers import REPO, TINY_SPACE, write_space

from sweep.watchdog import POLL_S, descendants, process_table

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

TREE = """
import subprocess, sys, time
kids = [subprocess.Popen([sys.executable, "-c",
         "import subprocess, sys, time; subprocess.Popen(['sleep', '120']); time.sleep(120)"])
        for _ in range(2)]
print("ready", flush=True)
time.sleep(120)
"""


def alive(pid: int, start: str) -> bool:
    """The very process (pid and start time) still runs (a zombie does not count)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = text.rsplit(")", 1)[1].split()
    return fields[19] == start and fields[0] != "Z"


def gone_within(processes: dict[int, str], seconds: float) -> list[int]:
    """The processes still alive after ``seconds`` (waiting as soon as all are gone)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = [p for p, s in processes.items() if alive(p, s)]
        if not left:
            return []
        time.sleep(0.1)
    return [p for p, s in processes.items() if alive(p, s)]


def tree_of(pid: int) -> dict[int, str]:
    table = process_table()
    return descendants({pid: table[pid][1]}, table)


def full_tree(pid: int, size: int, seconds: float = 60) -> dict[int, str]:
    """The tree of ``pid`` once it has ``size`` processes (however slow the machine is to start
    them), then long enough for the watchdog to have seen it twice."""
    deadline = time.monotonic() + seconds
    while len(tree := tree_of(pid)) < size:
        assert time.monotonic() < deadline, f"{len(tree)} of {size} processes started"
        time.sleep(0.1)
    time.sleep(3 * POLL_S)
    return tree


def test_watchdog_ends_the_tree_of_a_killed_parent():
    parent = subprocess.Popen(
        [sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    dog = subprocess.Popen(
        [sys.executable, "-m", "sweep.watchdog", str(parent.pid)],
        cwd=REPO,
        start_new_session=True,
    )
    try:
        assert parent.stdout.readline().strip() == "ready"
        tree = full_tree(parent.pid, 4)  # two children, each with a sleep; the watchdog saw them
        assert len(tree) == 4
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        assert gone_within(tree, 30) == []  # a deadline, not a wait: it returns once all are gone
        assert dog.wait(timeout=30) == 0
    finally:
        for proc in (parent, dog):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_watchdog_never_touches_other_processes():
    """A process that is not the driver's descendant survives the driver's death."""
    bystander = subprocess.Popen(["sleep", "60"])
    parent = subprocess.Popen(
        [sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    dog = subprocess.Popen([sys.executable, "-m", "sweep.watchdog", str(parent.pid)], cwd=REPO)
    try:
        assert parent.stdout.readline().strip() == "ready"
        full_tree(parent.pid, 4)
        parent.kill()
        parent.wait()
        dog.wait(timeout=30)
        assert bystander.poll() is None
    finally:
        for proc in (bystander, parent, dog):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


SLOW_SPACE = TINY_SPACE.replace("budget: {trials: 4}", "budget: {trials: 40}")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_no_ray_process_outlives_a_killed_driver(tmp_path, sig):
    """A real sweep with its own local Ray; the driver alone (not its process group) is killed.
    Every process it started (Ray's GCS, raylet, agents, workers, the watchdog) is gone within
    a few seconds; they are found and checked by pid and start time, never by name."""
    space = write_space(tmp_path, SLOW_SPACE, "procs.yaml")
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    driver = subprocess.Popen(
        [sys.executable, "-m", "sweep", "--space", str(space), "--out", str(tmp_path / "out")],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    parts = tmp_path / "out" / "procs" / "trials.parquet"
    try:
        deadline = time.monotonic() + 240
        while not (parts.is_dir() and any(parts.iterdir())):
            assert driver.poll() is None, "the sweep ended before a trial finished"
            assert time.monotonic() < deadline, "no trial finished in time"
            time.sleep(0.2)
        tree = tree_of(driver.pid)
        assert len(tree) >= 4, tree  # Ray's processes and the watchdog
        os.kill(driver.pid, sig)
        driver.wait(timeout=60)
        left = gone_within(tree, 30)
        assert left == [], [Path(f"/proc/{p}/cmdline").read_bytes()[:80] for p in left]
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()


SHUTDOWN = """
import os, sys
sys.path.insert(0, os.getcwd())
from ray._private import ray_constants, worker
from sweep.resources import Capacity
from sweep.runner import Options, _init_ray, shutdown_ray
assert _init_ray(Options(), Capacity(1, 0))
processes = [info.process for infos in worker._global_node.all_processes.values() for info in infos]
(monitor,) = [info.process for info in worker._global_node.all_processes[
    ray_constants.PROCESS_TYPE_MONITOR]]
shutdown_ray()
print(monitor.returncode, *sorted({p.pid for p in processes}))
"""


def test_a_finished_sweep_ends_its_ray_without_waiting_on_the_monitor():
    """``shutdown_ray`` kills the local instance's idle autoscaler monitor (SIGKILL: not the
    graceful exit Ray would wait a second for), then Ray's own shutdown ends the rest: no process
    of the instance is left."""
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    done = subprocess.run(
        [sys.executable, "-c", SHUTDOWN], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    code, *pids = map(int, done.stdout.split())
    assert code == -signal.SIGKILL
    assert len(pids) >= 3  # GCS, raylet, monitor and Ray's other processes
    left = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    assert left == []
