"""The run's host-memory setting: freed blocks are reused instead of faulted in again."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from cl_core import host_memory

glibc_linux = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
    reason="glibc's mallopt",
)

# Three 8 MiB tensors filled and freed, twenty times: with glibc's dynamic thresholds the freed
# top of the heap (24 MiB, over twice the last block) goes back to the kernel every time, and
# the next round faults its pages in again.
_ROUNDS = """
import resource, sys, torch
from cl_core.host_memory import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(2):  # the first rounds may fault in the heap once
    blocks = [torch.ones(2 * 1024**2) for _ in range(3)]
    del blocks
before = faults()
for _ in range(20):
    blocks = [torch.ones(2 * 1024**2) for _ in range(3)]
    del blocks
print(applied, faults() - before)
"""


def _faults(mode: str, env: dict[str, str] | None = None) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_ROUNDS), mode],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    ).stdout.split()
    return out[0], int(out[1])


@glibc_linux
def test_freed_blocks_are_reused_without_page_faults():
    applied, kept = _faults("keep")
    _, default = _faults("default")
    assert applied == "True"
    # every round faults in most of its 24 MiB again (measured: 85,504 faults of 4 KiB pages in
    # 20 rounds); kept, the pages stay (2,048-14,336 measured: the VM's kernel reclaims some)
    assert default > 20 * 3 * 2048 // 2
    assert kept < default / 4


@glibc_linux
def test_the_users_own_malloc_variables_win():
    applied, _ = _faults("keep", {"MALLOC_TRIM_THRESHOLD_": str(128 * 1024)})
    assert applied == "False"


def test_setting_is_made_once_per_process(monkeypatch):
    calls = []
    monkeypatch.setattr(host_memory, "_applied", None)
    monkeypatch.setattr(host_memory, "_set_thresholds", lambda: calls.append(1) or True)
    assert host_memory.keep_freed_memory() and host_memory.keep_freed_memory()
    assert calls == [1]
