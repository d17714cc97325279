"""The autoscaler's memory between ticks (`AutoscalerState`): passed in and out of `decide` explicitly
and stored as JSON by the controller, so a restart loses nothing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AutoscalerState:
    """The autoscaler's memory between ticks, passed in and out explicitly; stored as JSON.

    `recommendations` keeps only the entries that can still be the maximum of the stabilisation
    window: times rising, replica counts strictly falling (a newer, larger-or-equal recommendation
    outlives every older smaller one). So it holds at most max_replicas-ish entries however often
    the controller ticks, and its first entry is the window's maximum.
    """

    recommendations: tuple[tuple[float, int], ...] = ()  # (time, recommended replicas) in the window
    last_scale_up_at: float | None = None
    panic_until: float | None = None
    skip_stabilisation_once: bool = False  # set by an update with immediate_scale_down
    backlog_since: float | None = None  # since when requests have waited for a slot, tick after tick

    def to_json(self) -> dict[str, Any]:
        return {
            "recommendations": [[t, n] for t, n in self.recommendations],
            "last_scale_up_at": self.last_scale_up_at,
            "panic_until": self.panic_until,
            "skip_stabilisation_once": self.skip_stabilisation_once,
            "backlog_since": self.backlog_since,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> AutoscalerState:
        """Missing keys take their defaults, so `{}` (a deployment never decided on) is a fresh state."""
        return cls(
            recommendations=tuple((float(t), int(n)) for t, n in d.get("recommendations") or ()),
            last_scale_up_at=_optional_float(d.get("last_scale_up_at")),
            panic_until=_optional_float(d.get("panic_until")),
            skip_stabilisation_once=bool(d.get("skip_stabilisation_once", False)),
            backlog_since=_optional_float(d.get("backlog_since")),
        )


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)
