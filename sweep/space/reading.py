"""A space file -> the raw mapping the validator checks: finding, reading, parsing, overriding.

Unreadable, oversized, binary and non-UTF-8 files are refused before YAML sees them; YAML goes
through the bounded reader (:mod:`sweep.yaml_safe`: no duplicate keys, bounded nesting and
aliases). ``--set key=value`` values are read by the same reader, then CLI flags are applied as
dotted keys; sweep.json keeps the file as given, before either.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from sweep.errors import SpaceError, shown
from sweep.space.entry import apply_entry
from sweep.space.keys import MAX_FILE_BYTES, SPACES_DIR
from sweep.space.sections import Validator
from sweep.space.spec import SweepSpec
from sweep.yaml_safe import YamlRefused, load_yaml


def load_space(
    path: str | Path, overrides: dict[str, Any] | None = None, sets: list[str] | tuple = ()
) -> SweepSpec:
    """Read, override (``--set key=value`` and CLI flags as dotted keys), validate."""
    file = find_space_file(path)
    label = file.name
    raw = parse_space_yaml(read_space_text(file, label), label)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpaceError(
            label,
            "(top level)",
            f"expected a mapping, got {type(raw).__name__}",
            "write `key: value` pairs such as `method: ewc`",
        )
    given = copy.deepcopy(raw)  # sweep.json keeps the file as given, before overrides
    apply_entry(raw, file, label)  # a registry entry's settings, where the space sets none
    for text in sets:
        key, sep, value = str(text).partition("=")
        key = key.strip()
        if not sep or not key:
            raise SpaceError(
                label,
                "--set",
                f"{shown(text)} is not key=value",
                "write it like --set budget.trials=10",
            )
        set_dotted(raw, key, parse_space_yaml(value, label, f"--set {key}"), label, "--set ")
    for key, value in (overrides or {}).items():
        if value is not None:
            set_dotted(raw, key, value, label)
    return Validator(label, given).validate(raw, default_name=file.stem, path=str(file))


def find_space_file(path: str | Path) -> Path:
    """``path`` as given, else the file of that name shipped in ``search_spaces/``."""
    given = Path(path)
    if given.exists():
        if given.is_dir():
            raise SpaceError(str(path), "", "is a folder, not a file", "give a YAML file")
        return given
    shipped = SPACES_DIR / given.name
    if given.parent == Path(".") and shipped.is_file():
        return shipped
    names = sorted(p.name for p in SPACES_DIR.glob("*.yaml"))
    raise SpaceError(
        str(path),
        "",
        "no such file (also looked in search_spaces/)",
        f"give a path to a YAML file or one of: {', '.join(names)}",
    )


def read_space_text(file: Path, label: str) -> str:
    """The file's text, refusing what is not a small UTF-8 text file."""
    try:
        with open(file, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SpaceError(
            label, "", f"cannot be read ({exc.strerror or exc})", "check the path and permissions"
        ) from None
    if len(data) > MAX_FILE_BYTES:
        raise SpaceError(
            label,
            "",
            f"larger than {MAX_FILE_BYTES // 1000} kB, too large for a space file",
            "give the YAML search space, not a data or log file",
        )
    if b"\x00" in data:
        raise SpaceError(label, "", "is a binary file", "give a YAML text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpaceError(
            label,
            f"byte {exc.start}",
            "is not UTF-8 text",
            "save the file as UTF-8 (most editors offer it under 'encoding')",
        ) from None


def parse_space_yaml(text: str, label: str, key: str = "") -> Any:
    """YAML through the bounded reader; errors name ``key`` (e.g. a --set) or the line."""
    try:
        return load_yaml(text)
    except YamlRefused as exc:
        where = f"{key} ({exc.where})" if key else exc.where
        raise SpaceError(label, where, exc.problem, exc.fix) from None


def set_dotted(raw: dict[str, Any], key: str, value: Any, label: str, via: str = "") -> None:
    """Set ``raw[a][b][c] = value`` for ``key`` "a.b.c", creating missing sections."""
    parts = key.split(".")
    if any(not part for part in parts):
        raise SpaceError(
            label,
            f"{via}{key}",
            "is not a dotted key",
            "name a key by its path, e.g. budget.trials=10",
        )
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise SpaceError(
                label,
                f"{via}{key}",
                f"{part!r} is not a section",
                "override a key inside a section, e.g. budget.trials=10",
            )
        node = child
    node[parts[-1]] = value
