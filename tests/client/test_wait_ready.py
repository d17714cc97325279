"""Waiting for a control plane that is being created: wait for what may come, fail at once, with the
cause, for what will not (a certificate for another name, a refused connection, a rejected key).
Real servers over real sockets; the wait's clock is injected, so the timeouts cost nothing."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from inferstack.client import ControlPlaneClient, ControlPlaneError
from support import ControlPlane


class FakeTime:
    """`sleep` moves `now` on: a wait of minutes runs in microseconds, and how long it waited is known."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def _certificate(name: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, signer: ec.EllipticCurvePrivateKey,
                 ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
    return builder.sign(signer, hashes.SHA256())


@pytest.fixture
def tls_server_for_another_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An HTTPS /health on 127.0.0.1 whose certificate (from a CA the client trusts) names
    inference.example.com: what https://<load balancer DNS name> meets behind a custom domain's cert."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = _certificate("test CA", ca_key, ca_name, ca_key, ca=True)
    leaf = _certificate("inference.example.com", key, ca_name, ca_key, ca=False)
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def wait(url: str, key: str = "isk-any", timeout_s: float = 600) -> tuple[ControlPlaneError, float]:
    time = FakeTime()
    with ControlPlaneClient(url, key) as client, pytest.raises(ControlPlaneError) as caught:
        client.wait_ready(timeout_s, poll_s=2, sleep=time.sleep, now=time.now)
    return caught.value, time.t


def test_a_certificate_for_another_name_fails_at_once(tls_server_for_another_name: str) -> None:
    error, waited = wait(tls_server_for_another_name)
    assert waited == 0, "no waiting for a certificate that will not change"
    assert "TLS certificate verification failed" in error.message and "127.0.0.1" in error.message
    assert "domain_name" in error.message


def test_a_refused_connection_fails_at_once() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    error, waited = wait(f"http://127.0.0.1:{port}")
    assert waited == 0 and "connection refused" in error.message


def test_a_rejected_key_fails_at_once_with_the_401(plane: ControlPlane) -> None:
    error, waited = wait(plane.url, key="isk-not-a-key")
    assert waited == 0 and error.status == 401


def test_a_name_that_does_not_resolve_yet_is_waited_for_then_reported() -> None:
    # A new load balancer's DNS name can take minutes to resolve: that is waited out, within the timeout.
    error, waited = wait("http://inferstack-test.invalid", timeout_s=30)
    assert 30 <= waited <= 32 and "did not become healthy in 30 s" in error.message


def test_a_healthy_control_plane_with_a_good_key_is_ready(plane: ControlPlane) -> None:
    with ControlPlaneClient(plane.url, plane.create_key("ready")) as client:
        client.wait_ready(5)
