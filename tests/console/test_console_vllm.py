"""The console on a real vLLM replica (the CPU build, a tiny random-weight Llama): its page charts the
ready replica, the replica table shows where it runs, and the playground streams vLLM's answer through
the gateway."""

from __future__ import annotations

import pytest
from console_driver import Console

from support import TinyVllm, wait_running

pytestmark = [pytest.mark.vllm, pytest.mark.browser]


def test_a_vllm_deployments_page_charts_it_and_its_playground_streams_the_answer(tiny_vllm: TinyVllm,
                                                                                 browser: object) -> None:
    plane, key, _ = tiny_vllm
    deployment_id = wait_running(plane.client(key), "tiny", timeout=400)["id"]

    console = Console(browser, plane.url)  # type: ignore[arg-type]
    console.sign_in(key)
    console.open(f"#/deployments/{deployment_id}?window=15m")
    console.wait(lambda: console.text("#dep-status") == "running", what="status running")
    console.wait(lambda: console.find('#chart-replicas .legend [data-series="ready"]').get_attribute("data-max")
                 == "1", what="the ready replica charted")
    assert "ready" in console.text("#replicas") and "local" in console.text("#replicas")

    console.fill("#playground", {"prompt": "Hello there", "max_tokens": 8})
    console.submit("#playground")
    console.wait(lambda: console.text("#answer").strip(), timeout=120, what="vLLM's streamed answer")
    assert console.text("#chat-error") == ""
