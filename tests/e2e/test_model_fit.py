"""Models the catalogue does not know are sized from the Hugging Face Hub's safetensors metadata: over REST, a
model too large for the replica's GPUs is refused with the numbers and nothing is created; one that fits is
created without a word; and when the Hub does not answer (this machine cannot reach huggingface.co, the
real endpoint), the deployment is created at once with a warning in the response and in its events. The
reachable Hub is a local HTTP server the control plane reaches through HF_ENDPOINT, as a mirror would be."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from support import ControlPlane

# Parameter counts as the Hub reports them (`safetensors.parameters`), per repository.
HUB_MODELS: dict[str, dict[str, int]] = {
    "meta-llama/Llama-2-70b-hf": {"BF16": 68_976_648_192},
    "acme/small-chat": {"F16": 1_100_048_384},
    "acme/quantised-34b": {"I32": 4_200_000_000, "F16": 1_300_000_000},
}


class FakeHub(BaseHTTPRequestHandler):
    asked: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.asked.append(self.path)
        repo = self.path.split("?")[0].removeprefix("/api/models/")
        counts = HUB_MODELS.get(repo)
        if counts is None:
            body, status = {"error": "Repository not found"}, 404
        else:
            body, status = {"id": repo, "modelId": repo, "private": False,
                            "safetensors": {"parameters": counts, "total": sum(counts.values())}}, 200
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 404:
            self.send_header("X-Error-Code", "RepoNotFound")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def hub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeHub.asked = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def started(tmp_path: Path, **env: str) -> ControlPlane:
    return ControlPlane(home=tmp_path / "home", env_extra=env).start()


def test_the_hubs_size_refuses_what_cannot_fit_and_passes_what_fits(tmp_path: Path, hub: str) -> None:
    plane = started(tmp_path, HF_ENDPOINT=hub)
    try:
        rest = plane.client(plane.create_key("fit"))
        refused = rest.post("/v1/deployments", json={"hf_model_id": "meta-llama/Llama-2-70b-hf",
                                                      "hardware_profile": "gpu.a100", "min_replicas": 0})
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert error["param"] == "hf_model_id" and error["message"] == (
            "hf_model_id: meta-llama/Llama-2-70b-hf needs about 138.0 GB for its bf16 weights plus KV cache, but 1 x "
            "NVIDIA A100 40GB (40 GB) leaves 28.8 GB usable: use gpus_per_replica >= 5")
        assert any(p.startswith("/api/models/meta-llama/Llama-2-70b-hf") and "safetensors" in p for p in FakeHub.asked)
        assert rest.get("/v1/deployments").json()["data"] == []  # nothing was created

        quantised = rest.post("/v1/deployments", json={"hf_model_id": "acme/quantised-34b",
                                                        "hardware_profile": "gpu.l4", "min_replicas": 0})
        assert quantised.status_code == 422 and "19.4 GB for its i32 weights" in quantised.json()["error"]["message"]

        fits = rest.post("/v1/deployments", json={"hf_model_id": "acme/small-chat", "hardware_profile": "gpu.l4",
                                                  "min_replicas": 0})
        assert fits.status_code == 201, fits.text
        assert fits.json()["warnings"] == []
        eight = rest.post("/v1/deployments", json={"hf_model_id": "meta-llama/Llama-2-70b-hf", "min_replicas": 0,
                                                   "hardware_profile": "gpu.a100", "gpus_per_replica": 8})
        assert eight.status_code == 201 and eight.json()["warnings"] == []
    finally:
        plane.stop()


def test_an_unreachable_hub_accepts_at_once_with_a_warning(tmp_path: Path) -> None:
    plane = started(tmp_path)  # the real endpoint: no network to it from here
    try:
        rest = plane.client(plane.create_key("offline"))
        began = time.monotonic()
        created = rest.post("/v1/deployments", json={"hf_model_id": "meta-llama/Llama-2-70b-hf", "name": "big",
                                                     "hardware_profile": "gpu.a100", "min_replicas": 0})
        took = time.monotonic() - began
        assert created.status_code == 201, created.text
        assert took < 10, f"create waited {took:.1f} s for the Hub"
        [warning] = created.json()["warnings"]
        assert warning.startswith("could not check that meta-llama/Llama-2-70b-hf fits 1 x NVIDIA A100 40GB")
        events = rest.get("/v1/deployments/big/events").json()["data"]
        assert [e["message"] for e in events if e["kind"] == "warning"] == [warning]
        assert rest.get("/v1/deployments/big").json()["warnings"] == []  # said once, on create; kept in events
    finally:
        plane.stop()
