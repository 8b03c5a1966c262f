"""The run's host-memory setting: large blocks come from the heap and stay there when freed."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap

import pytest

from cl_core import host_memory

with_accounting = pytest.mark.skipif(
    not host_memory._on_glibc() or not hasattr(ctypes.CDLL(None), "mallinfo2"),
    reason="glibc >= 2.33's mallinfo2",
)

# glibc's own accounting (mallinfo2, glibc >= 2.33) of a fresh process: where a 16 MiB tensor
# comes from, and what the heap keeps once three of them are freed.
_ACCOUNTING = """
import ctypes, sys, torch
from cl_core.host_memory import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split())]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
mapped = libc.mallinfo2().hblkhd
block = torch.ones(4 * 1024**2)  # 16 MiB
mapped_with_block = libc.mallinfo2().hblkhd - mapped
del block
blocks = [torch.ones(4 * 1024**2) for _ in range(3)]
del blocks
print(applied, mapped_with_block // 2**20, libc.mallinfo2().fordblks // 2**20)
"""


def _accounting(mode: str, env: dict[str, str] | None = None) -> tuple[str, int, int]:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_ACCOUNTING), mode],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    ).stdout.split()
    return out[0], int(out[1]), int(out[2])


@with_accounting
def test_large_blocks_come_from_the_heap_and_stay_there_when_freed():
    """Kept: a 16 MiB block is served from the heap, and 48 MiB freed stay in it for the next
    step. By default glibc maps the first such block on its own and unmaps it when freed."""
    applied, mapped, free = _accounting("keep")
    assert applied == "True"
    assert mapped == 0
    assert free >= 48
    _, mapped_by_default, _ = _accounting("default")
    assert mapped_by_default >= 16


@with_accounting
def test_the_users_own_malloc_variables_win():
    applied, _, _ = _accounting("keep", {"MALLOC_TRIM_THRESHOLD_": str(128 * 1024)})
    assert applied == "False"


def test_setting_is_made_once_per_process(monkeypatch):
    calls = []
    monkeypatch.setattr(host_memory, "_applied", None)
    monkeypatch.setattr(host_memory, "_set_thresholds", lambda: calls.append(1) or True)
    assert host_memory.keep_freed_memory() and host_memory.keep_freed_memory()
    assert calls == [1]
