"""Leader election on each store: one leader at a time, a new term (epoch) at each change, and a
SQLite file refused to a second host."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from inferstack.clock import ManualClock
from inferstack.controller.leadership import (
    SQLITE_HOST_STALE_S,
    AnotherHost,
    FileLeadership,
    Leadership,
    PostgresLeadership,
    check_single_host,
)
from inferstack.server import open_database
from inferstack.store import Store
from support import postgres_schema


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def candidates(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, list[Leadership]]]:
    """Three instances of one control plane on one store."""
    clock = ManualClock()
    with ExitStack() as stack:
        if request.param == "sqlite":
            store = open_database(f"sqlite:///{tmp_path / 'state.db'}")
            made: list[Leadership] = [FileLeadership(store, tmp_path / "leader.lock", f"h:{i}", "h", clock.now)
                                      for i in range(3)]
        else:
            store = open_database(stack.enter_context(postgres_schema()))
            made = [PostgresLeadership(store, f"h:{i}", "h", clock.now) for i in range(3)]
        yield store, made
        store.engine.dispose()


async def next_poll_leads(candidate: Leadership, polls: int = 20) -> bool:
    """The server ends a closed session a moment after the client goes: a follower polls (every 0.5 s)."""
    for _ in range(polls):
        if await candidate.try_lead():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_one_leads_and_the_next_takes_over_with_a_new_epoch(candidates: tuple[Store, list[Leadership]]) -> None:
    _, (first, second, third) = candidates
    try:
        assert await first.try_lead()
        assert not await second.try_lead() and not await third.try_lead()
        assert await first.still_leading()
        term = first.epoch

        await first.resign()  # or dies: the lock goes with its session or descriptor
        assert not await first.still_leading()
        assert await next_poll_leads(second)
        assert not await third.try_lead()
        assert second.epoch == term + 1
    finally:
        for candidate in (first, second, third):
            await candidate.resign()


async def test_two_control_planes_on_two_postgres_schemas_each_have_a_leader() -> None:
    clock = ManualClock()
    with postgres_schema() as url_a, postgres_schema() as url_b:
        store_a, store_b = open_database(url_a), open_database(url_b)
        a, b = PostgresLeadership(store_a, "a", "h", clock.now), PostgresLeadership(store_b, "b", "h", clock.now)
        try:
            assert await a.try_lead() and await b.try_lead()
        finally:
            await a.resign()
            await b.resign()
            store_a.engine.dispose()
            store_b.engine.dispose()


async def test_a_sqlite_store_led_from_another_host_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    clock = ManualClock()
    store = open_database(f"sqlite:///{tmp_path / 'state.db'}")
    leader = FileLeadership(store, tmp_path / "leader.lock", "alpha:1", "alpha", clock.now)
    assert await leader.try_lead()
    check_single_host(store, "alpha", clock.now())  # the same host may run more instances
    with pytest.raises(AnotherHost, match=r"in use by a control plane on host 'alpha'.*postgresql://"):
        check_single_host(store, "beta", clock.now())
    await leader.resign()
    clock.advance(SQLITE_HOST_STALE_S + 1)  # that host is gone for good: the file may move
    check_single_host(store, "beta", clock.now())
    store.engine.dispose()
