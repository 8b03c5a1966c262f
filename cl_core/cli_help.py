"""The run CLI's argparse pieces: ``--help`` that states every default, and choices checked here.

Defaults: the run flags default to None in argparse (so that a preset can fill what the user left
unset), which argparse's own ArgumentDefaultsHelpFormatter would print as "None". This formatter
prints the value the run really gets instead, taken from RunConfig itself, so the help cannot
drift from the code. A flag added later needs no help edit: naming its RunConfig field is enough.

Choices: a flag with a fixed set of values takes ``type=Choice(values)`` instead of argparse's
``choices=``, so the one-line error naming the closest valid value is ours. argparse's own text
for a bad choice is no interface: Python 3.12.8 dropped the quotes around the choices, 3.14 added
a suggestion of its own, and later releases bring the quotes back.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
from collections.abc import Iterable
from typing import Any

from cl_core.config import RunConfig


class Choice:
    """An argparse ``type`` that accepts one of ``choices``; anything else is an error that
    names the closest choice (or lists them all when none is close)."""

    def __init__(self, choices: Iterable[str]) -> None:
        self.choices = tuple(choices)
        self.metavar = "{" + ",".join(self.choices) + "}"  # what argparse shows for choices=

    def __call__(self, text: str) -> str:
        if text in self.choices:
            return text
        close = difflib.get_close_matches(text, self.choices, n=1)
        fix = f"did you mean '{close[0]}'?" if close else f"use one of {', '.join(self.choices)}"
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r}; {fix}")


def add_choice(group: Any, flag: str, choices: Iterable[str], **kwargs: Any) -> argparse.Action:
    """``group.add_argument(flag, ...)`` for a flag with a fixed set of values (see Choice)."""
    check = Choice(choices)
    return group.add_argument(flag, type=check, metavar=check.metavar, **kwargs)


def config_defaults(fields: dict[str, str]) -> dict[str, str]:
    """``{flag dest: default text}`` for flags that set a RunConfig field (``fields``: dest ->
    field name), read from RunConfig's declared defaults."""
    declared = {
        f.name: f.default
        for f in dataclasses.fields(RunConfig)
        if f.default is not dataclasses.MISSING
    }
    return {dest: _text(declared[name]) for dest, name in fields.items() if name in declared}


def defaults_formatter(defaults: dict[str, str]) -> type[argparse.HelpFormatter]:
    """A help formatter that appends ``(default: ...)`` to each option: ``defaults[dest]`` when
    given, else the option's own argparse default when it has a meaningful one."""

    class DefaultsHelpFormatter(argparse.HelpFormatter):
        def _format_action(self, action: argparse.Action) -> str:
            if not action.help and action.dest in defaults:  # argparse skips help-less options
                action = copy.copy(action)
                action.help = _default(defaults[action.dest])
            return super()._format_action(action)

        def _get_help_string(self, action: argparse.Action) -> str:
            text = action.help or ""
            if "(default" in text or action.default is argparse.SUPPRESS:
                return text
            if action.dest in defaults:
                return f"{text} {_default(defaults[action.dest])}".strip()
            if action.option_strings and action.default not in (None, False, []):
                return f"{text} {_default(_text(action.default))}".strip()
            return text

    return DefaultsHelpFormatter


def _default(text: str) -> str:
    return f"(default: {text})".replace("%", "%%")  # argparse %-formats help strings


def _text(value: Any) -> str:
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return str(value)
