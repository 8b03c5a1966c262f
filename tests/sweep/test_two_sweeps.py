"""Two sweeps started together into one folder: one runs, the other is refused in one line, and
nothing is lost; a --resume while the first runs is refused too. Real CLI processes, real Ray."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pandas as pd
import pytest
from optuna.trial import TrialState
from sweep_helpers import REPO, TINY_SPACE, study_trials, write_space

SPACE = TINY_SPACE.replace("budget: {trials: 4}", "budget: {trials: 6}") + (
    "final: {top_k: 1, seeds: 2}\n"
)


def env() -> dict[str, str]:
    return {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


@pytest.mark.slow
def test_two_sweeps_into_one_folder(tmp_path):
    space = write_space(tmp_path, SPACE, "together.yaml")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "sweep", "--space", str(space), "--out", str(out)]
    first, second = (
        subprocess.Popen(
            command, cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    )
    try:
        folder = out / "together"
        deadline = time.monotonic() + 120
        while not (folder / ".sweep.lock").exists():
            assert time.monotonic() < deadline, "no sweep took the folder"
            time.sleep(0.1)
        # While one of them runs: --resume into the same folder is refused as well.
        resumed = subprocess.run(
            [*command, "--resume"], cwd=REPO, env=env(), capture_output=True, text=True, timeout=120
        )
        assert resumed.returncode == 2, resumed.stderr
        assert resumed.stderr.count("\n") == 1 and "in use by another sweep" in resumed.stderr
        results = [(p.wait(timeout=400), *p.communicate()) for p in (first, second)]
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    statuses = sorted(code for code, _, _ in results)
    assert statuses == [0, 2], results
    refused = next(err for code, _, err in results if code == 2)
    assert refused.count("\n") == 1 and "in use by another sweep" in refused, refused
    trials = pd.read_parquet(folder / "trials.parquet")
    assert trials.trial_id.is_unique
    assert (trials.phase == "search").sum() == 6 and (trials.phase == "final").sum() == 2
    assert set(trials.status) == {"completed"}
    study = study_trials(folder, "ewc", "permuted-digits/domain/3")
    assert len(study) == 6 and {t.state for t in study} == {TrialState.COMPLETE}
    assert sorted(t.user_attrs["trial_id"] for t in study) == sorted(
        trials[trials.phase == "search"].trial_id
    )
    tasks = pd.read_parquet(folder / "tasks.parquet")
    assert set(tasks.trial_id) == set(trials.trial_id)
    assert not (folder / ".sweep.lock").exists()  # released at the end
