"""The autoscalers inferstack is measured against, as policies for the same replay (`World(policy=...)`).

Each reads what production's `observe` reads and keeps its own memory; admission, the metrics window
and the replicas are the same for all. Their defaults are the published ones:
- HPA-like: utilisation (rps over rated capacity) targeted at 80%, scale-up at once, scale-down only to
  the highest recommendation of the last 300 s (Kubernetes' default stabilisation).
- KPA-like (Knative): average concurrency over a 60-s stable window against a per-replica target, a
  6-s panic window that takes over when it wants 2x the replicas, scale to zero 30 s after traffic stops.
- SkyServe-like: requests per second over 60 s against target_rps, scaling up only after 300 s and down
  only after 1,200 s of agreeing recommendations (SkyServe's upscale/downscale delays).
- static: the replicas the trace's peak 10-s bucket needs, all the time.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

from inferstack.autoscaler.decision import Decision, Observation
from inferstack.autoscaler.observe import observe
from inferstack.fleet import LiveDeployment


def _decision(deployment: LiveDeployment, desired: int, rule: str, reason: str) -> Decision:
    bounded = min(desired, deployment.spec.max_replicas)
    return Decision(bounded, reason, rule, deployment.autoscaler_state, {})


def _ceil(value: float) -> int:
    return max(0, math.ceil(round(value, 9)))


def _demand(obs: Observation) -> bool:
    return obs.stats.rps > 0 or obs.stats.in_flight > 0 or obs.queued_requests > 0


class _WindowMax:
    """The highest value seen over the last `window_s` seconds."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._seen: deque[tuple[float, float]] = deque()

    def add(self, now: float, value: float) -> float:
        while self._seen and self._seen[0][0] <= now - self.window_s:
            self._seen.popleft()
        self._seen.append((now, value))
        return max(v for _, v in self._seen)


class HpaLike:
    def __init__(self, utilisation_target: float = 0.8, stabilisation_s: float = 300.0) -> None:
        self.target = utilisation_target
        self._window = _WindowMax(stabilisation_s)

    def __call__(self, deployment: LiveDeployment, now: float) -> Decision:
        obs = observe(deployment, now)
        want = _ceil(obs.stats.rps / (self.target * deployment.spec.target_rps))
        if _demand(obs):
            want = max(want, 1)
        desired = int(self._window.add(now, want))
        return _decision(deployment, desired, "hpa", f"rps {obs.stats.rps:.1f} at {self.target:.0%} -> {desired}")


class KpaLike:
    def __init__(self, target_concurrency: float = 10.0, stable_s: float = 60.0, panic_s: float = 6.0,
                 scale_to_zero_grace_s: float = 30.0) -> None:
        self.target, self.stable_s, self.panic_s = target_concurrency, stable_s, panic_s
        self.grace_s = scale_to_zero_grace_s
        self._samples: deque[tuple[float, int]] = deque()
        self._panic_until = -math.inf
        self._panic_max = 0

    def __call__(self, deployment: LiveDeployment, now: float) -> Decision:
        obs = observe(deployment, now)
        self._samples.append((now, obs.stats.in_flight))
        while self._samples and self._samples[0][0] <= now - self.stable_s:
            self._samples.popleft()
        stable = sum(c for _, c in self._samples) / len(self._samples)
        recent = [c for t, c in self._samples if t > now - self.panic_s]
        panic = sum(recent) / len(recent)
        want, want_panic = _ceil(stable / self.target), _ceil(panic / self.target)
        current = obs.current_replicas
        if want_panic >= 2 * max(current, 1) and want_panic > 0:
            self._panic_until = now + self.stable_s
        if now < self._panic_until:
            self._panic_max = max(self._panic_max, want_panic, current)
            return _decision(deployment, self._panic_max, "kpa-panic", f"panic concurrency {panic:.1f}")
        self._panic_max = 0
        quiet = obs.stats.last_activity_at is None or now - obs.stats.last_activity_at >= self.grace_s
        if want == 0:
            want = 1 if _demand(obs) else (0 if quiet else current)
        return _decision(deployment, want, "kpa", f"concurrency {stable:.1f} / {self.target:g} -> {want}")


class SkyServeLike:
    def __init__(self, upscale_delay_s: float = 300.0, downscale_delay_s: float = 1200.0) -> None:
        self.up_s, self.down_s = upscale_delay_s, downscale_delay_s
        self._above_since: float | None = None
        self._below_since: float | None = None

    def __call__(self, deployment: LiveDeployment, now: float) -> Decision:
        obs = observe(deployment, now)
        current = obs.current_replicas
        want = _ceil(obs.stats.rps / deployment.spec.target_rps)
        if _demand(obs):
            want = max(want, 1)
        if current == 0 and want > 0:
            return _decision(deployment, want, "skyserve", "requests at 0 replicas -> wake")
        self._above_since = (self._above_since if self._above_since is not None else now) if want > current else None
        self._below_since = (self._below_since if self._below_since is not None else now) if want < current else None
        if self._above_since is not None and now - self._above_since >= self.up_s:
            self._above_since = None
            return _decision(deployment, want, "skyserve", f"above for {self.up_s:g} s -> {want}")
        if self._below_since is not None and now - self._below_since >= self.down_s:
            self._below_since = None
            return _decision(deployment, want, "skyserve", f"below for {self.down_s:g} s -> {want}")
        return _decision(deployment, current, "skyserve", "hold")


class StaticPeak:
    def __init__(self, replicas: int) -> None:
        self.replicas = replicas

    def __call__(self, deployment: LiveDeployment, now: float) -> Decision:
        return _decision(deployment, self.replicas, "static", f"static peak {self.replicas}")


def baselines(peak_replicas: int) -> dict[str, Callable[[], Callable[[LiveDeployment, float], Decision]]]:
    """Fresh baseline policies by name (each keeps memory, so one per replay)."""
    return {
        "hpa-like": HpaLike,
        "kpa-like": KpaLike,
        "skyserve-like": SkyServeLike,
        "static peak": lambda: StaticPeak(peak_replicas),
    }
