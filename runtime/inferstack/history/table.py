"""The history table: one row per deployment, tier and bucket (`series.py` decides what goes in it).

Synchronous SQLAlchemy, like the rest of the store; the leader writes every deployment's samples of a
tick in one transaction, and prunes each tier's expired buckets in the same one.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Float, Index, Integer, String, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from inferstack.db import Base, Database
from inferstack.history.series import SERIES, TIERS, Point, Sample, Tier, bucket_start, fold, oldest_kept


class HistoryRow(Base):
    __tablename__ = "history"
    __table_args__ = (Index("ix_history_resolution_at", "resolution_s", "at"),)
    deployment_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    resolution_s: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[float] = mapped_column(Float, primary_key=True)
    samples: Mapped[int] = mapped_column(Integer)
    arrivals_rps: Mapped[float] = mapped_column(Float)
    completions_rps: Mapped[float] = mapped_column(Float)
    usd_per_hour: Mapped[float] = mapped_column(Float)
    p50_latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    p95_latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    p95_ttft_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    ready: Mapped[int] = mapped_column(Integer)
    starting: Mapped[int] = mapped_column(Integer)
    draining: Mapped[int] = mapped_column(Integer)
    min_replicas: Mapped[int] = mapped_column(Integer)
    max_replicas: Mapped[int] = mapped_column(Integer)
    target_latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    cost_usd: Mapped[float] = mapped_column(Float)


def _point(row: HistoryRow) -> Point:
    return Point(at=row.at, samples=row.samples, **{name: getattr(row, name) for name in SERIES})


def record(database: Database, samples: Sequence[tuple[str, Sample]], now: float,
           tiers: Sequence[Tier] = TIERS) -> None:
    """Fold each (deployment id, sample) into its bucket of every tier, and drop expired buckets."""
    with database.session() as s:
        for deployment_id, sample in samples:
            for tier in tiers:
                key = (deployment_id, tier.resolution_s, bucket_start(sample.at, tier.resolution_s))
                row = s.get(HistoryRow, key)
                point = fold(_point(row) if row is not None else None, sample, tier.resolution_s)
                if row is None:
                    row = HistoryRow(deployment_id=deployment_id, resolution_s=tier.resolution_s, at=point.at)
                    s.add(row)
                row.samples = point.samples
                for name in SERIES:
                    setattr(row, name, getattr(point, name))
        for tier in tiers:
            s.execute(delete(HistoryRow).where(HistoryRow.resolution_s == tier.resolution_s,
                                               HistoryRow.at < oldest_kept(tier, now)))


def window(database: Database, deployment_id: str, tier: Tier, since: float) -> list[Point]:
    """The deployment's buckets of `tier` from the one holding `since` on, oldest first."""
    with database.session() as s:
        rows = s.scalars(select(HistoryRow).where(
            HistoryRow.deployment_id == deployment_id, HistoryRow.resolution_s == tier.resolution_s,
            HistoryRow.at >= bucket_start(since, tier.resolution_s)).order_by(HistoryRow.at))
        return [_point(row) for row in rows]
