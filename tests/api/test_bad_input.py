"""Bad input against a real control plane on PostgreSQL (which refuses NUL in text): every refusal is a
4xx in the caller's shape and changes nothing; bodies are bounded and must arrive in time."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from support import SIM_SPEC, ControlPlane, postgres_schema

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with postgres_schema() as url:
        plane = ControlPlane(home=tmp_path_factory.mktemp("bad-input") / "home",
                             env_extra={"INFERSTACK_DATABASE_URL": url, "INFERSTACK_CLIENT_TIMEOUT_S": "0.3"}).start()
        yield plane
        plane.stop()


@pytest.fixture(scope="module")
def rest(plane: ControlPlane) -> httpx.Client:
    return plane.client(plane.create_key("alice"))


@pytest.fixture(scope="module")
def deployment(rest: httpx.Client) -> str:
    created = rest.post("/v1/deployments", json={**SIM_SPEC, "name": "quiet", "min_replicas": 0})
    assert created.status_code == 201, created.text
    return created.json()["id"]


def raw_json(rest: httpx.Client, method: str, path: str, text: str) -> httpx.Response:
    return rest.request(method, path, content=text.encode(), headers={"content-type": "application/json"})


@pytest.mark.parametrize("patch", [
    '{"drain_timeout_s": Infinity}', '{"target_rps": NaN}', '{"engine_args": ["100\\u0000"]}',
    '{"engine_args": ["--a\\nb"]}', '{"engine_args": [' + ", ".join(['"x"'] * 65) + "]}",
    '{"engine_args": ["' + "x" * 1001 + '"]}', '{"hf_token": "hf_\\u0000"}', '{"stabilisation_window": 1e308}',
])
def test_a_bad_patch_is_a_422_and_changes_neither_the_live_view_nor_the_database(
        plane: ControlPlane, rest: httpx.Client, deployment: str, patch: str) -> None:
    before = rest.get(f"/v1/deployments/{deployment}").json()["spec"]
    response = raw_json(rest, "PATCH", f"/v1/deployments/{deployment}", patch)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["type"] == "invalid_request_error" and "\x00" not in response.text
    assert rest.get(f"/v1/deployments/{deployment}").json()["spec"] == before
    assert stored_spec(plane, deployment) == {k: v for k, v in before.items() if k != "hf_token_set"}


def stored_spec(plane: ControlPlane, deployment_id: str) -> dict[str, Any]:
    engine = create_engine(plane.env_extra["INFERSTACK_DATABASE_URL"])
    try:
        with engine.connect() as connection:
            return connection.execute(text("select spec from deployments where id = :id"),
                                      {"id": deployment_id}).scalar_one()
    finally:
        engine.dispose()


@pytest.mark.parametrize("fields", [
    '"hf_model_id": "a\\u0000b"', '"target_rps": Infinity', '"name": "x\\u0000"', '"hardware_profile": "cpu\\u0000"',
    '"hf_model_id": "' + "m" * 201 + '"',
])
def test_a_bad_create_is_a_422_and_creates_nothing(rest: httpx.Client, deployment: str, fields: str) -> None:
    before = [d["id"] for d in rest.get("/v1/deployments").json()["data"]]
    body = '{"engine": "sim", "hardware_profile": "cpu", "hf_model_id": "inferstack/sim-chat", ' + fields + "}"
    response = raw_json(rest, "POST", "/v1/deployments", body)
    assert response.status_code == 422, response.text
    assert [d["id"] for d in rest.get("/v1/deployments").json()["data"]] == before


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/v1/files?after=%00", 422), ("GET", "/v1/files?purpose=%00", 422), ("GET", "/v1/batches?after=x%00", 422),
    ("GET", "/v1/batches/x%00", 404), ("GET", "/v1/files/x%00/content", 404), ("GET", "/files/x%00", 404),
    ("POST", "/v1/batches/x%00/cancel", 404), ("GET", "/v1/deployments/x%00", 404),
    ("GET", "/api/v2/external/inference/get?deployment_id=%00", 422),
])
def test_nul_in_ids_and_cursors_is_a_4xx_never_a_500(rest: httpx.Client, method: str, path: str,
                                                     status: int) -> None:
    response = rest.request(method, path)
    assert response.status_code == status, response.text
    shape = response.json()
    assert shape["success"] is False if path.startswith("/api/") else shape["error"]["message"]


def test_nul_in_bodies_is_a_4xx_in_the_callers_shape(rest: httpx.Client) -> None:
    compat = raw_json(rest, "POST", "/sg_inf/create", '{"model": "\\u00002"}')
    assert compat.status_code == 422 and compat.json()["success"] is False, compat.text
    batch = raw_json(rest, "POST", "/v1/batches", '{"input_file_id": "file-\\u0000", "endpoint": '
                     '"/v1/chat/completions", "completion_window": "24h", "metadata": {"k": "v\\u0000"}}')
    assert batch.status_code == 400 and batch.json()["error"]["param"], batch.text
    form = (b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n--b\r\n'
            b'Content-Disposition: form-data; name="file"; filename="a\x00.jsonl"\r\n\r\n{}\n\r\n--b--\r\n')
    upload = rest.post("/v1/files", content=form, headers={"content-type": "multipart/form-data; boundary=b"})
    assert upload.status_code == 400 and upload.json()["error"]["param"] == "file", upload.text


def test_a_body_over_one_mib_is_a_413_in_the_callers_shape_and_creates_nothing(rest: httpx.Client) -> None:
    before = [d["id"] for d in rest.get("/v1/deployments").json()["data"]]
    huge = {**SIM_SPEC, "engine_args": ["--x"] * 400_000}
    native = rest.post("/v1/deployments", json=huge)
    assert native.status_code == 413 and native.json()["error"]["code"] == "request_too_large"
    compat = rest.post("/sg_inf/create", json={"model": "m", "pad": "x" * 2**21})
    assert compat.status_code == 413 and compat.json()["success"] is False
    assert [d["id"] for d in rest.get("/v1/deployments").json()["data"]] == before


def test_405s_say_what_the_path_allows(rest: httpx.Client) -> None:
    chat = rest.get("/v1/chat/completions")
    assert chat.status_code == 405 and chat.headers["allow"] == "POST" and chat.json()["error"]["message"]
    native = rest.put("/v1/deployments")
    assert native.status_code == 405 and set(native.headers["allow"].split(", ")) == {"GET", "POST"}


def _raw(plane: ControlPlane, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", plane.port), timeout=5)
    sock.sendall(data)
    return sock


def _answer(sock: socket.socket) -> bytes:
    """The whole answer, head and body (they may come in separate packets), by its Content-Length."""
    answer = b""
    while b"\r\n\r\n" not in answer and (chunk := sock.recv(4096)):
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length and (chunk := sock.recv(4096)):
        body += chunk
    return head + b"\r\n\r\n" + body


def test_a_client_too_slow_with_its_body_gets_a_408(plane: ControlPlane, rest: httpx.Client) -> None:
    key = rest.headers["authorization"]
    with _raw(plane, (f"POST /v1/deployments HTTP/1.1\r\nHost: x\r\nAuthorization: {key}\r\n"
                      "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"hf_").encode()) as sock:
        started = time.monotonic()
        answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer
    assert time.monotonic() - started < 3


def test_an_upload_that_stalls_gets_a_408_and_stores_nothing(plane: ControlPlane, rest: httpx.Client) -> None:
    before = rest.get("/v1/files").json()["data"]
    key = rest.headers["authorization"]
    head = (b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n--b\r\n'
            b'Content-Disposition: form-data; name="file"; filename="a.jsonl"\r\n\r\n{"x": 1}\n')
    with _raw(plane, (f"POST /v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: {key}\r\n"
                      "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n").encode()
              + head) as sock:
        answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer
    assert rest.get("/v1/files").json()["data"] == before


def test_a_client_too_slow_with_its_headers_is_disconnected(plane: ControlPlane) -> None:
    with _raw(plane, b"GET /health HTTP/1.1\r\nHost: x\r\n") as sock:
        started = time.monotonic()
        assert sock.recv(4096) == b""  # closed by the server, headers never finished
    assert time.monotonic() - started < 3
    assert httpx.get(plane.url + "/health").status_code == 200


def test_the_openapi_document_has_the_inference_routes_the_error_shapes_and_the_real_limits(
        plane: ControlPlane) -> None:
    document = httpx.get(plane.url + "/openapi.json").json()
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
        body = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body["required"] == ["model"] and body["additionalProperties"] is True
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if path == "/health":
                continue
            for status in ("401", "404", "413", "422"):
                schema = operation["responses"][status]["content"]["application/json"]["schema"]
                assert ("success" in schema["properties"]) is path.startswith(("/sg_inf", "/api/v2")), (path, method)
    update = document["components"]["schemas"]["DeploymentUpdate"]["properties"]
    engine_args = update["engine_args"]
    assert engine_args["maxItems"] == 64 and engine_args["items"]["pattern"] == r"^[^\x00-\x1f\x7f]*$"
    assert update["drain_timeout_s"]["maximum"] == 86400
