"""Print a pip constraints file that pins each direct dependency of clsweep to its lower bound.

``python .ci/lowest_constraints.py [EXTRA ...]`` reads pyproject.toml (the base dependencies, plus
those of each EXTRA, following ``clsweep[...]`` self-references) and prints ``name==bound`` for
every requirement with a ``>=`` bound: pip's equivalent of uv's ``--resolution lowest-direct``
(the direct dependencies at their lowest allowed versions, everything else resolved as usual).
``--skip NAME`` leaves a package out (its installed version is used instead).

Why pip and not uv: pip on this machine finds the CPU build of torch on local disk, and the
constraints file is plain text a reviewer can read in the CI log.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*(\[[^\]]*\])?\s*(.*)$")


def requirements(project: dict, extras: list[str]) -> list[str]:
    """The base dependencies plus those of ``extras``, self-references expanded."""
    optional = project.get("optional-dependencies", {})
    out = list(project["dependencies"])
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        if extra not in optional:
            raise SystemExit(f"pyproject.toml has no extra {extra!r}; extras: {sorted(optional)}")
        seen.add(extra)
        for req in optional[extra]:
            name, bracket, _ = REQUIREMENT.match(req.split(";")[0]).groups()
            if name.lower() == project["name"].lower():
                todo += [e.strip() for e in bracket.strip("[]").split(",")]
            else:
                out.append(req)
    return out


def lower_bounds(reqs: list[str], skip: set[str]) -> dict[str, str]:
    """``{name: lower bound}`` for every requirement with a ``>=`` bound (extras dropped: pip
    constraints take none)."""
    bounds: dict[str, str] = {}
    for req in reqs:
        name, _, spec = REQUIREMENT.match(req.split(";")[0]).groups()
        found = re.search(r">=\s*([0-9][^,\s]*)", spec)
        if found is None:
            raise SystemExit(f"{req!r} has no lower bound (>=); every dependency needs one")
        if name.lower() not in skip:
            bounds[name.lower()] = found.group(1)
    return bounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("extras", nargs="*", help="extras of clsweep to include (e.g. sweep)")
    parser.add_argument("--skip", action="append", default=[], metavar="NAME")
    args = parser.parse_args(argv)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    bounds = lower_bounds(requirements(project, args.extras), {s.lower() for s in args.skip})
    sys.stdout.write("".join(f"{name}=={version}\n" for name, version in sorted(bounds.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
