"""Seeded randomness for the sample city.

Every part of the city draws from its own stream, keyed by the seed and the part's name, so that
adding or resizing one part never shifts the numbers of another (the roads stay the same when the
hotline gets more events). Row-level noise for the benchmark points comes from a counter-based
hash instead of a stream, so that a row's values depend on its index only, not on chunking.
"""

from __future__ import annotations

import zlib

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
U64 = NDArray[np.uint64]
Bool = NDArray[np.bool_]
Times = NDArray[np.datetime64]
Geoms = NDArray[np.object_]  # shapely geometries


def stream(seed: int, *names: str) -> np.random.Generator:
    """An independent generator for one named part of the city."""
    words = [zlib.crc32(n.encode("utf-8")) for n in names]
    return np.random.default_rng(np.random.SeedSequence([seed % (1 << 63), *words]))


def hash64(x: U64, key: int) -> U64:
    """SplitMix64 of `x` under `key`: a fast, stateless, well-mixed 64-bit hash (wraps on purpose)."""
    z = x + np.uint64((key * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % (1 << 64))
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    out: U64 = z ^ (z >> np.uint64(31))
    return out


def hash_uniform(x: U64, key: int) -> F64:
    """Uniform [0, 1) numbers, one per counter value."""
    out: F64 = (hash64(x, key) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
    return out


def hash_normal(x: U64, key: int) -> F64:
    """Standard normal numbers, one per counter value (Box-Muller on two hashed uniforms)."""
    u1 = hash_uniform(x, key * 2 + 1)
    u2 = hash_uniform(x, key * 2 + 2)
    out: F64 = np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)
    return out


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], width: float) -> F64:
    """Rows of smooth zero-mean unit-variance noise (white noise low-passed with a Gaussian).

    `width` is the Gaussian's standard deviation in steps: pollution episodes last days, so the
    air-quality series use a width of a day or two. Periodic at the ends, which nobody sees.
    """
    n = shape[1]
    white = rng.standard_normal(shape)
    freq = np.fft.rfftfreq(n)
    gain = np.exp(-2.0 * (np.pi * freq * width) ** 2)
    out: F64 = np.fft.irfft(np.fft.rfft(white, axis=1) * gain, n=n, axis=1)
    out = out - out.mean(axis=1, keepdims=True)  # the kept DC term would dominate short series
    sd = out.std(axis=1, keepdims=True)
    out = out / np.where(sd > 0, sd, 1.0)
    return out


def weighted_choice(rng: np.random.Generator, weights: F64, k: int) -> I64:
    """`k` distinct indices drawn with probability proportional to `weights`, highest priority first.

    Efraimidis-Spirakis keys: vectorized where `rng.choice(replace=False, p=...)` is not.
    """
    keys = np.log(rng.random(len(weights))) / np.maximum(weights, 1e-300)
    k = min(k, len(weights))
    top = np.argpartition(-keys, k - 1)[:k] if k < len(weights) else np.arange(len(weights))
    out: I64 = top[np.argsort(-keys[top], kind="stable")].astype(np.int64)
    return out


def pick(rng: np.random.Generator, n: int, probs: list[float] | F64) -> I64:
    """`n` category indices drawn with the given probabilities (they need not sum to exactly 1)."""
    p = np.asarray(probs, dtype=np.float64)
    cum = np.cumsum(p / p.sum())
    out: I64 = np.minimum(np.searchsorted(cum, rng.random(n), side="right"), len(p) - 1).astype(np.int64)
    return out
