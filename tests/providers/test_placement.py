"""Which providers a replica may go to, in order: a pure choice over what the control plane runs."""

from __future__ import annotations

import pytest

from inferstack.providers.placement import PlacementError, placement_order

RUNNING = ["kubernetes", "aws"]


@pytest.mark.parametrize(("wanted", "cloudburst", "order"), [
    ([], False, ["kubernetes"]),  # the control plane's first
    ([], True, ["kubernetes", "aws"]),  # all of them, in the control plane's order
    (["aws"], True, ["aws"]),
    (["aws", "kubernetes"], False, ["aws"]),  # without cloudburst only the first
    (["aws", "kubernetes"], True, ["aws", "kubernetes"]),
    (["kubernetes", "kubernetes", "aws"], True, ["kubernetes", "aws"]),
])
def test_the_order_follows_the_deployment_then_the_control_plane(wanted: list[str], cloudburst: bool,
                                                                 order: list[str]) -> None:
    assert placement_order(wanted, cloudburst, RUNNING) == order


def test_a_provider_the_control_plane_does_not_run_is_named() -> None:
    with pytest.raises(PlacementError, match=r"providers local not run by this control plane \(it runs kubernetes"):
        placement_order(["kubernetes", "local"], True, RUNNING)
