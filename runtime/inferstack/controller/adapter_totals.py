"""Each LoRA adapter's requests, tokens and latency since it was added, summed over every control-plane
instance and kept across restarts: what `status` shows, the same on every instance.

A gateway counts an adapter's requests in its deployment's `adapter_stats` (`gateway/adapter_usage.py`).
Every exchange round (`controller/window_exchange.py`) each instance adds what it counted since the
last round to the deployment's row here, with one atomic upsert (so two instances adding at once both
count), and reads the totals back into `adapter_totals`. `/metrics` keeps per-instance series, as
Prometheus expects; this table is for the one number a user asks for.
"""

from __future__ import annotations

from sqlalchemy import Float, Integer, String, delete, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, mapped_column

from inferstack.db import Base
from inferstack.fleet import AdapterStats, Fleet
from inferstack.store import Store

COUNTERS = ("requests", "failed", "prompt_tokens", "completion_tokens", "seconds")


class AdapterUsageRow(Base):
    __tablename__ = "adapter_usage"
    deployment_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    adapter: Mapped[str] = mapped_column(String(63), primary_key=True)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)


def add_usage(store: Store, counted: dict[tuple[str, str], AdapterStats]) -> None:
    """Add what this instance counted, by (deployment id, adapter), to the stored totals."""
    insert = postgresql_insert if store.engine.dialect.name == "postgresql" else sqlite_insert
    with store.session() as s:
        for (deployment_id, adapter), stats in counted.items():
            values = {name: getattr(stats, name) for name in COUNTERS}
            statement = insert(AdapterUsageRow).values(deployment_id=deployment_id, adapter=adapter, **values)
            s.execute(statement.on_conflict_do_update(
                index_elements=["deployment_id", "adapter"],
                set_={name: getattr(AdapterUsageRow, name) + statement.excluded[name] for name in COUNTERS}))


def forget_usage(store: Store, deployment_id: str, adapter: str) -> None:
    """An adapter taken out of its deployment: a later one under its name counts from zero."""
    with store.session() as s:
        s.execute(delete(AdapterUsageRow).where(AdapterUsageRow.deployment_id == deployment_id,
                                                AdapterUsageRow.adapter == adapter))


def stored_totals(store: Store) -> dict[str, dict[str, AdapterStats]]:
    """Every adapter's totals, by deployment id and adapter name."""
    totals: dict[str, dict[str, AdapterStats]] = {}
    with store.session() as s:
        for row in s.scalars(select(AdapterUsageRow)):
            totals.setdefault(row.deployment_id, {})[row.adapter] = AdapterStats(
                **{name: getattr(row, name) for name in COUNTERS})
    return totals


def take_counted(fleet: Fleet) -> dict[tuple[str, str], AdapterStats]:
    """What the gateway counted since the last round, leaving zeroes to count on. Synchronous: no request
    can be counted between the read and the reset."""
    counted = {}
    for deployment in fleet.all():
        for adapter, stats in deployment.adapter_stats.items():
            if stats.requests:
                counted[(deployment.id, adapter)] = stats
        deployment.adapter_stats = {}
    return counted


def give_back(fleet: Fleet, counted: dict[tuple[str, str], AdapterStats]) -> None:
    """A round whose write failed: its counts go back to be added in the next round, with what came since."""
    for (deployment_id, adapter), stats in counted.items():
        deployment = fleet.get(deployment_id)
        if deployment is not None:
            deployment.adapter_stats[adapter] = stats.plus(deployment.adapter_stats.get(adapter, AdapterStats()))
