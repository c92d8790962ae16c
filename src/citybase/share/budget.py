"""Per-consumer differential-privacy budgets: epsilon spent per (consumer, dataset), enforced.

A spend is one conditional UPDATE (`spent = spent + e WHERE spent + e <= budget`), atomic in both
SQLite and PostgreSQL, so concurrent queries cannot overdraw together. Spending happens before
anything is released: a refused query releases nothing and costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import Column, DateTime, Engine, Float, Integer, String, Table, Text, insert, select, update

from citybase.errors import InputError
from citybase.meta import METADATA, ensure
from citybase.share._sql import insert_ignore
from citybase.share.errors import BudgetExhausted

#: Float slack, so that spending a budget in equal parts reaches it exactly.
SLACK = 1e-9

budgets_table = Table(
    "share_privacy_budget",
    METADATA,
    Column("consumer", String(63), primary_key=True),
    Column("dataset", String(63), primary_key=True),
    Column("spent", Float, nullable=False),
)
spends_table = Table(
    "share_privacy_spends",
    METADATA,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("consumer", String(63), nullable=False, index=True),
    Column("dataset", String(63), nullable=False),
    Column("epsilon", Float, nullable=False),
    Column("at", DateTime, nullable=False),
    Column("note", Text, nullable=False),
)


class BudgetState(BaseModel):
    consumer: str
    dataset: str
    budget: float
    spent: float

    @property
    def left(self) -> float:
        return max(0.0, self.budget - self.spent)


class Budgets:
    def __init__(self, engine: Engine, clock: Callable[[], datetime]) -> None:
        self.engine, self.clock = engine, clock
        ensure(engine, budgets_table, spends_table)

    def spent(self, consumer: str, dataset: str) -> float:
        t = budgets_table
        with self.engine.connect() as c:
            v = c.execute(select(t.c.spent).where(t.c.consumer == consumer, t.c.dataset == dataset)).scalar()
        return float(v or 0.0)

    def state(self, consumer: str, dataset: str, budget: float) -> BudgetState:
        return BudgetState(
            consumer=consumer, dataset=dataset, budget=budget, spent=self.spent(consumer, dataset)
        )

    def spend(self, consumer: str, dataset: str, epsilon: float, budget: float, note: str = "") -> float:
        """Charge `epsilon`; returns what is left, or raises BudgetExhausted and charges nothing."""
        if not epsilon > 0:
            raise InputError(f"epsilon must be positive, not {epsilon}")
        t = budgets_table
        with self.engine.begin() as c:
            insert_ignore(c, t, {"consumer": consumer, "dataset": dataset, "spent": 0.0})
            n = c.execute(
                update(t)
                .where(
                    t.c.consumer == consumer, t.c.dataset == dataset, t.c.spent + epsilon <= budget + SLACK
                )
                .values(spent=t.c.spent + epsilon)
            ).rowcount
            if n != 1:
                spent = c.execute(
                    select(t.c.spent).where(t.c.consumer == consumer, t.c.dataset == dataset)
                ).scalar()
                raise BudgetExhausted(
                    f"privacy budget of {consumer!r} on {dataset!r} is {budget:g}; {float(spent or 0):.4g} "
                    f"spent, {epsilon:g} more asked"
                )
            c.execute(
                insert(spends_table).values(
                    consumer=consumer, dataset=dataset, epsilon=epsilon, at=self.clock(), note=note
                )
            )
            left = c.execute(
                select(t.c.spent).where(t.c.consumer == consumer, t.c.dataset == dataset)
            ).scalar()
        return max(0.0, budget - float(left or 0.0))
