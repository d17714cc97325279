"""What `bench/gateway.py --workers N` stands on: N processes on one port, a bare proxy, and wrk.

Each server process binds the port with SO_REUSEPORT, so the kernel spreads connections over the N
processes (what `inferstack serve --workers N` gets from uvicorn's shared socket). The load comes from
`wrk` (Debian's `wrk` package), a C load generator that costs little CPU next to Python servers.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import uvloop
from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

WRK_SCRIPT = """wrk.method = "POST"
wrk.body = '{"model": "bench", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
"""


def shared_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    return sock


def serve_bare_proxy(replica_url: str, replica_key: str, port: int) -> None:
    """The floor to compare with: an aiohttp server relaying to the replica with aiohttp's client, no work."""
    session: ClientSession | None = None

    async def start(_: web.Application) -> None:
        nonlocal session
        session = ClientSession(connector=TCPConnector(limit=0), timeout=ClientTimeout(total=None))

    async def relay(request: web.Request) -> web.Response:
        assert session is not None
        async with session.post(replica_url + request.path, data=await request.read(),
                                headers={"Authorization": f"Bearer {replica_key}",
                                         "Content-Type": "application/json"}) as response:
            return web.Response(body=await response.read(), status=response.status,
                                content_type=response.content_type)

    async def close(_: web.Application) -> None:
        if session is not None:
            await session.close()

    app = web.Application()
    app.on_startup.append(start)
    app.on_cleanup.append(close)
    app.router.add_post("/v1/chat/completions", relay)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())  # the gateway's loop too: a like-for-like floor
    web.run_app(app, sock=shared_socket(port), print=None, access_log=None)


ANSWER = (b'{"id":"chatcmpl-bench","object":"chat.completion","created":0,"model":"bench","choices":[{"index":0,'
          b'"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],'
          b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}')
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(ANSWER)) + ANSWER


class _FastUpstream(asyncio.Protocol):
    """A canned chat completion per request on a keep-alive connection: the least an upstream can cost,
    so that what is measured is the proxy in front of it, not the replica."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport: asyncio.Transport = transport  # type: ignore[assignment]
        self._buffer = b""

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            head_end = self._buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            length = re.search(rb"(?i)content-length:\s*(\d+)", self._buffer[:head_end])
            end = head_end + 4 + (int(length.group(1)) if length else 0)
            if len(self._buffer) < end:
                return
            self._buffer = self._buffer[end:]
            self._transport.write(RESPONSE)


def serve_fast_upstream(port: int) -> None:
    """One process of the upstream; several share the port (SO_REUSEPORT)."""
    async def run() -> None:
        server = await asyncio.get_running_loop().create_server(_FastUpstream, sock=shared_socket(port))
        await server.serve_forever()

    uvloop.run(run())


def wrk_path() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("bench/gateway.py --workers needs wrk, a low-CPU load generator: "
                         "sudo apt-get install -y wrk (Debian/Ubuntu)")
    return found


def wrk_rps(url: str, key: str, connections: int, seconds: float) -> float:
    """Requests/sec wrk reaches on `url` with one thread and `connections` connections."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % key)
    done = subprocess.run([wrk_path(), "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", script.name, url],
                          capture_output=True, text=True, check=True)
    Path(script.name).unlink()
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    if errors:
        raise SystemExit(f"{url}: {errors.group(1)} error responses under load:\n{done.stdout}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    if match is None:
        raise SystemExit(f"could not read wrk's output:\n{done.stdout}{done.stderr}")
    return float(match.group(1))


def start_processes(argv: list[str], count: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, *argv]) for _ in range(count)]


def stop_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM, then SIGKILL after 5 s: a server still waiting on its upstream's keep-alive connections
    must not hold the benchmark up."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
