"""Where the Optuna studies live: SQLite locally, a journal file on a network file system (the
Optuna docs' advice for NFS), the folder's own file on resume, both files refused."""

from __future__ import annotations

import contextlib
import sqlite3

import optuna
import pytest

from cl_core.errors import ClsweepError
from sweep.study_storage import (
    JOURNAL_FILE,
    SQLITE_FILE,
    close_storage,
    file_system_type,
    on_network_file_system,
    open_storage,
    study_file,
)


def mounts(*entries: tuple[str, str]) -> str:
    """A mount table in /proc/self/mounts' format."""
    lines = [f"dev{i} {point} {kind} rw,relatime 0 0" for i, (point, kind) in enumerate(entries)]
    return "\n".join(lines) + "\n"


def test_the_deepest_mount_above_a_folder_gives_its_file_system(tmp_path):
    table = mounts(("/", "ext4"), (str(tmp_path), "nfs4"), (str(tmp_path / "local"), "xfs"))
    (tmp_path / "local").mkdir()
    assert file_system_type(tmp_path / "results" / "not-yet", table) == "nfs4"
    assert file_system_type(tmp_path / "local" / "x", table) == "xfs"
    assert on_network_file_system(tmp_path / "results", table)
    assert not on_network_file_system(tmp_path / "local", table)
    assert file_system_type(tmp_path, "") is None  # no mount table: not a network one
    assert not on_network_file_system(tmp_path, "")


def test_a_new_sweep_takes_sqlite_locally_and_the_forced_backend_otherwise(tmp_path):
    local = tmp_path / "local"
    local.mkdir()
    if not on_network_file_system(local):  # the test machine's tmp is a local disk
        assert study_file(local).name == SQLITE_FILE
    assert study_file(local, "sqlite").name == SQLITE_FILE
    assert study_file(local, "journal").name == JOURNAL_FILE
    with pytest.raises(ClsweepError, match="--study-storage 'redis'"):
        study_file(local, "redis")


def test_a_resumed_sweep_keeps_its_file_and_both_files_are_refused(tmp_path):
    (tmp_path / JOURNAL_FILE).touch()
    assert study_file(tmp_path, "sqlite").name == JOURNAL_FILE  # the folder's file decides
    (tmp_path / SQLITE_FILE).touch()
    with pytest.raises(ClsweepError, match="holds both study.db and study.journal"):
        study_file(tmp_path)


@pytest.mark.parametrize("name", [SQLITE_FILE, JOURNAL_FILE])
def test_each_backend_keeps_a_study_across_openings(tmp_path, name):
    first = optuna.create_study(study_name="s", storage=open_storage(tmp_path / name))
    trial = first.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    trial.report(0.5, 1)
    first.tell(trial, 0.25)
    again = optuna.load_study(study_name="s", storage=open_storage(tmp_path / name))
    (frozen,) = again.get_trials()
    assert (frozen.value, frozen.intermediate_values) == (0.25, {1: 0.5})
    assert frozen.params == trial.params


def test_sqlite_studies_use_a_write_ahead_log_folded_back_on_close(tmp_path):
    """One fsync per commit instead of the rollback journal's several; durability stays FULL,
    and closing leaves a single study.db (the log folded back into it)."""
    path = tmp_path / SQLITE_FILE
    storage = open_storage(path)
    study = optuna.create_study(study_name="s", storage=storage)
    study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), 0.5)
    # another connection, as optuna-dashboard would be
    with contextlib.closing(sqlite3.connect(path)) as reader:
        assert reader.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert reader.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
        assert reader.execute("SELECT COUNT(*) FROM trials").fetchone() == (1,)
    assert (tmp_path / f"{SQLITE_FILE}-wal").exists()
    close_storage(storage)
    assert sorted(p.name for p in tmp_path.iterdir()) == [SQLITE_FILE]
    (frozen,) = optuna.load_study(study_name="s", storage=open_storage(path)).get_trials()
    assert frozen.value == 0.5
