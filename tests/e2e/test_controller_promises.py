"""What docs/controller.md promises, seen through `inferstack serve` on SQLite and on PostgreSQL:
an immediate scale-down skips the stabilisation window once, repeated start failures fail the
deployment, and the cost grows with replica-seconds at the profile's price."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest

from support import SIM_SPEC, ControlPlane, sim_deployment, wait_for

GPU_L4_PRICE = 0.80  # USD per replica-hour with one GPU (inferstack models gpu.l4)


def info(rest: httpx.Client, dep_id: str) -> dict[str, Any]:
    return rest.get(f"/v1/deployments/{dep_id}").json()


def live_replicas(rest: httpx.Client, dep_id: str) -> int:
    return sum(r["status"] in ("starting", "ready") for r in info(rest, dep_id)["replicas"])


def test_immediate_scale_down_skips_the_stabilisation_window_once(plane_on_each_store: ControlPlane) -> None:
    plane = plane_on_each_store
    key = plane.create_key("team")
    rest = plane.client(key)
    dep_id = sim_deployment(plane, key, "wide", max_replicas=2, target_rps=1, metrics_window_s=2, panic_window_s=1,
                            stabilisation_window=600)
    client = openai.OpenAI(base_url=plane.url + "/v1", api_key=key, max_retries=0)
    for i in range(10):  # ~5 rps over the 2 s window against 1 per replica: grows to max_replicas (2)
        client.chat.completions.create(model="wide", messages=[{"role": "user", "content": f"{i}"}], max_tokens=1)
    wait_for(lambda: info(rest, dep_id)["ready_replicas"] == 2, timeout=30, what="2 ready replicas")
    # The load is gone once the 2 s metrics window has passed, but the 600 s stabilisation window
    # remembers the recommendation of 2: nothing shrinks.
    time.sleep(3)
    assert live_replicas(rest, dep_id) == 2
    patched = rest.patch(f"/v1/deployments/{dep_id}", json={"immediate_scale_down": True})
    assert patched.status_code == 200, patched.text
    wait_for(lambda: live_replicas(rest, dep_id) == 1, timeout=15, what="the shrink to 1 replica")


def test_a_deployment_fails_after_repeated_start_failures(plane_on_each_store: ControlPlane) -> None:
    plane = plane_on_each_store
    key = plane.create_key("team")
    rest = plane.client(key)
    # The engine rejects the flag and exits at once, every time.
    created = rest.post("/v1/deployments", json={**SIM_SPEC, "name": "doomed", "engine_args": ["--no-such-flag"]})
    dep_id = created.json()["id"]
    failed = wait_for(lambda: (d := info(rest, dep_id))["status"] == "failed" and d, timeout=30, what="failed")
    assert "in a row" in failed["status_reason"], failed["status_reason"]
    events = rest.get(f"/v1/deployments/{dep_id}/events", params={"limit": 200}).json()["data"]
    assert len([e for e in events if e["kind"] == "replica_failed"]) == 3
    time.sleep(0.5)  # a failed deployment starts no more replicas
    assert live_replicas(rest, dep_id) == 0


def test_cost_grows_with_replica_seconds_at_the_profiles_price(plane_on_each_store: ControlPlane) -> None:
    plane = plane_on_each_store
    key = plane.create_key("finance")
    rest = plane.client(key)
    # A sim replica on a priced profile: the local provider runs it, the profile sets the price.
    dep_id = sim_deployment(plane, key, "priced", hardware_profile="gpu.l4", min_replicas=2, max_replicas=2)
    wait_for(lambda: info(rest, dep_id)["ready_replicas"] == 2, timeout=30, what="2 ready replicas")
    before, before_at = info(rest, dep_id)["cost"], time.monotonic()
    time.sleep(2)
    after, after_at = info(rest, dep_id)["cost"], time.monotonic()
    assert after["price_per_replica_hour"] == GPU_L4_PRICE
    # Two replicas for ~2 s: ~4 replica-seconds (give or take a 0.1 s controller tick on each read).
    grown = after["replica_seconds"] - before["replica_seconds"]
    assert abs(grown - 2 * (after_at - before_at)) <= 2 * 0.3, (before, after)
    assert after["usd"] == pytest.approx(after["replica_seconds"] / 3600 * GPU_L4_PRICE, abs=2e-6)
    assert after["usd"] > before["usd"] > 0
