"""The command line refuses, in one line and with exit 2, before Ray starts: bad arguments, bad
--set values, a folder it cannot write, resources the machine lacks, a damaged dataset file."""

from __future__ import annotations

import gzip
import shutil
import sys

import pytest
from sweep_helpers import TINY_SPACE, write_space

from sweep.__main__ import main


def run(argv: list[str], capsys, importable: bool = False) -> tuple[int, list[str], str]:
    """main() with Ray made unimportable (validation), or importable but not startable (checks
    of the folder, the data and the machine, which import the runner): every refusal must come
    before Ray starts."""
    import ray

    blocked = {m: sys.modules.pop(m) for m in list(sys.modules) if m.split(".")[0] == "ray"}
    if importable:
        sys.modules.update(blocked)
        start, ray.init = ray.init, _no_ray
    else:
        sys.modules["ray"] = None
    try:
        try:
            status = main(argv)
        except SystemExit as exc:  # argparse
            status = exc.code
    finally:
        if importable:
            ray.init = start
        else:
            del sys.modules["ray"]
            sys.modules.update(blocked)
    captured = capsys.readouterr()
    return status, captured.err.splitlines(), captured.out


def _no_ray(*args, **kwargs):
    raise AssertionError("Ray was started before the refusal")


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--space"],
        ["--space", "x.yaml", "--trials", "ten"],
        ["--space", "x.yaml", "--cpus-per-trial", "1,5"],
        ["--space", "x.yaml", "--bogus"],
        ["--space", "x.yaml", "--max-concurrent"],
        ["--space", "x.yaml", "extra"],
    ],
    ids=["nothing", "space_without_value", "trials_text", "cpus_comma", "unknown_flag",
         "flag_without_value", "positional"],
)  # fmt: skip
def test_bad_command_line_is_one_line(argv, capsys):
    status, err, out = run(argv, capsys)
    assert status == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert "--help" in err[0] and out == ""


@pytest.mark.parametrize(
    ("sets", "key"),
    [
        (["budget.trials=["], "--set budget.trials"),
        (["budget.trials=true"], "budget.trials"),
        (["budget.trials=1e999"], "budget.trials"),
        (["grid.n_tasks={a: 1, a: 2}"], "--set grid.n_tasks"),
        (["train.lr=&a [*a]"], "--set train.lr"),
        (["a..b=1"], "--set a..b"),
        (["=3"], "--set"),
        (["no-equals-sign"], "--set"),
        (["budget=5"], "budget:"),
        (["budget.trials.x=5"], "--set budget.trials.x"),
        (["name=.."], "name:"),
        (["search.lambda.low=.inf"], "search.lambda.low"),
        (["description=" + "[" * 30], "--set description"),
        (["train.hidden=\x00"], "--set train.hidden"),
    ],
    ids=lambda v: str(v)[:30],
)
def test_bad_set_values_are_refused_like_the_file(tmp_path, capsys, sets, key):
    path = write_space(tmp_path, TINY_SPACE)
    argv = ["--space", str(path), "--out", str(tmp_path / "out")]
    for text in sets:
        argv += ["--set", text]
    status, err, out = run(argv, capsys)
    assert status == 2 and len(err) == 1, err
    assert err[0].startswith(f"error: {path.name}: ") and key in err[0], err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("flags", "key"),
    [
        (["--trials", "-3"], "budget.trials"),
        (["--trials", "0"], "budget.trials"),
        (["--cpus-per-trial", "nan"], "resources.cpus"),
        (["--cpus-per-trial", "inf"], "resources.cpus"),
        (["--gpus-per-trial", "-1"], "resources.gpus"),
        (["--max-concurrent", "0"], "resources.max_concurrent"),
        (["--name", ".."], "name"),
        (["--name", "a/b"], "name"),
    ],
    ids=lambda v: str(v)[:30],
)
def test_bad_flag_values_are_validated_like_the_file(tmp_path, capsys, flags, key):
    path = write_space(tmp_path, TINY_SPACE)
    status, err, _ = run(["--space", str(path), "--out", str(tmp_path / "out"), *flags], capsys)
    assert status == 2 and len(err) == 1 and key in err[0], err


def test_resources_the_machine_lacks_are_refused(tmp_path, capsys):
    path = write_space(tmp_path, TINY_SPACE)
    out = tmp_path / "out"
    argv = ["--space", str(path), "--out", str(out)]
    status, err, _ = run([*argv, "--gpus-per-trial", "64"], capsys, importable=True)
    assert status == 2 and len(err) == 1 and "resources.gpus" in err[0], err
    status, err, _ = run([*argv, "--cpus-per-trial", "100000"], capsys, importable=True)
    assert status == 2 and len(err) == 1 and "resources.cpus" in err[0], err
    assert "this machine has" in err[0]
    assert not out.exists() or not any(out.iterdir())  # nothing left behind


def test_unwritable_or_impossible_out_folder(tmp_path, capsys):
    path = write_space(tmp_path, TINY_SPACE)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    for out in (blocker, blocker / "below", "/proc/clsweep-cannot-write-here"):
        status, err, _ = run(["--space", str(path), "--out", str(out)], capsys, importable=True)
        assert status == 2 and len(err) == 1, err
        assert "choose" in err[0] and ("--out" in err[0] or "--name" in err[0]), err[0]


def test_a_truncated_dataset_file_is_one_line(tmp_path, capsys, data_root):
    root = tmp_path / "data"
    shutil.copytree(data_root / "MNIST", root / "MNIST")
    images = next((root / "MNIST" / "raw").glob("train-images*"))
    images.chmod(0o644)
    images.write_bytes(images.read_bytes()[:100_000])
    assert images.suffix == ".gz"  # a cut gzip stream (EOFError inside gzip)
    text = TINY_SPACE.replace("permuted-digits", "permuted-mnist")
    path = write_space(tmp_path, text)
    argv = ["--space", str(path), "--out", str(tmp_path / "out"), "--data-root", str(root)]
    status, err, _ = run(argv, capsys, importable=True)
    assert status == 2 and len(err) == 1, err
    assert images.name in err[0] and "truncated or corrupt" in err[0]
    with gzip.open(images) as handle, pytest.raises(EOFError):
        handle.read()


def test_a_missing_dataset_is_one_line(tmp_path, capsys):
    text = TINY_SPACE.replace("permuted-digits", "permuted-fashion")
    path = write_space(tmp_path, text)
    argv = ["--space", str(path), "--out", str(tmp_path / "out"), "--data-root", str(tmp_path)]
    status, err, _ = run(argv, capsys, importable=True)
    assert status == 2 and len(err) == 1 and "FashionMNIST" in err[0], err
