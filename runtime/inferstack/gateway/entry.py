"""The gateway's entry: every inference request's path from client to replica and back.

Read top to bottom, a request goes: read body -> authenticate (cached key) -> resolve `model` to the
caller's deployment -> the key's limits (`gateway/limits.py`: a permit, or a 429) -> record the arrival
-> admission (`gateway/admission.py`: hold until a replica can take it, waking a paused deployment, while
streaming callers get SSE heartbeats from here; then a replica chosen by `gateway/routing.py`) -> relay,
streaming bytes through as they arrive, retrying once on another replica if the connection fails before
any response byte -> release the replica and the permit -> record latency and time to first byte.

It is a bare ASGI app, not FastAPI routes, and uses aiohttp's client: on this 2-core machine that
pair kept the added latency under 0.5 ms at p50 (bench/gateway.py prints the figures).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import aiohttp
import orjson
from prometheus_client import Counter, Histogram
from sqlalchemy.exc import SQLAlchemyError

from inferstack.auth import KeyRing
from inferstack.clock import Clock
from inferstack.db import database_away, is_outage
from inferstack.errors import ApiError, engine_error_body, openai_error_body
from inferstack.fleet import Fleet, LiveDeployment
from inferstack.gateway import adapter_usage
from inferstack.gateway.admission import Admission, Lease, WakeRequester
from inferstack.gateway.body import BodyLimits, Receive, Scope, Send, read_body
from inferstack.gateway.limits import RateLimits
from inferstack.spec import DeploymentStatus, Task

INFERENCE_PATHS = {
    "/v1/chat/completions": Task.generate,
    "/v1/completions": Task.generate,
    "/v1/embeddings": Task.embed,
}
RECONNECT_WINDOW_S = 3.0
"""How long a request whose replica refuses connections keeps trying (another replica, or a new one)."""
RECONNECT_PAUSE_S = 0.1
REQUESTS = Counter("inferstack_gateway_requests_total", "Requests proxied", ["deployment", "code"])
CLIENT_CLOSED = 499
"""The `code` of a request whose caller hung up before its answer was complete (nginx's number)."""
LATENCY = Histogram("inferstack_gateway_request_seconds", "End-to-end latency at the gateway", ["deployment"])
DEFAULT_LIMITS = BodyLimits(max_bytes=16 * 2**20, timeout_s=30.0)


class Gateway:
    def __init__(self, fleet: Fleet, keys: KeyRing, controller: WakeRequester, clock: Clock,
                 heartbeat_s: float = 5.0, rng: random.Random | None = None,
                 limits: BodyLimits = DEFAULT_LIMITS) -> None:
        self._fleet = fleet
        self._body_limits = limits
        self._keys = keys
        self._clock = clock
        self._admission = Admission(controller, clock, heartbeat_s, rng)
        self._rate_limits = RateLimits()
        self._session: aiohttp.ClientSession | None = None
        self._counters: dict[tuple[str, int], Any] = {}
        self._histograms: dict[str, Any] = {}

    async def start(self) -> None:
        # One pooled client for the process: no per-request connection or TLS setup on the hot path.
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None, keepalive_timeout=60)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False,
                                              skip_auto_headers=("User-Agent",))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    # --- ASGI entry: the OpenAI inference routes ---------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        try:
            body = await read_body(scope, receive, self._body_limits)
            authorization = _header(headers, b"authorization")
            grant = self._keys.cached(authorization) or await self._keys.grant(authorization)
            if grant is None:
                raise ApiError(401, "Invalid, expired or revoked API key.", code="invalid_api_key")
            request = _parse(body)
            deployment, adapter = self._resolve(grant.tenant_id, request.get("model"), scope["path"])
            permit = self._rate_limits.admit(grant, deployment, request, self._clock.now())
        except ApiError as error:
            await _send_error(send, error)
            return
        except SQLAlchemyError as error:  # a key not cached yet while the database is away
            if not is_outage(error):
                raise
            await _send_error(send, database_away())
            return
        try:
            await self._serve(deployment, adapter, scope["path"], body, bool(request.get("stream")),
                              permit.stamp(send), receive)
        finally:
            permit.release()

    async def _serve(self, deployment: LiveDeployment, adapter: str | None, path: str, body: bytes,
                     streaming: bool, send: Send, receive: Receive) -> None:
        """`adapter`: the request names one of the deployment's LoRA adapters (None: the base model)."""
        started = self._clock.now()
        deployment.metrics.arrival(started)
        ttft: float | None = None
        status = 502
        usage: dict[str, Any] = {}
        opened = False  # whether response headers went out (then errors go inside the stream)

        async def heartbeat() -> None:
            nonlocal opened
            if not opened:
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
                opened = True
            await send({"type": "http.response.body", "body": b": waiting for a replica to start\n\n",
                        "more_body": True})

        # A caller who hangs up ends the request wherever it is (held, waiting for the replica, streaming):
        # its lease goes back, the replica's connection closes (the engine aborts the sequence), and the
        # request counts as CLIENT_CLOSED, not as an error of the deployment.
        serving = asyncio.current_task()
        assert serving is not None
        hung_up = False

        def on_gone(watch: asyncio.Task[None]) -> None:
            nonlocal hung_up
            if not watch.cancelled() and watch.exception() is None:
                hung_up = True
                serving.cancel()

        gone = asyncio.create_task(_disconnected(receive))
        gone.add_done_callback(on_gone)
        try:
            lease = await self._admission.acquire(deployment, started + deployment.spec.max_queue_wait_s,
                                                  heartbeat=heartbeat if streaming else None, adapter=adapter)
            try:
                response = await self._open(lease, path, body)
                status = response.status
                try:
                    if opened and status != 200:
                        # Heartbeats already promised an event stream: the replica's error becomes an event.
                        event = b"data: " + engine_error_body(status, await _read(response)) + b"\n\n"
                        await send({"type": "http.response.body", "body": event})
                        return
                    if status >= 400:  # the engine's own error shape becomes OpenAI's
                        answer = engine_error_body(status, await _read(response))
                        await send({"type": "http.response.start", "status": status,
                                    "headers": _response_headers(response, lease, b"application/json")})
                        await send({"type": "http.response.body", "body": answer})
                        return
                    if not streaming:  # one body message: a whole JSON answer gains nothing from chunks
                        answer = await _read(response)  # before the headers: a replica dying now is a clean 502
                        if adapter is not None:
                            usage = adapter_usage.usage_of_answer(answer)
                        await send({"type": "http.response.start", "status": status,
                                    "headers": _response_headers(response, lease)})
                        await send({"type": "http.response.body", "body": answer})
                        return
                    if not opened:
                        await send({"type": "http.response.start", "status": status,
                                    "headers": _response_headers(response, lease)})
                        opened = True
                    ttft, cut, tail = await self._relay_stream(response, send, started, keep_tail=adapter is not None)
                    usage = adapter_usage.usage_of_stream(tail)
                    if cut:
                        status = 502
                finally:
                    response.release()  # closes the connection if the answer was not read to the end
            finally:
                lease.release()
        except ApiError as error:
            status = error.status
            if opened:  # a streaming caller already has a 200: the error goes in the stream, as OpenAI does
                await send({"type": "http.response.body", "body": _error_event(error)})
            else:
                await _send_error(send, error)
        except asyncio.CancelledError:
            if not hung_up or serving.uncancel():  # cancelled by the server (shutting down), not by the caller
                raise
            status = CLIENT_CLOSED
        finally:
            gone.cancel()
            now = self._clock.now()
            deployment.metrics.completion(now, now - started, ttft, status < 500)
            self._record(deployment.id, status, now - started)
            if adapter is not None:
                adapter_usage.record(deployment, adapter, status, now - started, usage)

    async def _relay_stream(self, response: aiohttp.ClientResponse, send: Send, started: float,
                            keep_tail: bool = False) -> tuple[float | None, bool, bytes]:
        """Pass a stream through as the bytes arrive. Returns the time to first byte, whether the replica
        cut the stream (it died or its connection broke): the caller's stream then ends properly, with an
        error event in OpenAI's shape that its client raises, not with a broken chunked body; and with
        `keep_tail`, the stream's last bytes (where the usage event is)."""
        ttft: float | None = None
        tail = b""
        try:
            async for chunk in response.content.iter_any():
                if ttft is None:
                    ttft = self._clock.now() - started
                if keep_tail:
                    tail = (tail + chunk)[-8192:]
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
            cut = ApiError(502, f"The replica's stream broke off ({type(exc).__name__}); the answer is incomplete.",
                           code="replica_disconnected")
            await send({"type": "http.response.body", "body": _error_event(cut)})
            return ttft, True, tail
        await send({"type": "http.response.body", "body": b""})
        return ttft, False, tail

    # --- programmatic entry: batch lines and other internal callers --------------------------
    def resolves(self, tenant_id: str, model: str) -> bool:
        return self._fleet.resolve_model(tenant_id, model) is not None

    async def call(self, tenant_id: str, path: str, body: dict[str, Any], *,
                   priority: str = "batch") -> tuple[int, bytes]:
        """Send one request as the gateway would, and return (status, body). Errors come back in
        OpenAI's shape, never raised: the caller writes them to a result file."""
        started = self._clock.now()
        try:
            deployment, adapter = self._resolve(tenant_id, body.get("model"), path)
        except ApiError as error:
            return error.status, openai_error_body(error.status, error.message, error.code)
        deployment.metrics.arrival(started)
        status = 502
        content = b""
        try:
            lease = await self._admission.acquire(deployment, started + deployment.spec.max_queue_wait_s,
                                                  batch=priority == "batch", adapter=adapter)
            try:
                response = await self._open(lease, path, orjson.dumps(body))
                try:
                    status = response.status
                    content = await response.read()
                    return status, engine_error_body(status, content) if status >= 400 else content
                finally:
                    response.release()
            finally:
                lease.release()
        except ApiError as error:
            status = error.status
            return error.status, openai_error_body(error.status, error.message, error.code)
        finally:
            now = self._clock.now()
            deployment.metrics.completion(now, now - started, None, status < 500)
            self._record(deployment.id, status, now - started)
            if adapter is not None:
                adapter_usage.record(deployment, adapter, status, now - started,
                                     adapter_usage.usage_of_answer(content) if status < 400 else {})

    # --- the shared steps ----------------------------------------------------------------------
    def _resolve(self, tenant_id: str, model: Any, path: str) -> tuple[LiveDeployment, str | None]:
        """The caller's deployment `model` names, and the LoRA adapter of it, if it names one."""
        if not isinstance(model, str) or not model:
            raise ApiError(400, "You must provide a model parameter: a deployment id or name.", param="model")
        found = self._fleet.resolve_model(tenant_id, model)
        if found is None:
            raise ApiError(404, f"The model `{model}` does not exist.", code="model_not_found", param="model")
        deployment, adapter = found
        if deployment.status is DeploymentStatus.stopped:
            raise ApiError(409, f"Deployment {deployment.id} is stopped; resume it with "
                                f"`inferstack resume {deployment.id}` or POST /v1/deployments/{deployment.id}/resume.",
                           code="deployment_stopped")
        if deployment.status is DeploymentStatus.failed:
            raise ApiError(503, f"Deployment {deployment.id} has failed: {deployment.status_reason}",
                           code="deployment_failed")
        expected = INFERENCE_PATHS.get(path)
        if expected is not None and expected is not deployment.spec.task:
            raise ApiError(400, f"Deployment {deployment.id} serves task '{deployment.spec.task}', "
                                f"which does not answer {path}.", code="unsupported_endpoint")
        return deployment, adapter

    async def _open(self, lease: Lease, path: str, body: bytes) -> aiohttp.ClientResponse:
        """Send the request to the leased replica; if the connection fails before any response byte (a
        replica that just died or is stopping), move the lease to another replica and send it again, at
        once the first time, then every RECONNECT_PAUSE_S for up to RECONNECT_WINDOW_S: when a leader
        dies with its replicas, the new one forgets them within that window, and admission then holds
        the request for a new replica instead of failing it."""
        assert self._session is not None, "Gateway.start() was not called"
        give_up = min(lease.deadline, self._clock.now() + RECONNECT_WINDOW_S)
        failures = 0
        while True:
            replica = lease.replica
            try:
                return await self._session.post(
                    replica.url + path, data=body,
                    headers={"Authorization": f"Bearer {replica.api_key}", "Content-Type": "application/json"})
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                failures += 1
                if failures > 1 and self._clock.now() >= give_up:
                    raise ApiError(502, f"Replica connection failed {failures} times: {type(exc).__name__}",
                                   code="replica_unreachable") from exc
                if failures > 1:
                    await self._clock.sleep(RECONNECT_PAUSE_S)
            await self._admission.reacquire(lease)

    def _record(self, deployment_id: str, status: int, seconds: float) -> None:
        # Prometheus' labels() hashes and locks on every call: keep the children per deployment.
        counter = self._counters.get((deployment_id, status))
        if counter is None:
            counter = self._counters[(deployment_id, status)] = REQUESTS.labels(deployment_id, str(status))
        histogram = self._histograms.get(deployment_id)
        if histogram is None:
            histogram = self._histograms[deployment_id] = LATENCY.labels(deployment_id)
        counter.inc()
        histogram.observe(seconds)


