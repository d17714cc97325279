"""The control plane's REST client: the one the CLI, `inferstack apply` and the Pulumi provider use.

Synchronous (httpx). Every path is built here and every error body is read by `error_from`, so a
refusal reads the same from any tool. The URL and key come from `ClientSettings` (INFERSTACK_URL,
INFERSTACK_API_KEY) unless given.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any, Literal, Protocol
from urllib.parse import quote

import httpx

from inferstack.settings import ClientSettings

DEFAULT_TIMEOUT = httpx.Timeout(30.0)
WAIT_STATUSES = frozenset({502, 503, 504})
"""A load balancer with no healthy target yet: the control plane is still starting."""


def not_coming(exc: httpx.HTTPError) -> str | None:
    """Why waiting for the control plane is pointless, or None when it may still come up.

    A certificate that fails verification (wrong name, unknown issuer) or a refused connection will
    not fix itself while a deployment waits; a name that does not resolve yet, or a timeout, may."""
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate verification failed: {cause.verify_message or cause} (is the URL the " \
                   "certificate's name, e.g. platform.aws.domain_name?)"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused (nothing listens on that address and port)"
    return None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


class ControlPlaneError(Exception):
    """A refused or failed call, with the control plane's own message (and the fields it names).
    `status` is 0 when the control plane could not be reached."""

    def __init__(self, status: int, message: str, details: list[dict[str, str]] | None = None) -> None:
        self.status = status
        self.message = message
        self.details = details or []
        super().__init__(f"{status}: {message}")

    def describe(self) -> str:
        """One line: the message, then the named fields it does not already mention."""
        extra = [f"{d.get('field')}: {d.get('message')}" for d in self.details
                 if str(d.get("message")) not in self.message]
        return self.message + (f" ({'; '.join(extra)})" if extra else "")


def error_from(response: httpx.Response) -> ControlPlaneError:
    """The error of a response with status >= 400, from the OpenAI-shaped body (or its text)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    message = error.get("message") or response.text[:300] or response.reason_phrase
    return ControlPlaneError(response.status_code, message, error.get("details"))


class Readable(Protocol):
    """What an upload streams from: an open binary file, or a wrapper that reports progress."""

    def read(self, size: int = -1, /) -> bytes: ...


def _path(collection: str, *parts: str) -> str:
    return "/".join([f"/v1/{collection}", *(quote(part, safe="") for part in parts)])


