"""The console on a real vLLM replica (the CPU build, a tiny random-weight Llama): its page charts the
ready replica, the replica table shows where it runs, and the playground streams vLLM's answer through
the gateway."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from console_driver import Console

from support import ControlPlane, vllm_python, wait_running

pytestmark = [pytest.mark.vllm, pytest.mark.browser]
TINY_LLAMA = Path(__file__).resolve().parents[2] / "runtime" / "inferstack" / "engines" / "tiny_llama.py"


def test_a_vllm_deployments_page_charts_it_and_its_playground_streams_the_answer(tmp_path: Path,
                                                                                 browser: object) -> None:
    python = vllm_python()
    if python is None:
        pytest.skip("INFERSTACK_VLLM_PYTHON is not set: run `bash .ci/test`, which builds the vLLM CPU venv")
    model_dir = tmp_path / "tiny-llama"
    subprocess.run([python, str(TINY_LLAMA), str(model_dir)], check=True, capture_output=True, timeout=300)
    plane = ControlPlane(home=tmp_path / "home", env_extra={"INFERSTACK_VLLM_PYTHON": python,
                                                            "INFERSTACK_HISTORY_INTERVAL_S": "0.5"}).start()
    try:
        key = plane.create_key("vllm-console")
        rest = plane.client(key)
        created = rest.post("/v1/deployments", json={
            "name": "tiny", "hf_model_id": str(model_dir), "engine": "vllm", "hardware_profile": "cpu",
            "max_model_len": 256, "engine_args": ["--dtype", "bfloat16", "--enforce-eager"]})
        assert created.status_code == 201, created.text
        deployment_id = created.json()["id"]
        wait_running(rest, deployment_id, timeout=400)

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
    finally:
        plane.stop()
