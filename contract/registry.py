"""The best-config registry's entry format: fields, integrity hash, read, verify and write.

An entry is one YAML file per (method, benchmark, scenario, task count, selection protocol) at
``<registry>/<benchmark>/<scenario>-<n_tasks>/<method>.<protocol>.yaml`` (docs/registry.md). It
holds the chosen configuration as ``cl_core.config.RunConfig`` settings (``config``), how it was
chosen (``selection``), what its final phase measured (``final``) and where it came from
(``provenance``). ``integrity`` is the sha256 of the canonical JSON of everything else, so an
entry edited by hand or damaged in transit is refused, never silently used.

Both sides import this module: ``clsweep best`` (analysis) writes entries, ``clsweep run
--config`` (the clsweep command, which may import the core) reads them. Like the rest of the
contract it imports neither torch nor Ray; YAML goes through pyyaml's safe loader and dumper.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

import yaml

from contract.schema import SETTINGS

FORMAT = 1
"""Entry format version, the value of the marker key :data:`MARKER`."""
MARKER = "clsweep_registry_entry"
"""First key of every entry: what the file is, and its format version."""
SUFFIX = ".yaml"
DEFAULT_PROTOCOL = "end-of-sequence"
"""The selection protocol of a sweep whose sweep.json records none (sweeps written before
selection protocols existed ran it: docs/selection.md)."""

CONFIG_KEYS = ("benchmark", "scenario", "n_tasks", "method", "method_params") + tuple(
    name for name, _ in SETTINGS
)
"""``config``: every RunConfig setting a trials.parquet row records (contract.schema.SETTINGS)
plus the cell and the method's hyperparameters; ``device``, ``data_root`` and
``eval_batch_size`` do not change results and are the runner's to choose."""
SECTIONS: dict[str, tuple[str, ...] | None] = {
    MARKER: None,
    "config": CONFIG_KEYS,
    "selection": (
        "protocol", "protocol_settings", "objective", "chosen_by", "config_id", "search_trials",
        "search_completed", "search_value", "search_trial_ids",
    ),
    "final": ("ran", "note", "metric", "mean", "sem", "n", "seeds", "values", "val_mean"),
    "provenance": (
        "sweep", "results_folder", "space_file", "space_sha256", "space_file_sha256",
        "fingerprint", "command", "git_commit", "clsweep_version", "versions",
        "sweep_started_at", "sweep_ended_at", "device", "population",
    ),
    "written_at": None,
    "integrity": None,
}  # fmt: skip
"""Top-level keys in file order; a tuple lists a section's keys (None: a plain value). Every key
is required; ``method_params``, ``objective``, ``protocol_settings`` and ``versions`` are free
mappings (the core checks the hyperparameters when the entry runs)."""
HEADER = (
    "# clsweep best-config registry entry (docs/registry.md), written by `clsweep best`.\n"
    "# Run it: clsweep run --config THIS_FILE [--seed N]. Do not edit: `integrity` is the\n"
    "# sha256 of the rest, and an entry that no longer matches it is refused.\n"
)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class RegistryError(Exception):
    """An entry that cannot be used or written; the message names the file, the key and the fix.
    CLIs print it as one ``error:`` line and exit with code 2."""


def canonical_json(value: Any) -> str:
    """The one JSON text of ``value`` the hash is taken over: sorted keys, no spaces, exact floats
    (Python's shortest round-trip repr, which YAML keeps too), no NaN."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def content_hash(entry: dict[str, Any]) -> str:
    """``sha256:<hex>`` of everything in ``entry`` but ``integrity`` itself."""
    body = {k: v for k, v in entry.items() if k != "integrity"}
    return "sha256:" + hashlib.sha256(canonical_json(body).encode()).hexdigest()


def seal(entry: dict[str, Any]) -> dict[str, Any]:
    """``entry`` in file order with its marker and integrity hash set (checks its keys first)."""
    body = {MARKER: FORMAT, **{k: v for k, v in entry.items() if k not in (MARKER, "integrity")}}
    _check_keys(body, "the entry being written", require_integrity=False)
    ordered = {key: body[key] for key in SECTIONS if key in body}
    ordered["integrity"] = content_hash(ordered)
    return ordered


def key_of(entry: dict[str, Any]) -> tuple[str, str, str, int, str]:
    """(method, benchmark, scenario, n_tasks, protocol): what one entry file stands for."""
    config = entry["config"]
    protocol = entry["selection"]["protocol"]
    return config["method"], config["benchmark"], config["scenario"], config["n_tasks"], protocol


def entry_path(root: Path, entry: dict[str, Any]) -> Path:
    """``<root>/<benchmark>/<scenario>-<n_tasks>/<method>.<protocol>.yaml``."""
    method, benchmark, scenario, n_tasks, protocol = key_of(entry)
    names = {"method": method, "benchmark": benchmark, "scenario": scenario, "protocol": protocol}
    for what, name in names.items():
        if not _NAME.fullmatch(str(name)):
            raise RegistryError(
                f"{what} {name!r} cannot name a registry file; it must be letters, digits, '.', "
                "'_' or '-' (check the results' rows)"
            )
    return Path(root) / benchmark / f"{scenario}-{n_tasks}" / f"{method}.{protocol}{SUFFIX}"


def dumps(entry: dict[str, Any]) -> str:
    """The entry's YAML text (header comment, keys in file order)."""
    text = yaml.safe_dump(entry, sort_keys=False, allow_unicode=True, width=100)
    return HEADER + text


