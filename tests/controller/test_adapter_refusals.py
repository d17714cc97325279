"""An adapter an engine refused is reported to whoever asks next: the loop's pass and an API action take
turns on a deployment's replicas, and a refused source is not tried again on that replica, so the add that
came second must still hear of the refusal (else it answers 201 for an adapter no replica serves)."""

from __future__ import annotations

from pathlib import Path

import pytest
from controller_support import FakeProbe, FakeReplica, build_parts, eventually

from inferstack.errors import ApiError
from inferstack.lora import AdapterSpec

BAD = AdapterSpec(name="bad", source="/adapters/not-an-adapter")


async def test_a_refusal_met_by_the_loops_pass_first_fails_the_add(tmp_path: Path, fake_replica: FakeReplica,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    parts = await build_parts(tmp_path, fake_replica.url, FakeProbe(all_healthy=True))
    try:
        deployment = await parts.create(name="chat", min_replicas=1, max_replicas=1, max_loras=2)
        await parts.loop.reconcile(deployment)
        await eventually(lambda: len(deployment.ready_replicas()) == 1)
        (replica,) = deployment.ready_replicas()
        sync = parts.adapters.sync

        async def loop_pass_first(live):  # type: ignore[no-untyped-def]
            # The loop's pass took the lock first and met the engine's refusal.
            replica.adapter_failures[BAD.source] = "No adapter found at /adapters/not-an-adapter"
            return await sync(live)

        monkeypatch.setattr(parts.adapters, "sync", loop_pass_first)
        with pytest.raises(ApiError) as refused:
            await parts.actions.add_adapter(deployment, BAD)
        assert refused.value.status == 422 and "No adapter found" in str(refused.value)
        assert [a.name for a in deployment.spec.adapters] == []  # taken out again: nothing changed
    finally:
        await parts.close()
