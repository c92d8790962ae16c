"""Laplace noise through OpenDP: the measurement, what it costs, and its release, in two steps.

The cost (OpenDP's privacy map at the given sensitivity) is known before any noise is drawn, so
the caller charges the budget first and releases second: a refused charge releases nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from citybase.errors import MissingDependency


def _dp() -> Any:
    try:
        import opendp.prelude as dp
    except ImportError as e:  # pragma: no cover - opendp is a dependency
        raise MissingDependency("differential privacy needs opendp (pip install opendp)") from e
    dp.enable_features("contrib")
    return dp


@dataclass(frozen=True)
class Pending:
    """A Laplace measurement over a vector, not yet applied."""

    measurement: Any
    values: list[Any]
    epsilon: float

    def release(self) -> list[Any]:
        return list(self.measurement(self.values))


def laplace(values: list[Any], *, sensitivity: float, epsilon: float, integer: bool = False) -> Pending:
    """Laplace noise (discrete for integers) calibrated to `epsilon` at L1 `sensitivity`.

    >>> p = laplace([10, 20], sensitivity=1, epsilon=0.5, integer=True)
    >>> round(p.epsilon, 6), len(p.release())
    (0.5, 2)
    """
    dp = _dp()
    if sensitivity <= 0:
        sensitivity = 1e-9  # all values clamped to zero: nothing to protect, any tiny scale will do
    scale = sensitivity / epsilon
    if integer:
        space = (dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int))
        m = dp.m.make_laplace(*space, scale=scale)
        spent = float(m.map(round(sensitivity)))
        vals: list[Any] = [int(v) for v in values]
    else:
        space = (dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l1_distance(T=float))
        m = dp.m.make_laplace(*space, scale=scale)
        spent = float(m.map(float(sensitivity)))
        vals = [float(v) for v in values]
    return Pending(m, vals, spent)
