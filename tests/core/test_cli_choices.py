"""Flags with fixed values check their choices themselves: a bad value is one line naming the
closest choice (or all of them), the same text on every Python (argparse's own wording changed in
3.12.8 and again later), and the help still shows each flag's choices."""

from __future__ import annotations

import argparse

import pytest

from cl_core.__main__ import build_parser, main
from cl_core.cli_help import Choice, add_choice
from cl_core.methods import METHODS
from cl_core.progress import MODES

FLAGS = [
    ("--method", "ewk", "did you mean 'ewc'?"),
    ("--benchmark", "split-mnsit", "did you mean 'split-mnist'?"),
    ("--scenario", "classes", "did you mean 'class'?"),
    ("--model", "mpl", "did you mean 'mlp'?"),
    ("--optimizer", "adan", "did you mean 'adam'?"),
    ("--device", "cdua", "did you mean 'cuda'?"),
    ("--class-il-units", "seem", "did you mean 'seen'?"),
    ("--stream", "fuzzy-boundary", "did you mean 'fuzzy-boundaries'?"),
    ("--preset", "classic-permutted", "did you mean 'classic-permuted'?"),
    ("--progress", "zzz", f"use one of {', '.join(MODES)}"),
]


@pytest.mark.parametrize(("flag", "value", "fix"), FLAGS, ids=[f[0] for f in FLAGS])
def test_a_bad_choice_is_one_line_with_the_fix(capsys, flag, value, fix):
    with pytest.raises(SystemExit) as stop:
        main([flag, value])
    assert stop.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"error: argument {flag}: invalid choice: '{value}'; {fix}; see python -m cl_core --help\n"
    )


def test_every_valid_choice_is_accepted_as_given():
    parser = build_parser()
    for name in METHODS:
        assert parser.parse_args(["--method", name]).method == name
    assert parser.parse_args([]).progress == "auto"  # a default passes the same check


def test_help_lists_the_choices_as_argparse_would():
    text = build_parser().format_help()
    assert "--method {" + ",".join(sorted(METHODS)) + "}" in text
    assert "--progress {auto,bar,log,off}" in text
    assert "--device {auto,cpu,cuda}" in text


def test_choice_is_independent_of_argparse_wording():
    """The message comes from Choice, not from argparse's own invalid-choice text."""
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_choice(parser, "--colour", ("red", "green", "blue"))
    with pytest.raises(argparse.ArgumentError) as err:
        parser.parse_args(["--colour", "gren"])
    assert str(err.value) == "argument --colour: invalid choice: 'gren'; did you mean 'green'?"
    assert Choice(("a", "b"))("b") == "b"
    with pytest.raises(argparse.ArgumentTypeError, match="use one of a, b$"):
        Choice(("a", "b"))("zzz")
