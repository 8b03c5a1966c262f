"""The sweep's usage error: one line that names the file, the key and the fix."""

from __future__ import annotations

from cl_core.errors import ClsweepError


class SpaceError(ClsweepError):
    """A search-space file the sweep refuses, raised before Ray starts.

    The CLI prints ``str(error)`` on stderr and exits 2, so the message is the whole story:
    ``<file>: <key>: <problem>; <fix>``.
    """

    def __init__(self, file: str, key: str, problem: str, fix: str) -> None:
        self.file, self.key, self.problem, self.fix = file, key, problem, fix
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {problem}; {fix}")
