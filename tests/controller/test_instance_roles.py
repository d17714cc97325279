"""An instance's role changes: a leader that loses the lead (its lock connection gone, a long pause) while
another instance took over must not stop the replicas that new leader may already have adopted."""

from __future__ import annotations

from pathlib import Path

from controller_support import FakeProbe, FakeReplica, build_parts, eventually

from inferstack.controller.instance import Instance
from inferstack.controller.sync import FleetSync, PollingFeed
from inferstack.controller.window_exchange import WindowExchange


class Lease:
    """A lead the test takes away, as another instance's election would."""

    epoch = 1

    def __init__(self) -> None:
        self.held = True

    async def try_lead(self) -> bool:
        return self.held

    async def still_leading(self) -> bool:
        return self.held

    async def resign(self) -> None:
        self.held = False


async def test_a_deposed_leader_leaves_the_replicas_that_outlive_it_to_the_new_leader(
        tmp_path: Path, fake_replica: FakeReplica) -> None:
    parts = await build_parts(tmp_path, fake_replica.url, FakeProbe(all_healthy=True))
    sync = FleetSync(parts.store, parts.fleet, PollingFeed(), parts.replicas, parts.clock, lambda: None,
                     resync_s=3600)
    lease = Lease()
    instance = Instance(parts.loop, lease, sync, WindowExchange(parts.store, parts.fleet, parts.clock, "a"),
                        poll_s=0.01)
    await instance.start()
    try:
        deployment = await parts.create(name="chat", min_replicas=1, max_replicas=1)
        await parts.loop.reconcile(deployment)
        await eventually(lambda: len(deployment.ready_replicas()) == 1)

        lease.held = False  # another instance holds the lead now
        await eventually(lambda: not instance.leading)
        assert parts.provider.handed_over and not parts.provider.closed
        assert parts.provider.stopped == []
    finally:
        await instance.stop()
        await parts.close()
