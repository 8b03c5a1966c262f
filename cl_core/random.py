"""Random streams per member: counter-based, so M members draw in one vectorised call.

Every random draw of training (batch order, replay draws, reservoir slots, Fisher samples, latent
noise, gates) comes from a :class:`MemberRandom`. Member m's numbers are a pure function of its
key (from its ``train_seed`` and the stream's purpose), the number of draws the stream has made
(the counter) and the element's index within the member's draw, so that

- member m of a population draws exactly what a run of m's configuration alone draws, whatever
  the other members are (the population contract, docs/population.md);
- one draw for all M members is a handful of elementwise tensor ops on the run's device, not M
  generator calls (a GPU population would otherwise spend its steps launching them);
- the same key and counter give the same bits on every device, and the state of a stream is two
  integers per member (a checkpoint stores it as is).

The bits are ``lowbias32`` (C. Wellons, "Prospecting for hash functions", 2018: an integer hash
whose output bits each flip with probability ~1/2 when any input bit flips) of the element's
hashed index combined with the per-member, per-draw key (itself a hash of the member's key and
the counter). Uniform floats take the top 24 bits (exact in
float32); normals are Box-Muller pairs (Box & Muller 1958).
"""

from __future__ import annotations

import math
import zlib

import torch

MASK32 = 0xFFFFFFFF
GOLDEN = 0x9E3779B9  # 2^32 / φ: spreads consecutive integers over the 32-bit range
_C1, _C2 = 0x7FEB352D, 0x846CA68B  # lowbias32's multipliers


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x · c) mod 2^32 for x, c in [0, 2^32): the product's low 32 bits, which an int64
    product keeps whether or not it wraps (two's complement; checked equal on CPU and GPU by
    tests/core/test_cuda.py)."""
    return (x * c) & MASK32


def hash32(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 of int64 values in [0, 2^32): a bijection of the 32-bit range."""
    x = x ^ (x >> 16)
    x = _mul32(x, _C1)
    x = x ^ (x >> 15)
    x = _mul32(x, _C2)
    return x ^ (x >> 16)


def _hash_int(value: int) -> int:
    """hash32 of one Python integer (keys and counters), in plain integer arithmetic."""
    x = value & MASK32
    x ^= x >> 16
    x = (x * _C1) & MASK32
    x ^= x >> 15
    x = (x * _C2) & MASK32
    return x ^ (x >> 16)


_INDEX_HASHES: dict[tuple[int, str], torch.Tensor] = {}


def _index_hash(n: int, device: torch.device) -> torch.Tensor:
    """hash32 of 0..n−1 (each element's position within a draw), cached per size and device."""
    key = (n, str(device))
    cached = _INDEX_HASHES.get(key)
    if cached is None:
        if len(_INDEX_HASHES) > 64:
            _INDEX_HASHES.clear()
        index = torch.arange(n, dtype=torch.int64, device=device)
        cached = _INDEX_HASHES[key] = hash32(_mul32(index, GOLDEN) ^ 0x5BD1E995)
    return cached


def member_key(seed: int, purpose: str) -> int:
    """The 32-bit key of one member's stream: its seed and the stream's purpose."""
    mixed = _hash_int(seed & MASK32) ^ _hash_int((seed >> 32) + GOLDEN)
    return _hash_int(mixed ^ zlib.crc32(purpose.encode()))


class MemberRandom:
    """One random stream per member; every method returns a tensor (M, *shape)."""

    def __init__(self, seeds: list[int], purpose: str, device: torch.device | str) -> None:
        self.purpose = purpose
        self.device = torch.device(device)
        self.keys = torch.tensor(
            [member_key(s, purpose) for s in seeds], dtype=torch.int64, device=self.device
        )
        self.counter = 0  # draws made so far (the same for every member)

    @property
    def size(self) -> int:
        return len(self.keys)

    # ---- raw bits ------------------------------------------------------------------------------
    def bits(self, *shape: int) -> torch.Tensor:
        """(M, *shape) int64 in [0, 2^32): the next draw of every member."""
        draw = _hash_int(self.counter * GOLDEN + 1)
        self.counter += 1
        per_member = hash32(self.keys ^ draw).unsqueeze(1)  # (M, 1): this draw's key
        index = _index_hash(math.prod(shape), self.device)  # (n,): each element's own bits
        return hash32(index ^ per_member).view(len(self.keys), *shape)

    # ---- distributions -------------------------------------------------------------------------
    def rand(self, *shape: int) -> torch.Tensor:
        """Uniform on [0, 1), float32, 24 random bits each."""
        return (self.bits(*shape) >> 8).to(torch.float32) * 2.0**-24

    def randn(self, *shape: int) -> torch.Tensor:
        """Standard normal, float32 (Box-Muller: two uniforms give two normals)."""
        n = math.prod(shape)
        half = (n + 1) // 2
        u = self.rand(2, half)
        u1 = 1.0 - u[:, 0]  # (0, 1]: log is finite
        radius = torch.sqrt(-2.0 * torch.log(u1))
        angle = (2 * math.pi) * u[:, 1]
        z = torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)
        return z[:, :n].reshape(len(self.keys), *shape)

    def randint(self, high: int, *shape: int) -> torch.Tensor:
        """Integers uniform on {0, ..., high − 1} (int64; bias below 2^-32 · high)."""
        return (self.bits(*shape) * high) >> 32

    def permutation(self, n: int) -> torch.Tensor:
        """(M, n): a uniformly random permutation of 0..n−1 per member (sorted random keys;
        ties, about n²/2^33 of them, keep index order)."""
        return torch.sort(self.bits(n), dim=1, stable=True).indices

    def subset(self, n: int, k: int) -> torch.Tensor:
        """(M, min(k, n)): distinct indices drawn uniformly from 0..n−1, in random order (the
        ``k`` largest of n random keys: a selection, not a sort of all n)."""
        return torch.topk(self.bits(n), min(k, n), dim=1).indices

    def categorical(self, probs: torch.Tensor) -> torch.Tensor:
        """One class index per row of ``probs`` (M, ..., K) (rows need not be normalised),
        by inverting the cumulative distribution; shape (M, ...)."""
        cdf = probs.cumsum(-1)
        u = self.rand(*probs.shape[1:-1]).to(cdf.dtype) * cdf[..., -1]
        index = torch.searchsorted(cdf.contiguous(), u.unsqueeze(-1), right=True).squeeze(-1)
        return index.clamp_max(probs.shape[-1] - 1)

    def fork(self, name: str) -> MemberRandom:
        """An independent stream per member keyed by this stream's keys and ``name`` (draws
        that must not depend on how many other draws were made, e.g. one per class)."""
        child = MemberRandom.__new__(MemberRandom)
        child.purpose, child.device, child.counter = f"{self.purpose}/{name}", self.device, 0
        child.keys = hash32(self.keys ^ _hash_int(zlib.crc32(name.encode())))
        return child

    # ---- members -------------------------------------------------------------------------------
    def select(self, keep: torch.Tensor) -> None:
        """Keep the members at positions ``keep``."""
        self.keys = self.keys.index_select(0, keep.to(self.device))

    def state_dict(self) -> dict:
        return {"keys": self.keys.cpu(), "counter": self.counter}

    def load_state_dict(self, state: dict) -> None:
        self.keys = state["keys"].to(self.device)
        self.counter = int(state["counter"])
