"""`GET /v1/deployments/{ref}/history`: what the console charts, from the store (`history/`).

A window from 15 minutes to 7 days, read from the tier that covers it (`series.tier_for`), with the
deployment's events of the same window, so scale-ups can be drawn on the same time axis. The caller's
own deployments only: anyone else's is a 404, as everywhere.
"""

from __future__ import annotations

import asyncio

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from inferstack.api.deployments import find
from inferstack.api.deps import services, tenant_id
from inferstack.errors import ApiError
from inferstack.history import table
from inferstack.history.series import BadWindow, parse_window, tier_for

router = APIRouter(tags=["deployments"])

MAX_EVENTS = 1000


@router.get("/v1/deployments/{ref}/history")
async def history(ref: str, request: Request, window: str = "1h", tenant: str = Depends(tenant_id)) -> Response:
    """`series`: columns oldest first (`at` is each bucket's start, in seconds since the epoch; the others
    as `history/series.py` says); `events`: the newest `MAX_EVENTS` events of the window."""
    svc = services(request)
    deployment = find(svc, tenant, ref)
    try:
        window_s = parse_window(window)
    except BadWindow as exc:
        raise ApiError(422, str(exc), code="invalid_window", param="window") from exc
    now = svc.clock.now()
    tier = tier_for(window_s)
    series = await asyncio.to_thread(table.window, svc.store, deployment.id, tier, now - window_s)
    events = await asyncio.to_thread(svc.store.list_events, deployment.id, MAX_EVENTS, now - window_s)
    # Written with orjson directly: FastAPI's encoder takes ~100 ms over a week of points.
    return Response(orjson.dumps({
        "object": "history", "deployment_id": deployment.id, "window_s": window_s, "now": now,
        "resolution_s": tier.resolution_s, "series": series,
        "events": [{"at": e.at, "kind": e.kind, "message": e.message, "data": e.data} for e in events]}),
        media_type="application/json")