def _parse(body: bytes) -> dict[str, Any]:
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(request, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return request


async def _read(response: aiohttp.ClientResponse) -> bytes:
    try:
        return await response.read()
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
        raise ApiError(502, f"The replica's connection broke before its answer was complete ({type(exc).__name__}).",
                       code="replica_disconnected") from exc


def _error_event(error: ApiError) -> bytes:
    return b"data: " + openai_error_body(error.status, error.message, error.code) + b"\n\n"


async def _disconnected(receive: Receive) -> None:
    # The request body is read by now, so the next message is the disconnect.
    while (await receive())["type"] != "http.disconnect":
        pass


def _header(headers: dict[bytes, bytes], name: bytes) -> str | None:
    value = headers.get(name)
    return value.decode("latin-1") if value is not None else None


def _response_headers(response: aiohttp.ClientResponse, lease: Lease,
                      content_type: bytes | None = None) -> list[tuple[bytes, bytes]]:
    content_type = content_type or response.headers.get("Content-Type", "application/json").encode()
    return [(b"content-type", content_type), (b"x-inferstack-replica", lease.replica.replica_id.encode())]


async def _send_error(send: Send, error: ApiError) -> None:
    headers = [(b"content-type", b"application/json")]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body",
                "body": openai_error_body(error.status, error.message, error.code, error.param)})
