"""Where a sweep keeps its Optuna studies: SQLite (``study.db``) or a journal file.

Optuna's documentation of ``JournalFileBackend`` says SQLite "might not work on NFS" (its
``fcntl()`` locks are broken on many NFS implementations) and offers the journal file, which
locks by creating files, for exactly that case; locally, SQLite works and is what
``optuna-dashboard sqlite:///study.db`` and most Optuna users expect. So the default, ``auto``,
follows the folder: a journal file (``study.journal``) on a network file system (the
cluster set-up of docs/cluster.md), SQLite elsewhere. ``--study-storage sqlite|journal`` forces
one (a network mount this module does not recognise). A sweep keeps the backend it started with:
on resume the file the folder holds decides, whatever the flag says.

Only the driver opens the studies (workers never touch Optuna), and the folder's lock
(:mod:`sweep.lock`) keeps it to one driver, so either backend sees a single writer.

SQLite runs in write-ahead-log mode (``PRAGMA journal_mode=WAL``, kept in the file): a commit
is one append and one fsync of ``study.db-wal`` instead of the rollback journal's several
fsyncs, and readers (``optuna-dashboard``) no longer wait on the writer. Durability is
unchanged (``synchronous`` stays FULL: every commit is on disk when it returns). Measured on a
64-trial TPE study with 5 intermediate values per trial: 2.7 s of asks, reports and tells in the
rollback journal's mode, 1.9 s in WAL mode (``benchmarks/study_storage_speed.py``). Closing
the storage (:func:`close_storage`) folds the log back into ``study.db``; a driver that died
leaves ``study.db-wal`` beside it, which SQLite replays when the sweep is resumed (move the
three files together).
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import optuna

from cl_core.errors import ClsweepError
from contract.schema import STUDY_FILE

SQLITE_FILE = STUDY_FILE
JOURNAL_FILE = "study.journal"
BACKENDS = ("auto", "sqlite", "journal")
NETWORK_FILE_SYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "ceph",
        "fuse.cephfs",
        "glusterfs",
        "fuse.glusterfs",
        "lustre",
        "gpfs",
        "beegfs",
        "fuse.sshfs",
        "9p",
    }
)
"""File system types (as /proc/self/mounts names them) whose locks SQLite cannot trust."""
MOUNTS = Path("/proc/self/mounts")


def existing_study_file(folder: Path) -> Path | None:
    """The study file a sweep folder holds (None if none); both at once is refused."""
    found = [Path(folder) / name for name in (SQLITE_FILE, JOURNAL_FILE)]
    found = [path for path in found if path.exists()]
    if len(found) > 1:
        raise ClsweepError(
            f"{folder} holds both {SQLITE_FILE} and {JOURNAL_FILE}; keep the one this sweep "
            "wrote (move the other away) and run the command again"
        )
    return found[0] if found else None


def study_file(folder: Path, backend: str = "auto") -> Path:
    """The study file of a sweep in ``folder``: the one it holds, else the one ``backend``
    picks (``auto``: a journal on a network file system, SQLite elsewhere)."""
    existing = existing_study_file(folder)
    if existing is not None:
        return existing
    if backend not in BACKENDS:
        raise ClsweepError(f"--study-storage {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        backend = "journal" if on_network_file_system(Path(folder)) else "sqlite"
    return Path(folder) / (JOURNAL_FILE if backend == "journal" else SQLITE_FILE)


def open_storage(path: Path, checking: bool = False) -> optuna.storages.BaseStorage:
    """The Optuna storage in ``path``: a journal file if it is named so, else SQLite (with a
    long lock timeout: a slow file server can hold a lock for seconds). A driver's storage is
    put in WAL mode; ``checking`` (a resume's checks, which must leave the folder as it was)
    opens a file as it is."""
    if Path(path).name == JOURNAL_FILE:
        backend = optuna.storages.journal.JournalFileBackend(str(path))
        return optuna.storages.JournalStorage(backend)
    if not checking:
        use_write_ahead_log(Path(path))
    return optuna.storages.RDBStorage(
        f"sqlite:///{path}", engine_kwargs={"connect_args": {"timeout": 120}}
    )


def use_write_ahead_log(path: Path) -> None:
    """Put the SQLite file ``path`` (created if missing) in WAL mode; the mode is kept in the
    file, so every later connection, Optuna's included, uses it."""
    with contextlib.closing(sqlite3.connect(str(path), timeout=120)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")


def close_storage(storage: optuna.storages.BaseStorage) -> None:
    """Release a storage's connections (SQLite keeps a connection pool; a journal holds none)."""
    if isinstance(storage, optuna.storages.RDBStorage):
        storage.remove_session()
        storage.engine.dispose()


def on_network_file_system(folder: Path, mounts: str | None = None) -> bool:
    """Whether ``folder`` (or the nearest existing folder above it) is on a network file
    system, judged by the mount table (``mounts``: its text; default: /proc/self/mounts)."""
    return file_system_type(folder, mounts) in NETWORK_FILE_SYSTEMS


def file_system_type(folder: Path, mounts: str | None = None) -> str | None:
    """The type of the file system ``folder`` lives on (None where there is no mount table)."""
    if mounts is None:
        try:
            mounts = MOUNTS.read_text()
        except OSError:
            return None
    path = Path(folder).expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    path = path.resolve()
    best, kind = -1, None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = Path(fields[1].replace("\\040", " "))
        if (path == point or point in path.parents) and len(point.parts) > best:
            best, kind = len(point.parts), fields[2]
    return kind
