"""A LoRA adapter's usage as `status` shows it: what every instance counted, added up in the store, on
SQLite and PostgreSQL (`controller/adapter_totals.py`, through the window exchange's rounds)."""

from __future__ import annotations

from pathlib import Path

import pytest
from controller_support import build_parts
from sqlalchemy.exc import OperationalError

from inferstack.clock import ManualClock
from inferstack.controller.window_exchange import WindowExchange
from inferstack.fleet import Fleet, LiveDeployment
from inferstack.gateway.adapter_usage import record
from inferstack.lora import AdapterSpec
from inferstack.spec import DeploymentSpec, DeploymentStatus
from inferstack.store import Store


def instance(store: Store, name: str) -> tuple[WindowExchange, LiveDeployment]:
    """One instance's view of the same deployment, and its exchange."""
    spec = DeploymentSpec(hf_model_id="org/m", engine="sim", hardware_profile="cpu", name="chat")
    deployment, fleet = LiveDeployment(id="dep-shared", tenant_id="t", name="chat", spec=spec,
                                       status=DeploymentStatus.running, status_reason="", created_at=0.0,
                                       awake_since=0.0), Fleet()
    fleet.add(deployment)
    return WindowExchange(store, fleet, ManualClock(), name), deployment


async def test_two_instances_counts_add_up_and_show_alike(store: Store) -> None:
    (exchange_a, seen_a), (exchange_b, seen_b) = instance(store, "a"), instance(store, "b")
    for _ in range(2):
        record(seen_a, "sql", 200, 0.5, {"prompt_tokens": 10, "completion_tokens": 3})
    record(seen_b, "sql", 500, 1.0, {})
    record(seen_b, "sql", 200, 1.5, {"prompt_tokens": 1, "completion_tokens": 4})
    assert seen_a.adapter_usage("sql").requests == 2  # counted here, not yet added: shown at once

    await exchange_a.exchange(leading=True)
    await exchange_b.exchange(leading=False)
    await exchange_a.exchange(leading=True)  # a reads b's counts in its next round
    for seen in (seen_a, seen_b):
        usage = seen.adapter_usage("sql")
        assert (usage.requests, usage.failed, usage.prompt_tokens, usage.completion_tokens) == (4, 1, 21, 10)
        assert usage.seconds == pytest.approx(3.5)
    # A round with nothing new adds nothing again.
    await exchange_b.exchange(leading=False)
    assert seen_b.adapter_usage("sql").requests == 4
    # A new instance (a restart) shows the totals from its first round.
    exchange_c, seen_c = instance(store, "c")
    await exchange_c.exchange(leading=False)
    assert seen_c.adapter_usage("sql").requests == 4


async def test_counts_whose_write_failed_are_added_in_a_later_round(store: Store,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    exchange, seen = instance(store, "a")
    record(seen, "sql", 200, 0.5, {})
    real_session = store.session

    def down():  # type: ignore[no-untyped-def]
        raise OperationalError("insert", {}, Exception("the database is away"))

    monkeypatch.setattr(store, "session", down)
    with pytest.raises(OperationalError):
        await exchange.exchange(leading=False)
    record(seen, "sql", 200, 0.5, {})  # counted while the database was away
    monkeypatch.setattr(store, "session", real_session)
    await exchange.exchange(leading=False)
    assert seen.adapter_totals["sql"].requests == 2 and seen.adapter_usage("sql").requests == 2


async def test_an_adapter_removed_and_added_again_counts_from_zero(tmp_path: Path) -> None:
    parts = await build_parts(tmp_path, "http://127.0.0.1:9")
    try:
        adapter = AdapterSpec(name="sql", source="/adapters/sql")
        deployment = await parts.create(name="chat", adapters=[adapter.model_dump()])
        exchange = WindowExchange(parts.store, parts.fleet, parts.clock, "a")
        record(deployment, "sql", 200, 0.5, {})
        await exchange.exchange(leading=False)
        assert deployment.adapter_usage("sql").requests == 1
        await parts.actions.remove_adapter(deployment, "sql")
        await parts.actions.add_adapter(deployment, adapter)
        await exchange.exchange(leading=False)
        assert deployment.adapter_usage("sql").requests == 0
    finally:
        await parts.close()
