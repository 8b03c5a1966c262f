"""YAML search space -> a validated, immutable sweep spec.

Every mistake a user can make in a space file is caught here, before Ray starts, and reported as
one line naming the file, the key and the fix (``SpaceError``): unreadable or binary files,
YAML that is malformed, repeats a key, nests too deep or expands through aliases
(:mod:`sweep.yaml_safe`), wrong types (a boolean is never a number), non-finite numbers, names
that are not names, values outside what the trainer accepts, and budgets, task counts or seeds
beyond what a sweep can run or record. ``--set`` values go through the same reader and checks.
Nothing in this package imports Ray, so validating a space (and ``--dry-run``) costs a fraction of
a second. What the machine or the cluster can give (CPUs, GPUs) is checked by
:mod:`sweep.resources`, also before Ray starts.

One module per job; the rest of the sweep imports the names below from ``sweep.space``:

- :mod:`~sweep.space.keys`: the keys a space may hold, their choices, the limits;
- :mod:`~sweep.space.spec`: the spec types (:class:`SweepSpec`, :class:`Cell`, ...);
- :mod:`~sweep.space.reading`: file -> raw mapping, ``--set`` overrides, :func:`load_space`;
- :mod:`~sweep.space.checks`: the checks every section shares;
- :mod:`~sweep.space.sections`: the sections that say what runs, and the validator;
- :mod:`~sweep.space.conduct`: the sections that say how it runs (objective ... loggers);
- :mod:`~sweep.space.search`: the searched parameters and their Optuna distributions;
- :mod:`~sweep.space.notes`: advice printed for a valid space.
"""

from sweep.space.notes import scale_notes
from sweep.space.reading import load_space
from sweep.space.search import optuna_distribution
from sweep.space.spec import PROTOCOLS, Cell, LoggerSpec, Selection, SweepSpec

__all__ = [
    "Cell",
    "LoggerSpec",
    "PROTOCOLS",
    "Selection",
    "SweepSpec",
    "load_space",
    "optuna_distribution",
    "scale_notes",
]
