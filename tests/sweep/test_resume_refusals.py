"""--resume refuses what it cannot continue, with the reason and the fix, before Ray starts, and
changes nothing: missing or damaged results, a changed space, no sweep at all; and a new start
never overwrites a folder holding results."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
from sweep_helpers import TINY_SPACE, finished_sweep, snapshot, write_space

from sweep.__main__ import main


@pytest.fixture
def sweep(tmp_path):
    space = write_space(tmp_path, TINY_SPACE + "final: {top_k: 1, seeds: 2}\n", "tiny.yaml")
    out = tmp_path / "out"
    return space, out, finished_sweep(out, space)


def refused(argv: list[str], capsys) -> str:
    """Run the CLI with Ray unable to start; return its one line of error."""
    import ray

    start, ray.init = ray.init, _no_ray
    try:
        status = main(argv)
    finally:
        ray.init = start
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert status == 2 and len(lines) == 1 and captured.out == "", captured
    return lines[0]


def _no_ray(*args, **kwargs):
    raise AssertionError("Ray was started")


def resume(space, out):
    return ["--space", str(space), "--out", str(out), "--resume"]


def test_deleted_trials_table_is_refused_and_nothing_is_overwritten(sweep, capsys):
    space, out, folder = sweep
    shutil.rmtree(folder / "trials.parquet")
    before = snapshot(folder)
    line = refused(resume(space, out), capsys)
    assert "trials.parquet is missing but study.db records 6 ended trial(s)" in line
    assert "restore" in line and "--name" in line and "nothing was changed" in line
    assert snapshot(folder) == before


def test_damaged_trials_table_is_refused_and_nothing_is_overwritten(sweep, capsys):
    space, out, folder = sweep
    part = next((folder / "trials.parquet").glob("*.parquet"))
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])  # cut in the middle
    before = snapshot(folder)
    line = refused(resume(space, out), capsys)
    assert f"{part.name} is not readable Parquet" in line and "restore it" in line
    assert snapshot(folder) == before


def test_missing_tasks_table_or_study_is_refused(sweep, capsys):
    space, out, folder = sweep
    tasks = folder / "tasks.parquet"
    shutil.move(tasks, folder.parent / "tasks.bak")
    assert "tasks.parquet is missing" in refused(resume(space, out), capsys)
    shutil.move(folder.parent / "tasks.bak", tasks)
    (folder / "study.db").rename(folder.parent / "study.bak")
    assert "study.db is missing" in refused(resume(space, out), capsys)


def test_unreadable_sweep_json_is_refused(sweep, capsys):
    space, out, folder = sweep
    (folder / "sweep.json").write_text("{ cut")
    before = snapshot(folder)
    assert "sweep.json is not readable" in refused(resume(space, out), capsys)
    assert snapshot(folder) == before


def test_a_sweep_of_an_older_schema_is_refused(sweep, capsys):
    space, out, folder = sweep
    meta = json.loads((folder / "sweep.json").read_text())
    meta["schema_version"] = 1
    (folder / "sweep.json").write_text(json.dumps(meta))
    before = snapshot(folder)
    assert "written with results schema 1" in refused(resume(space, out), capsys)
    assert snapshot(folder) == before


def test_a_changed_space_is_refused(sweep, capsys, tmp_path):
    space, out, folder = sweep
    text = space.read_text().replace("high: 1.0e4", "high: 1.0e6")
    other = write_space(tmp_path, text, "tiny.yaml")
    before = snapshot(folder)
    line = refused(resume(other, out), capsys)
    assert "the space differs" in line and "--name NEW" in line
    assert snapshot(folder) == before


def test_more_trials_on_resume_is_allowed_to_pass_the_checks(sweep):
    """Budgets may change on resume (search on): only the fingerprint of the space counts."""
    from sweep.resume import check_folder
    from sweep.space import load_space

    space, _, folder = sweep
    check_folder(load_space(space, overrides={"budget.trials": 40}), folder, resume=True)
    assert json.loads((folder / "sweep.json").read_text())["fingerprint"]


def test_resume_without_a_sweep_and_restart_without_resume(sweep, capsys, tmp_path):
    space, out, folder = sweep
    line = refused(["--space", str(space), "--out", str(tmp_path / "empty"), "--resume"], capsys)
    assert "--resume: no sweep in" in line
    before = snapshot(folder)
    line = refused(["--space", str(space), "--out", str(out)], capsys)
    assert "already holds a sweep; add --resume" in line
    (folder / "sweep.json").unlink()
    line = refused(["--space", str(space), "--out", str(out)], capsys)
    assert "holds results but no sweep.json" in line
    del before


def test_no_refusal_leaves_a_lock_behind(sweep, capsys):
    space, out, folder = sweep
    shutil.rmtree(folder / "trials.parquet")
    refused(resume(space, out), capsys)
    assert not (folder / ".sweep.lock").exists()
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
