"""decide() at the edges of its rules: which rule and which words the event records when two rules meet.

The rule and the reason are what a user reads in the deployment's events, so a boundary that changes
only them is still a behaviour. Mutation testing (bench/mutation.py) found these unpinned.
"""

from __future__ import annotations

from dataclasses import replace

from test_decision import LASTING, NOW, SETTLED, backlog, observation, spec

from inferstack.autoscaler.decision import AutoscalerState, decide


def test_a_pause_records_zero_and_starts_the_window_again_from_zero() -> None:
    # Before the pause the window remembered 4 replicas; the pause forgets them.
    paused = decide(spec(min_replicas=0), observation(current=4, last_activity_at=NOW - 3600),
                    AutoscalerState(recommendations=((NOW - 10, 4),)), NOW)
    assert (paused.desired, paused.rule, paused.inputs["recommended"]) == (0, "idle", 0)
    # A late completion a second later (the replica not stopped yet): nothing asks for a replica, and the
    # window holds only the pause's 0, so nothing holds one either.
    late = decide(spec(min_replicas=0), observation(current=1, last_activity_at=NOW + 0.5), paused.next_state,
                  NOW + 1)
    assert (late.desired, late.rule) == (0, "throughput"), late.reason


def test_a_rate_far_below_one_replica_asks_for_none() -> None:
    # One arrival in an hour against 1,000,000 rps a replica (the spec's largest target), nothing in flight.
    obs = observation(rps=1 / 3600, current=1, capacity=16)
    decision = decide(spec(min_replicas=0, target_rps=1_000_000), obs, SETTLED, NOW)
    assert (decision.desired, decision.rule) == (0, "throughput"), decision.reason
    assert "in flight" not in decision.reason and "running" not in decision.reason


def test_running_requests_are_named_only_when_they_need_more_than_the_rate() -> None:
    # 25 rps at 10 a replica asks for 3, and 40 running on 16 slots fill 3: the rate is the reason.
    decision = decide(spec(), observation(rps=25, current=3, in_flight=40, capacity=16), SETTLED, NOW)
    assert (decision.desired, decision.rule) == (3, "hold")
    assert "25.0 req/s against a target of 10 per replica -> 3 replicas" in decision.reason
    assert "running fill" not in decision.reason, decision.reason


def test_while_waking_the_rate_is_named_when_it_asks_for_no_more_than_exist() -> None:
    # 2 replicas starting, none ready; 15 rps asks for 2: nothing to hold back.
    obs = observation(rps=15, current=2, ready=0, queued=3, in_flight=3, capacity=16)
    decision = decide(spec(), obs, SETTLED, NOW)
    assert (decision.desired, decision.rule) == (2, "hold")
    assert "no replica ready yet" not in decision.reason, decision.reason


def test_nothing_waiting_is_not_mentioned() -> None:
    decision = decide(spec(), observation(rps=12, current=2, in_flight=12, capacity=16), SETTLED, NOW)
    assert "waiting" not in decision.reason, decision.reason


def test_a_single_request_waiting_for_a_slot_counts() -> None:
    # One request has waited a panic window behind a full replica; no start-up measured yet: add one.
    obs = observation(rps=8, **{**backlog(1, ready=1), "startup": None})
    decision = decide(spec(), obs, LASTING, NOW)
    assert (decision.desired, decision.rule) == (2, "queueing"), decision.reason
    assert "1 request(s) waiting for a slot on 1 full replica(s), arriving 8.0/s, served 10.0/s -> 2" in decision.reason
    young = decide(spec(), obs, SETTLED, NOW)  # waiting since now: a blip so far
    assert "1 request(s) waiting for a slot, for less than 6 s" in young.reason


def test_when_the_rate_already_asks_for_what_the_backlog_needs_the_rate_is_the_rule() -> None:
    # A lasting backlog with 40 in flight needs 3 replicas of 16 slots; 30 rps asks for 3 as well.
    obs = observation(rps=30, **{**backlog(24, ready=1), "startup": None})
    decision = decide(spec(), obs, LASTING, NOW)
    assert (decision.desired, decision.rule) == (3, "throughput"), decision.reason


def test_a_burst_at_zero_replicas_is_no_panic() -> None:
    decision = decide(spec(min_replicas=0), observation(rps=2, panic_rps=35, queued=3, in_flight=3, current=0),
                      AutoscalerState(), NOW)
    assert (decision.desired, decision.rule) == (1, "wake")
    assert decision.inputs["panic_until"] is None and decision.next_state.panic_until is None
    assert "panic" not in decision.reason, decision.reason


