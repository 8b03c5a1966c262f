"""The sweep's usage errors: one line that names the file, the key and the fix."""

from __future__ import annotations

from typing import Any

from cl_core.errors import ClsweepError

MAX_SHOWN = 60  # characters of a user's value quoted in a message


def one_line(text: str) -> str:
    """``text`` with every line break and control character escaped, so it prints as one line.

    A message quotes what the user wrote (keys, values, file names), which may hold newlines or
    other characters that ``str.splitlines`` breaks on (form feed, U+2028, ...).
    """
    return "".join(
        ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] or "?" for ch in str(text)
    )


def shown(value: Any) -> str:
    """A user's value for a message: its repr, shortened."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


class SpaceError(ClsweepError):
    """A search-space file the sweep refuses, raised before Ray starts.

    The CLI prints ``str(error)`` on stderr and exits 2, so the message is the whole story:
    ``<file>: <key>: <problem>; <fix>``.
    """

    def __init__(self, file: str, key: str, problem: str, fix: str) -> None:
        self.file, self.key, self.problem, self.fix = file, key, problem, fix
        where = f"{file}: {key}" if key else file
        super().__init__(one_line(f"{where}: {problem}; {fix}"))
