"""`GET /v1/deployments/{ref}/history` on a real control plane: what the leader samples, the window's
tier, the caller's tenant only, bad windows refused in the API's shape, history kept across a restart, and
the same numbers at `/metrics` for the Grafana dashboard."""

from __future__ import annotations

import json
import re
from pathlib import Path

from support import ROOT, ControlPlane, sim_deployment, wait_for


def test_history_is_sampled_kept_per_tenant_and_survives_a_restart(tmp_path: Path) -> None:
    plane = ControlPlane(home=tmp_path / "home", env_extra={"INFERSTACK_HISTORY_INTERVAL_S": "0.2"}).start()
    try:
        key, other = plane.create_key("owner"), plane.create_key("neighbour")
        deployment_id = sim_deployment(plane, key, "charted", min_replicas=2, max_replicas=2)
        rest = plane.client(key)

        def with_two_ready() -> list[float]:
            series = rest.get(f"/v1/deployments/{deployment_id}/history", params={"window": "15m"}).json()["series"]
            return [at for at, ready in zip(series["at"], series["ready"], strict=True) if ready == 2]

        before = wait_for(with_two_ready, what="a sample with both replicas ready")
        history = rest.get(f"/v1/deployments/{deployment_id}/history", params={"window": "15m"}).json()
        assert (history["window_s"], history["resolution_s"]) == (900, 10)
        assert set(history["series"]["min_replicas"]) == {2}
        assert any(e["kind"] == "status" for e in history["events"])
        assert plane.client(other).get(f"/v1/deployments/{deployment_id}/history").status_code == 404
        # The traffic window is the leader's, published each exchange round: on a loaded machine the
        # replicas can be ready before the first round.
        listed = wait_for(lambda: (d := rest.get("/v1/deployments").json()["data"][0])["metrics"] and d,
                          what="the deployment's published traffic window")
        assert listed["desired_replicas"] == 2 and listed["metrics"]["arrivals_per_s"] == 0
        assert listed["cost"]["usd_per_hour"] == 0  # the cpu profile is free

        refused = rest.get(f"/v1/deployments/{deployment_id}/history", params={"window": "30d"})
        assert refused.status_code == 422
        assert refused.json()["error"]["param"] == "window"
        week = rest.get(f"/v1/deployments/{deployment_id}/history", params={"window": "7d"}).json()
        assert (week["window_s"], week["resolution_s"]) == (604_800, 600)
    finally:
        plane.stop()

    plane.start()  # same home, same database
    try:
        after = plane.client(key).get(f"/v1/deployments/{deployment_id}/history", params={"window": "15m"}).json()
        assert before[0] in after["series"]["at"]
    finally:
        plane.stop()



def test_metrics_carry_every_series_the_grafana_dashboard_queries_for_the_callers_deployments(tmp_path: Path) -> None:
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    queried = {re.sub(r"_bucket$", "", name) for panel in dashboard["panels"] for target in panel["targets"]
               for name in re.findall(r"inferstack_[a-z_]+", target["expr"])}
    assert len(queried) >= 6
    plane = ControlPlane(home=tmp_path / "home", env_extra={"INFERSTACK_HISTORY_INTERVAL_S": "0.2"}).start()
    try:
        key, other = plane.create_key("grafana"), plane.create_key("elsewhere")
        deployment_id = sim_deployment(plane, key, "scraped")
        rest = plane.client(key)
        assert rest.post("/v1/chat/completions", json={"model": "scraped", "max_tokens": 2,
                                                        "messages": [{"role": "user", "content": "hi"}]}).is_success

        def exported() -> set[str]:
            text = rest.get("/metrics").text
            return {name for name in queried if re.search(rf'^{name}(_bucket)?{{[^}}]*deployment="{deployment_id}"',
                                                          text, re.MULTILINE)}

        wait_for(lambda: exported() == queried, what=f"every queried series: {queried}")
        assert deployment_id not in plane.client(other).get("/metrics").text
    finally:
        plane.stop()
