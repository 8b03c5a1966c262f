"""Kill the driver mid-sweep (SIGKILL), run the same command with --resume: nothing lost,
nothing duplicated, no finished trial run again. The CLI runs in a subprocess with its own Ray."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from optuna.trial import TrialState
from sweep_helpers import REPO, TINY_SPACE, study_trials, write_space

SPACE = (
    TINY_SPACE.replace("budget: {trials: 4}", "budget: {trials: 6}").replace(
        "resources: {cpus: 1}", "resources: {cpus: 1, max_concurrent: 1}"
    )
    + "final: {top_k: 1, seeds: 2}\n"
)
CELL = "permuted-digits/domain/3"


def sweep_command(space: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "sweep", "--space", str(space), "--out", str(out), *extra]


def env() -> dict[str, str]:
    return {
        **os.environ,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONPATH": str(REPO),
    }


def rows(path: Path) -> int:
    """Rows of a results table so far (a folder of parts, one per trial until compaction)."""
    try:
        return sum(pq.read_metadata(p).num_rows for p in path.glob("*.parquet"))
    except (FileNotFoundError, OSError):
        return 0


def resume(space: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """Run the same sweep with --resume; it must finish cleanly."""
    done = subprocess.run(
        sweep_command(space, out, "--resume", *extra),
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def kill_after_first_trial(command: list[str], trials_path: Path, sig: int) -> int:
    """Start the sweep, send ``sig`` to its whole process group once a trial is in Parquet
    (as Ctrl-C in a terminal does); return the driver's exit status."""
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        env=env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 240
        while rows(trials_path) < 1:
            assert proc.poll() is None, "sweep ended before a trial finished"
            assert time.time() < deadline, "no trial finished in time"
            time.sleep(0.1)
        os.killpg(proc.pid, sig)
        return proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "storage"),
    [(signal.SIGKILL, "sqlite"), (signal.SIGINT, "sqlite"), (signal.SIGKILL, "journal")],
    ids=["SIGKILL", "SIGINT", "SIGKILL-journal"],
)
def test_resume_after_killed_driver(tmp_path, sig, storage):
    """The journal file (the studies on NFS) resumes as SQLite does; a resume keeps the
    folder's backend whatever --study-storage says."""
    space = write_space(tmp_path, SPACE, "resume.yaml")
    out = tmp_path / "out"
    folder = out / "resume"
    command = sweep_command(space, out, "--study-storage", storage)
    status = kill_after_first_trial(command, folder / "trials.parquet", sig)
    assert status == (130 if sig == signal.SIGINT else -signal.SIGKILL)
    before = pd.read_parquet(folder / "trials.parquet")
    assert 1 <= len(before) < 6

    refused = subprocess.run(
        sweep_command(space, out), cwd=REPO, env=env(), capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 2 and "--resume" in refused.stderr

    resume(space, out, "--study-storage", "sqlite")
    studies = {"sqlite": "study.db", "journal": "study.journal"}[storage]
    assert sorted(p.name for p in folder.glob("study.*")) == [studies]
    after = pd.read_parquet(folder / "trials.parquet")
    assert after.trial_id.is_unique
    assert (after.phase == "search").sum() == 6 and (after.phase == "final").sum() == 2
    # Rows written before the kill are kept as they were: the trials did not run again.
    kept = after.set_index("trial_id").loc[before.trial_id]
    for column in ("started_at", "ended_at", "objective", "hp_lambda", "status"):
        assert list(kept[column]) == list(before[column]), column
    tasks = pd.read_parquet(folder / "tasks.parquet")
    assert not tasks.duplicated(["trial_id", "tasks_learned", "task", "split"]).any()
    assert set(tasks.trial_id) == set(after.trial_id)
    # The study knows every search trial once, and nothing is left RUNNING.
    study = study_trials(folder, "ewc", CELL)
    told = [t for t in study if t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs["trial_id"] for t in told) == sorted(
        after[after.phase == "search"].trial_id
    )
    assert not [t for t in study if t.state == TrialState.RUNNING]
    doc = (folder / "sweep.json").read_text()
    assert '"resumed"' in doc and "--resume" in doc


LAST_TRIAL_SPACE = TINY_SPACE.replace("budget: {trials: 4}", "budget: {trials: 2}").replace(
    "resources: {cpus: 1}", "resources: {cpus: 1, max_concurrent: 1}"
)


@pytest.mark.slow
def test_ctrl_c_on_the_last_trial_of_a_phase_is_an_interruption(tmp_path):
    """Ctrl-C while the phase's last trial runs kills that trial too; Tune then counts it as
    errored, so counting ended trials would call the phase finished. It must exit 130, record
    no error, and --resume must finish the phase."""
    space = write_space(tmp_path, LAST_TRIAL_SPACE, "last.yaml")
    out = tmp_path / "out"
    trials = out / "last" / "trials.parquet"
    status = kill_after_first_trial(sweep_command(space, out), trials, signal.SIGINT)
    assert status == 130
    assert set(pd.read_parquet(trials).status) == {"completed"}  # the killed trial is not an error
    resume(space, out)
    table = pd.read_parquet(trials)
    assert len(table) == 2 and set(table.status) == {"completed"} and table.trial_id.is_unique
