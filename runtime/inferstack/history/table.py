"""The history table: one row per deployment, tier and bucket (`series.py` decides what goes in it).

Synchronous SQLAlchemy, like the rest of the store; the leader writes every deployment's samples of a
tick in one transaction, and prunes each tier's expired buckets in the same one.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Float, Index, Integer, String, delete, insert, select, update
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


_COLUMNS = ("samples", *SERIES)


def record(database: Database, samples: Sequence[tuple[str, Sample]], now: float,
           tiers: Sequence[Tier] = TIERS) -> None:
    """Fold each (deployment id, sample) into its bucket of every tier, and drop expired buckets. The
    buckets a tick's samples fall in are read with one query a tier and written in bulk: 200 deployments
    take ~0.1 s on SQLite, where a lookup and a write a bucket (600 of each) took ~1 s."""
    ids = {deployment_id for deployment_id, _ in samples}
    with database.session() as s:
        for tier in tiers:
            starts = {bucket_start(sample.at, tier.resolution_s) for _, sample in samples}
            query = select(HistoryRow.deployment_id, HistoryRow.at, *(getattr(HistoryRow, c) for c in _COLUMNS)).where(
                HistoryRow.resolution_s == tier.resolution_s, HistoryRow.at.in_(starts),
                HistoryRow.deployment_id.in_(ids))
            buckets = {(row[0], row[1]): Point(at=row[1], **dict(zip(_COLUMNS, row[2:], strict=True)))
                       for row in (s.execute(query) if samples else [])}
            stored = set(buckets)
            for deployment_id, sample in samples:
                key = (deployment_id, bucket_start(sample.at, tier.resolution_s))
                buckets[key] = fold(buckets.get(key), sample, tier.resolution_s)
            rows = [{"deployment_id": deployment_id, "resolution_s": tier.resolution_s, "at": at,
                     **{c: getattr(point, c) for c in _COLUMNS}} for (deployment_id, at), point in buckets.items()]
            if new := [row for row in rows if (row["deployment_id"], row["at"]) not in stored]:
                s.execute(insert(HistoryRow), new)
            if old := [row for row in rows if (row["deployment_id"], row["at"]) in stored]:
                s.execute(update(HistoryRow), old)
            s.execute(delete(HistoryRow).where(HistoryRow.resolution_s == tier.resolution_s,
                                               HistoryRow.at < oldest_kept(tier, now)))


def window(database: Database, deployment_id: str, tier: Tier, since: float) -> dict[str, list[float | int | None]]:
    """The deployment's buckets of `tier` from the one holding `since` on, oldest first, as columns: `at`
    (each bucket's start), `samples` and each of SERIES. Columns, because a chart draws a series at a
    time, and a week of them is a thousand rows whose field names need not be repeated."""
    names = ("at", "samples", *SERIES)
    query = select(*(getattr(HistoryRow, name) for name in names)).where(
        HistoryRow.deployment_id == deployment_id, HistoryRow.resolution_s == tier.resolution_s,
        HistoryRow.at >= bucket_start(since, tier.resolution_s)).order_by(HistoryRow.at)
    with database.session() as s:
        rows = s.execute(query).all()
    columns = list(zip(*rows, strict=True)) or [()] * len(names)
    return {name: list(column) for name, column in zip(names, columns, strict=True)}
