"""The ``clsweep`` console entry point dispatches to the three CLIs (issue 10, item 8)."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from clsweep.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_entry_point_is_declared():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {"clsweep": "clsweep.cli:main"}


def test_subcommands_reach_their_cli(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["clsweep"])  # main() rewrites it for the subcommand
    assert main(["run", "--method", "ewc", "--param", "lamda=1"]) == 2
    assert "has no hyperparameter 'lamda'" in capsys.readouterr().err
    assert main(["sweep", "--space", str(tmp_path / "missing.yaml"), "--dry-run"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "is not a sweep" in capsys.readouterr().err
    assert main(["curves", str(tmp_path), "--out", str(tmp_path / "c")]) == 2
    assert "error" in capsys.readouterr().err
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    capsys.readouterr()
    assert sys.argv == ["clsweep report", str(tmp_path), "--out", str(tmp_path / "r")]
    with pytest.raises(SystemExit) as done:
        main(["sweep", "--help"])
    assert done.value.code == 0 and "--space" in capsys.readouterr().out


def test_usage_on_a_missing_or_unknown_command(capsys):
    assert main([]) == 2 and "clsweep {run,sweep,report,curves}" in capsys.readouterr().err
    assert main(["train"]) == 2 and "unknown command 'train'" in capsys.readouterr().err
    assert main(["--help"]) == 0 and "report" in capsys.readouterr().out
