"""`inferstack serve` on PostgreSQL through a TCP proxy the test cuts and restores.

During the outage: requests keep being served, a replica killed is replaced (in the live view), and
routes that need the database answer an OpenAI-shaped 503 with Retry-After. After it: the database
agrees with the live view within seconds, with the outage's events. Prints requests lost and the time
to converge.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import openai
import psutil
import pytest

from support import ControlPlane, postgres_schema, sim_deployment, wait_for
from tcp_proxy import proxied

pytestmark = pytest.mark.postgres


class Load:
    """Chat requests one after another through the official client, counted, until stopped (bounded)."""

    def __init__(self, url: str, key: str, model: str, max_requests: int = 3000) -> None:
        self.client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=10)
        self.model = model
        self.max_requests = max_requests
        self.sent = 0
        self.lost: list[str] = []
        self.replicas_seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        while not self._stop.is_set() and self.sent < self.max_requests:
            self.sent += 1
            try:
                raw = self.client.chat.completions.with_raw_response.create(
                    model=self.model, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
                raw.parse()
                self.replicas_seen.add(raw.headers["x-inferstack-replica"])
            except openai.OpenAIError as exc:
                self.lost.append(repr(exc))
            time.sleep(0.02)


def engine_of(plane: ControlPlane, replica_id: str) -> psutil.Process:
    assert plane.process is not None
    for process in psutil.Process(plane.process.pid).children(recursive=True):
        env = process.environ()
        if env.get("INFERSTACK_REPLICA_ID") == replica_id and "reaper" not in " ".join(process.cmdline()):
            return process
    raise AssertionError(f"no engine process for {replica_id}")


def test_the_control_plane_rides_out_a_database_outage(tmp_path: Path) -> None:
    with postgres_schema() as url, proxied(url) as (through_proxy, proxy):
        plane = ControlPlane(home=tmp_path / "home", env_extra={"INFERSTACK_DATABASE_URL": through_proxy}).start()
        try:
            key = plane.create_key("team")
            rest = plane.client(key)
            dep_id = sim_deployment(plane, key, "steady", min_replicas=2, max_replicas=2)
            wait_for(lambda: rest.get(f"/v1/deployments/{dep_id}").json()["ready_replicas"] == 2, timeout=30)
            before = {r["id"] for r in rest.get(f"/v1/deployments/{dep_id}/replicas").json()["data"]}
            victim = sorted(before)[0]

            with Load(plane.url, key, "steady") as load:
                wait_for(lambda: load.sent > 20, timeout=10, what="traffic")
                proxy.cut()
                refused = rest.get(f"/v1/deployments/{dep_id}/replicas")
                assert refused.status_code == 503, refused.text
                assert refused.headers["retry-after"] == "5"
                assert refused.json()["error"]["code"] == "database_unavailable"
                unknown_key = httpx.get(f"{plane.url}/sg_inf/{dep_id}", headers={"Authorization": "Bearer isk-new"})
                assert unknown_key.status_code == 503 and unknown_key.json()["success"] is False  # the compat shape
                new_caller = httpx.post(f"{plane.url}/v1/chat/completions", headers={"Authorization": "Bearer isk-new"},
                                        json={"model": "steady", "messages": [{"role": "user", "content": "hi"}]})
                assert new_caller.status_code == 503 and new_caller.headers["retry-after"] == "5"  # a key not cached
                assert new_caller.json()["error"]["code"] == "database_unavailable"

                engine_of(plane, victim).kill()  # a replica dies while the database is away
                wait_for(lambda: load.replicas_seen - before, timeout=20, what="a replacement serving")
                sent_during_outage = load.sent
                time.sleep(1.0)  # the outage goes on a little with the replacement serving

                proxy.restore()
                restored = time.monotonic()

                def converged() -> bool:
                    live = rest.get(f"/v1/deployments/{dep_id}/replicas")
                    if live.status_code != 200:
                        return False
                    rows = {r["id"]: r["status"] for r in live.json()["data"]}
                    everything = {r["id"]: r for r in rest.get(f"/v1/deployments/{dep_id}/replicas",
                                                               params={"all": True}).json()["data"]}
                    return (set(rows.values()) == {"ready"} and len(rows) == 2 and victim not in rows
                            and everything.get(victim, {}).get("status") == "failed")

                wait_for(converged, timeout=15, interval=0.1, what="the database to agree with the live view")
                converge_s = time.monotonic() - restored
                requests_during = load.sent - sent_during_outage

            events = rest.get(f"/v1/deployments/{dep_id}/events", params={"limit": 200}).json()["data"]
            kinds = {(e["kind"], e["message"].split()[1]) for e in events if e["kind"].startswith("replica_")}
            new = (load.replicas_seen - before).pop()
            assert ("replica_failed", victim) in kinds and ("replica_ready", new) in kinds
            print(f"\ndatabase outage: {load.sent} requests, {len(load.lost)} lost {load.lost[:3]}, "
                  f"{requests_during}+ served after the replacement, converged {converge_s:.2f} s after recovery")
            assert len(load.lost) <= 1, load.lost  # at most a request in flight on the killed replica
            assert converge_s < 5
        finally:
            plane.stop()
