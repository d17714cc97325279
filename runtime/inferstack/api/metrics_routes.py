"""`/metrics`: Prometheus' text format, shown to each tenant for its own deployments only.

Every series the control plane exports about traffic carries a `deployment` label. A caller with a key
sees the series of its own deployments, nothing else (not another tenant's ids, nor totals that would
tell of their traffic); an operator who scrapes from a private network can set
INFERSTACK_METRICS_PUBLIC to see every series without a key.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.metrics_core import Metric
from starlette.responses import Response

from inferstack.api.deps import services, tenant_id

router = APIRouter(tags=["operations"])


class DeploymentSeries:
    """A registry view with only the samples labelled with one of `deployment_ids`."""

    def __init__(self, deployment_ids: set[str]) -> None:
        self._ids = deployment_ids

    def collect(self) -> Iterator[Metric]:
        for family in REGISTRY.collect():
            samples = [s for s in family.samples if s.labels.get("deployment") in self._ids]
            if samples:
                kept = Metric(family.name, family.documentation, family.type, family.unit)
                kept.samples = samples
                yield kept


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                             "description": "Prometheus text format."}})
async def metrics(request: Request) -> Response:
    svc = services(request)
    if svc.settings.metrics_public:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
    tenant = await tenant_id(request)
    mine = {d.id for d in svc.fleet.all() if d.tenant_id == tenant}
    return Response(generate_latest(DeploymentSeries(mine)), media_type=CONTENT_TYPE_LATEST)  # type: ignore[arg-type]
