"""The backlog rules on their own: when waiting requests drain, and whether a new replica comes in time.

Each row is a worked number from the module's docstrings, or the edge next to it.
"""

from __future__ import annotations

import math

import pytest

from inferstack.autoscaler.backlog import Backlog, full_rate, replicas_for


@pytest.mark.parametrize(("waiting", "arriving", "served", "drain_s"), [
    (40, 10.0, 12.0, 20.0),     # the docstring's: 40 waiting, 2/s spare -> 20 s
    (0, 10.0, 12.0, 0.0),       # nothing waits: drained now, whatever the rates
    (0, 12.0, 12.0, 0.0),       # ... even when arrivals keep up with service
    (-1, 10.0, 12.0, 0.0),      # never negative
    (40, 12.0, 12.0, math.inf),  # arrivals keep up with service: never
    (40, 13.0, 12.0, math.inf),  # arrivals outrun service: never
    (1, 0.0, 0.5, 2.0),         # one request, half a completion a second
])
def test_drain_time(waiting: int, arriving: float, served: float, drain_s: float) -> None:
    assert Backlog(waiting, arriving, served, 70.0).drain_s() == drain_s


@pytest.mark.parametrize(("waiting", "arriving", "served", "startup_s", "outlasts"), [
    (40, 10.0, 12.0, 70.0, False),  # drains in 20 s, replicas take 70 s: gone before one could help
    (40, 10.0, 12.0, 20.0, True),   # drains exactly as a replica is ready: it still helps
    (40, 10.0, 12.0, 19.0, True),
    (40, 10.0, 12.0, 21.0, False),
    (40, 12.0, 12.0, 70.0, True),   # never drains: a replica always helps
    (40, 10.0, 12.0, None, True),   # no start-up measured yet: assume it helps
    (0, 10.0, 12.0, None, False),   # nothing waits: nothing to help with, measured or not
    (0, 12.0, 12.0, 70.0, False),
])
def test_a_replica_helps_only_a_backlog_that_outlasts_its_start_up(
        waiting: int, arriving: float, served: float, startup_s: float | None, outlasts: bool) -> None:
    assert Backlog(waiting, arriving, served, startup_s).outlasts_startup() is outlasts


@pytest.mark.parametrize(("in_flight", "capacity", "replicas"), [
    (40, 16, 3),  # the docstring's
    (32, 16, 2),  # exactly full
    (33, 16, 3),
    (1, 16, 1),
    (0, 16, 0),
    (3, 1, 3),    # one slot a replica
    (40, 0, 0),   # capacity unknown: no opinion
])
def test_replicas_for_requests_in_flight(in_flight: int, capacity: int, replicas: int) -> None:
    assert replicas_for(in_flight, capacity) == replicas


@pytest.mark.parametrize(("arriving", "served", "ready", "replicas"), [
    (12.0, 10.0, 1, 2),   # the docstring's: one full replica serves 10/s, 12 arrive
    (20.0, 10.0, 1, 2),   # exactly two replicas' worth
    (21.0, 10.0, 1, 3),
    (9.0, 12.0, 3, 3),    # three full replicas serve 4/s each: 9 arriving need 3
    (0.0, 10.0, 1, 0),    # nothing arrives: nothing to keep up with
    (12.0, 0.0, 1, None),  # nothing served yet: no measure of a full replica
    (12.0, 10.0, 0, None),  # no replica ready: nothing measured either
])
def test_replicas_that_keep_up_with_the_arrivals(arriving: float, served: float, ready: int,
                                                 replicas: int | None) -> None:
    assert Backlog(5, arriving, served, 70.0).keeping_up(ready) == replicas


@pytest.mark.parametrize(("completion_rps", "running", "capacity", "rate"), [
    (4.8, 30, 16, 2.56),  # the docstring's
    (8.0, 16, 16, 8.0),   # every slot busy already: what it serves now
    (1.0, 1, 4, 4.0),     # one request running, 1/s: four slots serve 4/s
    (0.0, 30, 16, None),  # nothing completed yet
    (4.8, 0, 16, None),   # nothing running
    (4.8, 30, 0, None),   # capacity unknown
])
def test_what_a_replica_serves_with_every_slot_busy(completion_rps: float, running: int, capacity: int,
                                                    rate: float | None) -> None:
    assert full_rate(completion_rps, running, capacity) == (None if rate is None else pytest.approx(rate))
