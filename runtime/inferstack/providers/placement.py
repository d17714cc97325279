"""Placement across the providers a control plane runs: which ones a replica may go to, in order. Pure.

A deployment names an ordered list (`providers`, e.g. kubernetes then aws) or none (the control
plane's first). Without `cloudburst` only the first is used; with it, a replica that finds a provider
full (`PoolFull`: Kubernetes pods unschedulable for a bounded time) goes to the next, and those burst
replicas are the first to go on scale-down (`autoscaler/victims.py`).
"""

from __future__ import annotations

from collections.abc import Sequence


class PlacementError(ValueError):
    """The deployment names a provider this control plane does not run."""


def placement_order(wanted: Sequence[str], cloudburst: bool, running: Sequence[str]) -> list[str]:
    """The providers to try for a replica, best first.

    running [kubernetes, aws]: wanted [] -> [kubernetes]; wanted [] with cloudburst -> [kubernetes, aws];
    wanted [aws] -> [aws]; wanted [kubernetes, aws] without cloudburst -> [kubernetes].
    """
    order = list(dict.fromkeys(wanted)) or list(running)
    missing = [name for name in order if name not in running]
    if missing:
        raise PlacementError(f"providers {', '.join(missing)} not run by this control plane (it runs "
                             f"{', '.join(running)}; INFERSTACK_PROVIDERS)")
    return order if cloudburst else order[:1]