class ControlPlaneClient:
    """The native REST API (`/v1/deployments`, `/v1/files`, `/v1/batches`, `/v1/keys`, chat) of one control plane."""

    def __init__(self, url: str | None = None, api_key: str | None = None, *,
                 timeout: httpx.Timeout = DEFAULT_TIMEOUT, transport: httpx.BaseTransport | None = None) -> None:
        if url is None or api_key is None:
            settings = ClientSettings.from_env()
            url, api_key = url or settings.url, api_key or settings.api_key
        self.base_url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, transport=transport)

    def __enter__(self) -> ControlPlaneClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def healthy(self) -> bool:
        try:
            return self._http.get("/health").status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout_s: float, *, poll_s: float = 2.0, sleep: Callable[[float], None] = time.sleep,
                   now: Callable[[], float] = time.monotonic) -> None:
        """Return once /health answers 200 and the key is accepted; wait while the control plane is on
        its way (a new load balancer's name not resolving yet, 502/503/504 while no task is healthy), and
        raise `ControlPlaneError` at once, with the cause, for what waiting cannot fix: a certificate that
        does not match the URL, a refused connection, a rejected key."""
        deadline = now() + timeout_s
        last = "no answer yet"
        while True:
            try:
                response = self._http.get("/health")
            except httpx.HTTPError as exc:
                cause = not_coming(exc)
                if cause:
                    raise ControlPlaneError(0, f"cannot reach the control plane at {self.base_url}: {cause}") from None
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    self._call("GET", _path("deployments"), params={"limit": 1})  # a 401 / 403 raises here
                    return
                if response.status_code not in WAIT_STATUSES:
                    raise error_from(response)
                last = f"HTTP {response.status_code}"
            if now() >= deadline:
                raise ControlPlaneError(0, f"the control plane at {self.base_url} did not become healthy in "
                                           f"{timeout_s:g} s (last: {last})")
            sleep(poll_s)

    # --- deployments -------------------------------------------------------------------------------------

    def list_deployments(self) -> list[dict[str, Any]]:
        return self._call("GET", _path("deployments"))["data"]

    def get_deployment(self, ref: str) -> dict[str, Any]:
        return self._call("GET", _path("deployments", ref))

    def find_deployment(self, ref: str) -> dict[str, Any] | None:
        """The deployment, or None when there is none by that id or name."""
        try:
            return self.get_deployment(ref)
        except ControlPlaneError as exc:
            if exc.status == 404:
                return None
            raise

    def create_deployment(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("POST", _path("deployments"), json=body)

    def update_deployment(self, ref: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("PATCH", _path("deployments", ref), json=body)

    def delete_deployment(self, ref: str, *, missing_ok: bool = False) -> dict[str, Any] | None:
        """Delete; with `missing_ok`, None when it was already gone (deleting is idempotent)."""
        try:
            return self._call("DELETE", _path("deployments", ref))
        except ControlPlaneError as exc:
            if missing_ok and exc.status == 404:
                return None
            raise

    def deployment_action(self, ref: str, action: Literal["stop", "resume"]) -> dict[str, Any]:
        return self._call("POST", _path("deployments", ref, action))

    def list_replicas(self, ref: str, *, include_stopped: bool = False) -> list[dict[str, Any]]:
        return self._call("GET", _path("deployments", ref, "replicas"), params={"all": include_stopped})["data"]

    def list_adapters(self, ref: str) -> list[dict[str, Any]]:
        return self._call("GET", _path("deployments", ref, "adapters"))["data"]

    def add_adapter(self, ref: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("POST", _path("deployments", ref, "adapters"), json=dict(body))

    def remove_adapter(self, ref: str, name: str) -> dict[str, Any]:
        return self._call("DELETE", _path("deployments", ref, "adapters", name))

    def list_events(self, ref: str, *, limit: int) -> list[dict[str, Any]]:
        return self._call("GET", _path("deployments", ref, "events"), params={"limit": limit})["data"]

    def list_models(self) -> list[dict[str, Any]]:
        """OpenAI's `/v1/models`: the caller's deployments."""
        return self._call("GET", "/v1/models")["data"]

    def replica_logs(self, ref: str, replica: str | None, *, tail: int) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"tail": tail} | ({"replica": replica} if replica else {})
        return self._call("GET", _path("deployments", ref, "logs"), params=params)["data"]

    def stream_chat(self, body: Mapping[str, Any]) -> Iterator[str]:
        """The lines of a streamed chat completion (`data: ...` server-sent events)."""
        with self._stream("POST", _path("chat", "completions"), json=body) as response:
            yield from response.iter_lines()

    # --- files and batches ---------------------------------------------------------------------------

    def upload_file(self, filename: str, content: Readable, purpose: str) -> dict[str, Any]:
        return self._call("POST", _path("files"), data={"purpose": purpose},
                          files={"file": (filename, content, "application/jsonl")})

    def list_files(self, *, limit: int, purpose: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit} | ({"purpose": purpose} if purpose else {})
        return self._call("GET", _path("files"), params=params)

    def delete_file(self, file_id: str) -> dict[str, Any]:
        return self._call("DELETE", _path("files", file_id))

    @contextmanager
    def file_content(self, file_id: str) -> Iterator[httpx.Response]:
        """A file's content as a streamed response (read it with `iter_bytes`)."""
        with self._stream("GET", _path("files", file_id, "content")) as response:
            yield response

    def create_batch(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("POST", _path("batches"), json=body)

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        return self._call("GET", _path("batches", batch_id))

    def list_batches(self, *, limit: int, after: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit} | ({"after": after} if after else {})
        return self._call("GET", _path("batches"), params=params)

    def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        return self._call("POST", _path("batches", batch_id, "cancel"))

    # --- API keys ------------------------------------------------------------------------------------

    def list_keys(self) -> list[dict[str, Any]]:
        return self._call("GET", _path("keys"))["data"]

    def create_key(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("POST", _path("keys"), json=body)

    def revoke_key(self, key_id: str) -> dict[str, Any]:
        return self._call("POST", _path("keys", key_id, "revoke"))

    def rotate_key(self, key_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("POST", _path("keys", key_id, "rotate"), json=body)

    # --- plumbing ----------------------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if response.status_code >= 400:
            raise error_from(response)
        return response.json()

    @contextmanager
    def _stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        with ExitStack() as stack:
            try:
                response = stack.enter_context(self._http.stream(method, path, **kwargs))
            except httpx.HTTPError as exc:
                raise self._unreachable(exc) from None
            if response.status_code >= 400:
                response.read()
                raise error_from(response)
            yield response  # a failure while reading is the caller's: it knows what it was reading

    def _unreachable(self, exc: httpx.HTTPError) -> ControlPlaneError:
        return ControlPlaneError(0, f"cannot reach the control plane at {self.base_url}: {exc}")