def test_twice_a_low_capacity_is_a_panic_too() -> None:
    # One replica at 0.5 rps is 0.5 rps of capacity: 1 rps over the panic window is twice that.
    decision = decide(spec(target_rps=0.5), observation(rps=0.5, panic_rps=1.0), SETTLED, NOW)
    assert decision.inputs["panic_until"] == NOW + 60
    assert "in panic for 60 s more" in decision.reason, decision.reason


def test_the_panic_reason_counts_the_seconds_left() -> None:
    # Panic set at NOW - 20 by a burst, until NOW + 40; the burst is over.
    calm = decide(spec(), observation(rps=12, panic_rps=4, current=2), replace(SETTLED, panic_until=NOW + 40), NOW)
    assert "in panic for 40 s more" in calm.reason, calm.reason
    # A burst the replicas there absorb: the panic's own count is no more than the rate's.
    absorbed = decide(spec(), observation(rps=30, panic_rps=30, current=1), SETTLED, NOW)
    assert "in panic for 60 s more" in absorbed.reason and "no backlog" not in absorbed.reason, absorbed.reason
    grown = decide(spec(), observation(rps=12, panic_rps=40, current=2, **backlog(1, ready=2, served=5.0)),
                   LASTING, NOW)
    assert "-> 4 replicas (panic for 60 s)" in grown.reason, grown.reason
    shrink_held = decide(spec(), observation(rps=5, current=4), replace(SETTLED, panic_until=NOW + 30), NOW)
    assert "in panic for 30 s more: never shrink -> hold 4" in shrink_held.reason, shrink_held.reason


def test_a_request_in_flight_at_zero_replicas_wakes_the_deployment() -> None:
    # Its replica went away mid-stream: nothing is queued, but one request is still in flight.
    decision = decide(spec(min_replicas=0), observation(in_flight=1, current=0), SETTLED, NOW)
    assert (decision.desired, decision.rule) == (1, "wake")
    assert "requests arriving at 0 replicas -> wake to 1" in decision.reason


def test_a_fresh_history_holds_a_shrink_for_any_window_however_short() -> None:
    decision = decide(spec(stabilisation_window=1), observation(rps=5, current=4), AutoscalerState(), NOW)
    assert (decision.desired, decision.rule) == (4, "stabilising"), decision.reason


def test_the_latency_band_holds_only_a_shrink() -> None:
    # Nothing to shrink (the rate asks for the 3 there are): the band has nothing to hold.
    decision = decide(spec(scale_down_below_latency_ms=1000), observation(rps=25, current=3), SETTLED, NOW)
    assert (decision.desired, decision.rule) == (3, "hold")
    assert "p95" not in decision.reason, decision.reason


def test_a_wake_from_zero_is_sized_by_the_held_requests_not_by_the_rate_of_its_first_second() -> None:
    # 40 requests arrived within the second before the tick: 40 rps at 5 a replica would be 8 replicas,
    # but 40 held requests fill 3 replicas of 16 slots, and that is what the wake starts.
    obs = observation(rps=40, current=0, queued=40, in_flight=40, capacity=16)
    decision = decide(spec(min_replicas=0, target_rps=5), obs, AutoscalerState(), NOW)
    assert (decision.desired, decision.rule) == (3, "wake"), decision.reason
    assert "40 request(s) queued at 0 replicas -> wake to 3" in decision.reason


def test_a_p95_exactly_at_the_band_is_not_below_it() -> None:
    decision = decide(spec(scale_down_below_latency_ms=1000), observation(rps=5, p95=1000, current=3), SETTLED, NOW)
    assert (decision.desired, decision.rule) == (3, "latency"), decision.reason


def test_the_cooldown_names_itself_only_when_it_holds_a_scale_up_back() -> None:
    cooling = replace(SETTLED, last_scale_up_at=NOW - 10)
    steady = decide(spec(scale_up_cooldown_s=120), observation(rps=30, current=3), cooling, NOW)
    assert (steady.desired, steady.rule) == (3, "hold"), steady.reason
    one_more = decide(spec(scale_up_cooldown_s=120), observation(rps=20, panic_rps=10, current=1), cooling, NOW)
    assert (one_more.desired, one_more.rule) == (1, "cooldown"), one_more.reason


def test_a_wake_is_never_held_by_the_cooldown() -> None:
    decision = decide(spec(min_replicas=0, scale_up_cooldown_s=120), observation(queued=1, in_flight=1, current=0),
                      replace(SETTLED, last_scale_up_at=NOW - 10), NOW)
    assert (decision.desired, decision.rule) == (1, "wake"), decision.reason
