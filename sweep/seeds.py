"""Per-study sampler seeds: each (method, cell) study draws from its own seed.

With the sweep's one seed in every study, TPE's random start-up trials are the same values in
every cell: a six-cell sweep explored the same four λ six times. A study's seed is a hash of the
sweep's seed, the method and the cell key, so it is reproducible, differs from cell to cell, and
does not depend on the order of the grid (adding a cell leaves the other cells' seeds alone).
"""

from __future__ import annotations

import hashlib

SEED_DERIVATION = (
    "int.from_bytes(sha256(f'{sweep_seed}:{method}:{cell}'.encode()).digest()[:8], 'big') % 2**31"
)
"""How :func:`cell_sampler_seed` derives a seed, as code a reader can re-run (in sweep.json)."""


def cell_sampler_seed(sweep_seed: int | None, method: str, cell_key: str) -> int | None:
    """The sampler seed of ``method``'s study on ``cell_key`` (None: an unseeded sweep)."""
    if sweep_seed is None:
        return None
    digest = hashlib.sha256(f"{sweep_seed}:{method}:{cell_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 2**31
