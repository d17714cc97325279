"""Bounds on an awake deployment's replica count: min/max replicas and the price cap. Pure; the
decision applies them in one step (`decision._bounded`), the only place bounds are applied."""

from __future__ import annotations

import math

from inferstack.spec import ScalingSpec


def clamp(desired: int, spec: ScalingSpec, price_per_replica_hour: float) -> tuple[int, str | None]:
    """Bound an awake deployment's replica count; return it and the bound that applied ("min", "max",
    "price_cap") or None.

    [min_replicas, max_replicas], then the price cap floor(max_price_per_hour / price per replica):
    gpu.h100 at 12.29/h with a 30/h cap -> at most 2 (30 / 12.29 = 2.44). The cap wins over
    min_replicas: it is a spending limit (the spec refuses a min_replicas the cap cannot pay for). A
    price of 0 (local CPU replicas) means no cap applies. The idle pause to 0 is decided before this
    step and is the only way below min_replicas.
    """
    bounded = min(max(desired, spec.min_replicas), spec.max_replicas)
    rule = None if bounded == desired else ("min" if desired < spec.min_replicas else "max")
    cap = _price_cap(spec, price_per_replica_hour)
    if cap is not None and bounded > cap:
        return cap, "price_cap"
    return bounded, rule


def _price_cap(spec: ScalingSpec, price_per_replica_hour: float) -> int | None:
    if spec.max_price_per_hour is None or price_per_replica_hour <= 0:
        return None
    # round(): 24.58 / 12.29 must be 2, not 1.9999999999999998 -> 1.
    return math.floor(round(spec.max_price_per_hour / price_per_replica_hour, 9))
