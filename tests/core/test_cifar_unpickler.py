"""CIFAR batches are read by a restricted unpickler: the originals' form and re-pickled copies load;
a planted object (a pickle that would run code or import a module) is refused unrun, in one line
that names the file, exit 2 from the CLI."""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import write_cifar

from cl_core.config import RunConfig
from cl_core.data import load_dataset
from cl_core.data.cifar import CIFAR10, read_batch
from cl_core.errors import ClsweepError

REPO = Path(__file__).resolve().parents[2]


class RunsCode:
    """Pickles as a call of ``os.system``: loading it with pickle.load runs the command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class Python2Pickler(pickle._Pickler):
    """Writes ``bytes`` as Python 2 wrote its ``str`` (SHORT_BINSTRING / BINSTRING), as in the
    original CIFAR files (Python 3 at protocol 2 writes them through ``_codecs.encode``)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def batch(n: int = 4, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "batch_label": "training batch 1 of 5",
        "labels": [int(y) for y in rng.integers(0, 10, n)],
        "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        "filenames": [f"img_{i}.png" for i in range(n)],
    }


def python2_original(entry: dict) -> bytes:
    """``entry`` as the Python 2 originals hold it: byte-string keys and array bytes, protocol 2,
    and numpy's pre-2.0 module name ``numpy.core.multiarray``."""
    import io

    out = io.BytesIO()
    Python2Pickler(out, protocol=2).dump({k.encode(): v for k, v in entry.items()})
    text = out.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"_codecs" not in text and b"numpy.core.multiarray\n_reconstruct" in text
    return text


def cifar_root(tmp_path: Path, planted: bytes) -> Path:
    """A CIFAR-10 folder whose data_batch_2 is ``planted``."""
    write_cifar(tmp_path, CIFAR10)
    (tmp_path / CIFAR10.folder / "data_batch_2").write_bytes(planted)
    return tmp_path


def load(root: Path):
    return load_dataset(RunConfig(benchmark="split-cifar10", n_tasks=5, data_root=str(root)))


@pytest.mark.parametrize(
    "form",
    [
        pytest.param(python2_original, id="python2-original"),
        pytest.param(lambda entry: pickle.dumps(entry, protocol=2), id="python3-protocol2"),
        pytest.param(lambda entry: pickle.dumps(entry, protocol=5), id="numpy2-protocol5"),
    ],
)
def test_every_form_of_a_real_batch_reads_back_exactly(tmp_path, form):
    entry = batch()
    path = tmp_path / "data_batch_1"
    path.write_bytes(form(entry))
    read = read_batch(path)
    assert sorted(read) == ["batch_label", "data", "filenames", "labels"]
    assert read["data"].dtype == np.uint8 and np.array_equal(read["data"], entry["data"])
    assert read["labels"] == entry["labels"]
    assert read["filenames"] == entry["filenames"]


def test_a_pickle_that_would_run_code_is_refused_unrun(tmp_path):
    marker = tmp_path / "ran"
    planted = pickle.dumps({"data": RunsCode(f"touch {marker}"), "labels": [0]}, protocol=2)
    root = cifar_root(tmp_path, planted)
    with pytest.raises(ClsweepError) as err:
        load(root)
    message = str(err.value)
    assert not marker.exists()
    assert "\n" not in message
    assert message.startswith(f"{root / CIFAR10.folder / 'data_batch_2'} is not a CIFAR batch")
    assert f"it names {os.system.__module__}.system, which no CIFAR batch holds" in message


@pytest.mark.parametrize(
    ("module", "name"),
    [("builtins", "eval"), ("subprocess", "Popen"), ("this", "s"), ("numpy", "load")],
)
def test_no_global_outside_the_batch_types_is_imported_or_resolved(tmp_path, module, name):
    """Refused before any import: ``this`` (which prints when imported) stays unloaded."""
    planted = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"."
    path = tmp_path / "test_batch"
    path.write_bytes(planted)
    was_loaded = module in sys.modules
    with pytest.raises(pickle.UnpicklingError, match=rf"it names {module}\.{name},"):
        read_batch(path)
    assert (module in sys.modules) == was_loaded


def test_a_planted_object_inside_a_numpy_array_is_refused(tmp_path):
    """An object array pickles its items through the same unpickler: still refused."""
    marker = tmp_path / "ran"
    items = np.empty(2, dtype=object)
    items[:] = [RunsCode(f"touch {marker}"), 1]
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps({"data": items, "labels": [0, 1]}, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match=r"\.system, which no CIFAR batch holds"):
        read_batch(path)
    assert not marker.exists()


def test_codecs_encode_is_allowed_only_as_latin1(tmp_path):
    path = tmp_path / "test_batch"
    path.write_bytes(b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13\x86R.")
    with pytest.raises(pickle.UnpicklingError, match="_codecs.encode with 'rot13'"):
        read_batch(path)


def test_cli_refuses_a_planted_batch_with_exit_2_and_one_line(tmp_path):
    marker = tmp_path / "ran"
    root = cifar_root(tmp_path, pickle.dumps(RunsCode(f"touch {marker}"), protocol=2))
    run = subprocess.run(
        [sys.executable, "-m", "cl_core", "--benchmark", "split-cifar10", "--tasks", "5"]
        + ["--data-root", str(root), "--epochs", "1"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2, run.stderr
    assert run.stdout == ""
    assert run.stderr.count("\n") == 1
    assert run.stderr.startswith(f"error: {root / CIFAR10.folder / 'data_batch_2'} is not a CIFAR")
    assert "which no CIFAR batch holds; refused without running it" in run.stderr
    assert not marker.exists()
