"""Which replicas go when a deployment shrinks."""

from __future__ import annotations

from inferstack.autoscaler.victims import choose_victims
from inferstack.fleet import LiveReplica
from inferstack.providers.base import ReplicaHandle
from inferstack.spec import ReplicaStatus


def replica(rid: str, status: ReplicaStatus = ReplicaStatus.ready, outstanding: int = 0,
            started_at: float = 0.0, burst: bool = False) -> LiveReplica:
    return LiveReplica(handle=ReplicaHandle(rid, f"http://{rid}", None, "", burst=burst), api_key="k", status=status,
                       started_at=started_at, outstanding=outstanding)


def test_victims_are_not_ready_replicas_first_then_the_least_loaded() -> None:
    starting = replica("starting", ReplicaStatus.starting)
    loaded = replica("loaded", outstanding=5)
    light_old = replica("light-old", outstanding=1, started_at=1.0)
    light_new = replica("light-new", outstanding=1, started_at=2.0)
    draining = replica("draining", ReplicaStatus.draining)
    victims = choose_victims([loaded, light_old, starting, light_new, draining], 3)
    assert [v.replica_id for v in victims] == ["starting", "light-new", "light-old"]


def test_batch_lines_in_flight_count_as_load() -> None:
    # One interactive request vs none, but four batch lines on the idle-looking one: it has more to drain.
    interactive = replica("interactive", outstanding=1)
    batching = replica("batching")
    batching.batch_outstanding = 4
    assert [v.replica_id for v in choose_victims([batching, interactive], 1)] == ["interactive"]


def test_burst_replicas_go_before_the_first_providers_even_when_busier() -> None:
    # Kubernetes full at 2, two burst to AWS: scaling 4 -> 2 removes the AWS ones, loaded or not.
    on_prem = [replica("k8s-1", outstanding=0), replica("k8s-2", outstanding=0)]
    burst = [replica("aws-1", outstanding=3, burst=True), replica("aws-2", outstanding=1, burst=True)]
    victims = choose_victims([*on_prem, *burst], 2)
    assert sorted(v.replica_id for v in victims) == ["aws-1", "aws-2"]
    assert choose_victims([*on_prem, *burst, replica("new", ReplicaStatus.starting)], 1)[0].replica_id == "new"
