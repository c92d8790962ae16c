"""The words of the sample city, loaded once from vocab.yaml, as numpy lookup tables."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

import numpy as np
import yaml
from numpy.dtypes import StringDType
from numpy.typing import NDArray

STR = StringDType()
Str = NDArray[Any]  # numpy StringDType arrays (numpy's typing has no narrower alias)


def strs(values: list[str] | str) -> Str:
    return np.array(list(values), dtype=STR)


@dataclass(frozen=True)
class Vocab:
    raw: dict[str, Any]
    place_chars: Str
    surnames: Str
    given: Str
    typo: dict[str, str]
    trad: dict[str, str]

    def lookup(self, table: Str, mapping: dict[str, str]) -> Str:
        """`table` with each entry replaced by its mapping (or itself): a per-index variant table."""
        return strs([mapping.get(c, c) for c in table.tolist()])

    def array(self, key: str) -> Str:
        return strs(list(self.raw[key]))


@cache
def vocab() -> Vocab:
    text = files("citybase.sim").joinpath("vocab.yaml").read_text(encoding="utf-8")
    raw: dict[str, Any] = yaml.safe_load(text)
    return Vocab(
        raw=raw,
        place_chars=strs(raw["place_chars"]),
        surnames=strs(raw["surnames"]),
        given=strs(raw["given_chars"]),
        typo={str(k): str(v) for k, v in raw["typos"].items()},
        trad={str(k): str(v) for k, v in raw["traditional"].items()},
    )


def translate(a: Str, mapping: dict[str, str]) -> Str:
    """Replace characters by `mapping`, element-wise (numpy's stubs want a str table; a dict works)."""
    out: Str = np.char.translate(a, str.maketrans(mapping))  # type: ignore[call-overload]
    return out


def words(rng: np.random.Generator, n: int) -> Str:
    """`n` two-character place words, distinct while the 87 x 86 combinations last."""
    chars = vocab().place_chars
    m = len(chars)
    space = m * (m - 1)
    flat = rng.choice(space, size=n, replace=False) if n <= space else rng.integers(0, space, n)
    a = flat // (m - 1)
    b = flat % (m - 1)
    b = b + (b >= a)  # never the same character twice
    out: Str = np.strings.add(chars[a], chars[b])
    return out
