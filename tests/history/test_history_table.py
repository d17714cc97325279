"""The history table on SQLite and PostgreSQL: samples folded into every tier, pruned, read by window."""

from __future__ import annotations

import pytest

from inferstack.history import table
from inferstack.history.series import SERIES, TIERS, Sample, bucket_start, tier_for
from inferstack.store import Store

T0 = 1_699_999_800.0  # a multiple of 600: every tier's bucket starts here


def test_samples_land_in_every_tier_and_a_window_reads_one(store: Store) -> None:
    for i in range(12):  # two minutes, one sample every 10 s, replicas rising 1 -> 3
        at = T0 + i * 10
        table.record(store, [("dep-a", Sample(at=at, arrivals_rps=i, ready=1 + i // 5)),
                             ("dep-b", Sample(at=at, arrivals_rps=100))], at)
    fine = table.window(store, "dep-a", TIERS[0], T0)
    assert fine["at"] == [T0 + i * 10 for i in range(12)]
    assert fine["ready"] == [1] * 5 + [2] * 5 + [3] * 2
    minutes = table.window(store, "dep-a", TIERS[1], T0)
    assert (minutes["at"], minutes["samples"], minutes["ready"]) == ([T0, T0 + 60], [6, 6], [2, 3])
    assert minutes["arrivals_rps"][0] == pytest.approx(sum(range(6)) / 6)
    ten_minutes = table.window(store, "dep-a", TIERS[2], T0)
    assert (ten_minutes["samples"], ten_minutes["ready"]) == ([12], [3])
    assert set(table.window(store, "dep-b", TIERS[0], T0)["arrivals_rps"]) == {100}  # its own series
    assert set(table.window(store, "dep-c", TIERS[0], T0)) == {"at", "samples", *SERIES}  # none: empty columns
    assert table.window(store, "dep-c", TIERS[0], T0)["ready"] == []


def test_a_window_starts_at_the_bucket_holding_its_start(store: Store) -> None:
    for i in range(30):
        table.record(store, [("dep-a", Sample(at=T0 + i * 10))], T0 + i * 10)
    assert table.window(store, "dep-a", TIERS[0], T0 + 95)["at"][:2] == [T0 + 90, T0 + 100]


def test_expired_buckets_are_pruned_so_the_table_stays_bounded(store: Store) -> None:
    table.record(store, [("dep-a", Sample(at=T0, ready=1))], T0)
    later = T0 + TIERS[0].keep_s + 10
    table.record(store, [("dep-a", Sample(at=later, ready=2))], later)
    assert table.window(store, "dep-a", TIERS[0], T0)["at"] == [later - later % 10]
    assert table.window(store, "dep-a", TIERS[1], T0)["ready"] == [1, 2]  # the coarser tier keeps both
    much_later = T0 + TIERS[2].keep_s + 600
    table.record(store, [("dep-a", Sample(at=much_later))], much_later)
    # T0's 10-minute bucket is 8 days old now: gone; the one `later` fell in is younger and stays.
    assert table.window(store, "dep-a", TIERS[2], T0)["at"] == [bucket_start(later, 600),
                                                              bucket_start(much_later, 600)]


def test_a_week_of_history_is_read_in_about_a_thousand_points(store: Store) -> None:
    week = 7 * 24 * 3600
    tier = tier_for(week)
    samples_at = [T0 + i * 600 for i in range(week // 600)]
    # one sample per 10 minutes fills the coarse tier; one transaction keeps the test quick
    table.record(store, [("dep-a", Sample(at=at)) for at in samples_at], samples_at[-1], tiers=[tier])
    assert len(table.window(store, "dep-a", tier, samples_at[-1] - week)["at"]) == week // 600
