"""The on-disk layout of a results table: a folder of Parquet parts, read as one table.

``trials.parquet/`` and ``tasks.parquet/`` are folders. The writer adds one part per finished
trial (``<trial_id>.parquet``), so recording a trial costs the same whether it is the first or the
ten-thousandth, and compacts the parts into one (``compacted.parquet``) when a run ends. pandas,
pyarrow, polars and DuckDB read such a folder as one table::

    pd.read_parquet("trials.parquet")              pq.read_table("trials.parquet")
    pl.read_parquet("trials.parquet")              duckdb.sql("FROM 'trials.parquet'")

Nothing is ever half-written: a part is written under ``.tmp/`` in the sweep folder (same file
system), flushed to disk, then renamed into the table folder, so readers see it whole or not at
all, and the table folder holds nothing but finished parts. Compaction builds the compacted folder
under ``.tmp/`` and swaps it in with two renames; a reader that lists the folder in the instant
between them finds it missing and reads again (:func:`read_table` does). :func:`recover` finishes
or undoes a compaction that a crash interrupted. Schema-1 sweeps hold single files of the same
names; :func:`read_table` reads both.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

TMP_DIR = ".tmp"
COMPACTED = "compacted.parquet"
PART_SUFFIX = ".parquet"


class TableError(Exception):
    """A table that cannot be read; the message names the file and what is wrong with it."""


def table_path(folder: Path, name: str) -> Path:
    return Path(folder) / name


def parts(folder: Path, name: str) -> list[Path]:
    """The parts of a table folder, in name order (empty if the table does not exist)."""
    path = table_path(folder, name)
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if p.name.endswith(PART_SUFFIX))


def exists(folder: Path, name: str) -> bool:
    """Whether the table exists (a folder of parts, or a schema-1 single file)."""
    return table_path(folder, name).exists()


def read_table(folder: Path, name: str, attempts: int = 3) -> pa.Table:
    """The whole table as one Arrow table; TableError names a damaged part."""
    path = table_path(folder, name)
    for attempt in range(attempts):
        try:
            if path.is_file():  # schema 1: one file
                return _read_file(path)
            if not path.is_dir():
                raise FileNotFoundError(path)
            files = parts(folder, name)
            if not files:
                raise TableError(f"{path} holds no Parquet parts")
            return pa.concat_tables([_read_file(f) for f in files], promote_options="default")
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05)  # a compaction swapping folders: read again
    raise AssertionError("unreachable")


def _read_file(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except FileNotFoundError:
        raise
    except (OSError, pa.ArrowException) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TableError(f"{path} is not readable Parquet ({reason})") from None


def write_part(folder: Path, name: str, table: pa.Table, part: str) -> Path:
    """Write ``table`` as the part ``<part>.parquet`` of table ``name``, atomically and durably.

    A part of the same name is replaced (a trial recorded again keeps one part). Files get the
    mode ``0666 & ~umask``, so a group-readable umask gives group-readable results.
    """
    target_dir = table_path(folder, name)
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"{part}{PART_SUFFIX}"
    write_file(folder, table, target)
    return target


def write_file(folder: Path, table: pa.Table, target: Path) -> None:
    """Write ``table`` to ``target`` via a temporary file under ``<folder>/.tmp`` and a rename."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    atomic_write_bytes(folder, target, sink.getvalue().to_pybytes())


def atomic_write_bytes(folder: Path, target: Path, data: bytes) -> None:
    """``data`` to ``target``: written and fsynced under ``<folder>/.tmp``, then renamed."""
    tmp_dir = Path(folder) / TMP_DIR
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f"{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def compact(folder: Path, name: str, schema: pa.Schema, keep: Iterable[str] | None = None) -> int:
    """Merge the parts of table ``name`` into one; return its row count.

    ``keep``, if given, is the set of trial ids whose rows stay (rows of other trials, e.g.
    tasks rows of a trial whose trials row was never written, are dropped). A table that is
    already one part with nothing to drop is left alone.
    """
    files = parts(folder, name)
    if not files:
        return 0
    table = conform(read_table(folder, name), schema)
    if keep is not None:
        ids = table.column("trial_id").to_pylist()
        mask = pa.array([tid in keep for tid in ids], type=pa.bool_())  # typed even when empty
        dropped = len(mask) - sum(mask.to_pylist())
        table = table.filter(mask)
    else:
        dropped = 0
    if len(files) == 1 and not dropped:
        return table.num_rows
    tag = f"{os.getpid()}.{uuid.uuid4().hex[:8]}"
    tmp_dir = Path(folder) / TMP_DIR
    new = tmp_dir / f"{name}.new-{tag}"
    old = tmp_dir / f"{name}.old-{tag}"
    new.mkdir(parents=True)
    write_file(folder, table, new / COMPACTED)
    path = table_path(folder, name)
    os.replace(path, old)
    os.replace(new, path)
    shutil.rmtree(old, ignore_errors=True)
    return table.num_rows


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with ``schema``'s columns in its order and types; a column that parts written
    by an earlier clsweep lack (a setting added since, within one schema version) is null in
    their rows; columns the schema does not know are kept, after its own."""
    columns, fields = [], []
    for schema_field in schema:
        if schema_field.name in table.column_names:
            columns.append(table.column(schema_field.name).cast(schema_field.type))
        else:
            columns.append(pa.nulls(table.num_rows, schema_field.type))
        fields.append(schema_field)
    for extra in table.schema:
        if extra.name not in schema.names:
            columns.append(table.column(extra.name))
            fields.append(extra)
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def recover(folder: Path, name: str) -> None:
    """Finish or undo a compaction of table ``name`` that a crash cut short.

    The compacted folder is complete before the first rename, so: table missing and a new
    folder present -> move it in; table missing and only the old folder -> move it back; table
    present -> the stray folders are leftovers and go.
    """
    tmp_dir = Path(folder) / TMP_DIR
    if not tmp_dir.is_dir():
        return
    new = sorted(tmp_dir.glob(f"{name}.new-*"))
    old = sorted(tmp_dir.glob(f"{name}.old-*"))
    path = table_path(folder, name)
    if not path.exists():
        if new and (new[-1] / COMPACTED).is_file():
            os.replace(new.pop(), path)
        elif old:
            os.replace(old.pop(), path)
    for stray in new + old:
        shutil.rmtree(stray, ignore_errors=True)


def clean_tmp(folder: Path) -> None:
    """Remove temporary files a killed writer left (only the lock holder may call this)."""
    tmp_dir = Path(folder) / TMP_DIR
    if not tmp_dir.is_dir():
        return
    for leftover in tmp_dir.glob("*.tmp"):
        leftover.unlink(missing_ok=True)
