"""The counter-based random numbers of the generated kernels, mirrored on the host.

Dropout keeps element i of a launch when ``uniform01(seed, i) >= rate``; ``seed`` is fixed per (model seed,
node, training step) by :func:`step_seed`, so the backward recomputes the forward's mask and a run is
reproducible. The functions here compute exactly what ``hgc::uniform01`` computes on the device.
"""
from __future__ import annotations

import zlib

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_MASK64 = (1 << 64) - 1


def mix64(z: np.ndarray | int) -> np.ndarray:
    """splitmix64's finaliser on uint64 values (wrapping arithmetic)."""
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = z + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        return z ^ (z >> np.uint64(31))


def uniform01(seed: int, counters: np.ndarray) -> np.ndarray:
    """float32 uniforms in [0, 1) with 24 random bits, as the kernels draw them: draw k of seed's splitmix64
    stream gives counter 2k its bits 40..63 and counter 2k + 1 its bits 8..31."""
    c = np.asarray(counters, dtype=np.uint64)
    with np.errstate(over="ignore"):
        bits = mix64(np.uint64(seed & _MASK64) + (c >> np.uint64(1)) * _GOLDEN)
    shift = np.where(c & np.uint64(1), np.uint64(8), np.uint64(40))
    return ((bits >> shift) & np.uint64(0xFFFFFF)).astype(np.float32) * np.float32(1.0 / 16777216.0)


def dropout_keep(seed: int, n: int, rate: float) -> np.ndarray:
    """The keep mask (bool, n elements) of a Dropout launch with ``seed``."""
    return uniform01(seed, np.arange(n, dtype=np.uint64)) >= np.float32(rate)


def step_seed(base: int, node: str, step: int) -> int:
    """The seed of ``node``'s random kernels at training step ``step`` for model seed ``base``."""
    key = (int(base) & _MASK64) ^ (zlib.crc32(node.encode()) << 32)
    return int(mix64(int(mix64(key)) ^ (int(step) & _MASK64)))