def loads(text: str, where: str) -> dict[str, Any]:
    """Parse and verify an entry's text; RegistryError names ``where`` and the fix."""
    try:
        entry = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        reason = str(exc).splitlines()[0]
        raise RegistryError(
            f"{where} is not valid YAML ({reason}); regenerate it with "
            "`clsweep best RESULTS --into DIR`"
        ) from None
    if not isinstance(entry, dict) or MARKER not in entry:
        raise RegistryError(
            f"{where} is not a registry entry (no {MARKER!r} key); pass a file written by "
            "`clsweep best RESULTS --into DIR`"
        )
    if entry[MARKER] != FORMAT:
        raise RegistryError(
            f"{where} is registry format {entry[MARKER]!r}; this clsweep reads format {FORMAT}: "
            "regenerate it with `clsweep best`"
        )
    _check_keys(entry, where, require_integrity=True)
    recorded, actual = entry["integrity"], content_hash(entry)
    if recorded != actual:
        raise RegistryError(
            f"{where}: integrity hash mismatch (recorded {str(recorded)[:19]}..., content "
            f"{actual[:19]}...): the entry was edited by hand or damaged; regenerate it with "
            "`clsweep best RESULTS --into DIR --force` or restore the original file"
        )
    return entry


def read_entry(path: Path) -> dict[str, Any]:
    """Read and verify the entry at ``path`` (its keys and its integrity hash)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise RegistryError(
            f"registry folder {path.parent} does not exist; write entries with "
            f"`clsweep best RESULTS --into DIR` or fix the path {path}"
        )
    if path.is_dir():
        raise RegistryError(f"{path} is a folder; pass one entry file{_listing(path)}")
    if not path.is_file():
        raise RegistryError(f"registry entry {path} does not exist{_listing(path.parent)}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(
            f"{path} cannot be read as UTF-8 text ({exc}); is it an entry?"
        ) from None
    return loads(text, str(path))


def support(entry: dict[str, Any]) -> tuple[int, int]:
    """(search trials, final-phase seeds): how much evidence stands behind an entry."""
    seeds = entry["final"]["seeds"] if entry["final"]["ran"] else []
    return int(entry["selection"]["search_trials"]), len(seeds)


def better_supported(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether ``old`` has more search trials or more final seeds than ``new`` (then writing
    ``new`` over it needs --force); equal or less support on both counts is replaced."""
    (old_trials, old_seeds), (new_trials, new_seeds) = support(old), support(new)
    return old_trials > new_trials or old_seeds > new_seeds


def describe_support(entry: dict[str, Any]) -> str:
    trials, seeds = support(entry)
    return f"{trials} search trials, {seeds} final seeds, sweep {entry['provenance']['sweep']}"


def check_replace(path: Path, new: dict[str, Any], force: bool) -> None:
    """Refuse to write ``new`` over a better-supported (or damaged) entry at ``path`` unless
    ``force``; RegistryError names the entry and --force."""
    if force or not path.exists():
        return
    try:
        old = read_entry(path)
    except RegistryError as exc:
        raise RegistryError(f"{exc} (the existing entry; pass --force to overwrite it)") from None
    if better_supported(old, new):
        raise RegistryError(
            f"{path} holds a better-supported entry ({describe_support(old)}) than the new one "
            f"({describe_support(new)}); keep it, or pass --force to overwrite it"
        )


def write_entry(path: Path, entry: dict[str, Any]) -> None:
    """Write a sealed entry atomically (a temporary file in the same folder, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(dumps(entry), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _check_keys(entry: dict[str, Any], where: str, require_integrity: bool) -> None:
    """Unknown and missing keys, top level and per section, each named with the fix."""
    fix = "regenerate the entry with `clsweep best RESULTS --into DIR`"
    for key in entry:
        if key not in SECTIONS:
            raise RegistryError(
                f"{where}: unknown key {key!r}; an entry holds {', '.join(SECTIONS)}; {fix}"
            )
    for key, allowed in SECTIONS.items():
        if key == "integrity" and not require_integrity:
            continue
        if key not in entry:
            raise RegistryError(f"{where}: missing key {key!r}; {fix}")
        if allowed is None:
            continue
        section = entry[key]
        if not isinstance(section, dict):
            raise RegistryError(
                f"{where}: {key!r} must be a mapping of {', '.join(allowed)}; {fix}"
            )
        for name in section:
            if name not in allowed:
                raise RegistryError(
                    f"{where}: unknown key {key}.{name}; {key} holds {', '.join(allowed)}; {fix}"
                )
        for name in allowed:
            if name not in section:
                raise RegistryError(f"{where}: missing key {key}.{name}; {fix}")
    if not isinstance(entry["config"]["method_params"], dict):
        raise RegistryError(f"{where}: config.method_params must be a mapping; {fix}")


def _listing(folder: Path) -> str:
    """'; entries there: a.yaml, b.yaml' (a few), to help pick the right file."""
    found = sorted(str(p.relative_to(folder)) for p in folder.rglob(f"*{SUFFIX}"))[:6]
    return f"; entries there: {', '.join(found)}" if found else "; that folder holds no entries"
