"""``--help`` that states every default: the RunConfig value a flag falls back to.

The run flags default to None in argparse (so that a preset can fill what the user left unset),
which argparse's own ArgumentDefaultsHelpFormatter would print as "None". This formatter prints
the value the run really gets instead, taken from RunConfig itself, so the help cannot drift from
the code. A flag added later needs no help edit: naming its RunConfig field is enough.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
from typing import Any

from cl_core.config import RunConfig


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
