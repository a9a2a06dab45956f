"""The chat client's network backend on asyncio transports: plain and TLS connections, keep-alive, a server that
closes, and connection failures mapped to httpx's errors."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpcore
import httpx
import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tokens.transport import AsyncioBackend


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b"x" * int(self.path.strip("/") or 5)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _self_signed(tmp_path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert_file, key_file)
    client_side = ssl.create_default_context(cafile=str(cert_file))
    return server_side, client_side


def _client(ssl_context: ssl.SSLContext | None = None) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport()
    transport._pool = httpcore.AsyncConnectionPool(ssl_context=ssl_context, network_backend=AsyncioBackend())
    return httpx.AsyncClient(transport=transport)


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request):
    """Run a coroutine on each event loop the server may use (uvicorn picks uvloop when it is installed, and
    uvloop's transports are not asyncio.Transport subclasses)."""
    factory = uvloop.new_event_loop if request.param == "uvloop" else None

    def run(coroutine):
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(coroutine)

    return run


def test_it_reads_whole_bodies_over_one_kept_alive_connection(server, run):
    port = server.server_address[1]

    async def main() -> list[int]:
        async with _client() as client:
            sizes = []
            for size in (5, 300_000, 7):  # the middle one arrives in many reads and pauses the socket
                response = await client.get(f"http://127.0.0.1:{port}/{size}")
                sizes.append(len(response.content))
            assert len(client._transport._pool.connections) == 1
            return sizes

    assert run(main()) == [5, 300_000, 7]


def test_it_speaks_tls_and_checks_the_certificate(tmp_path, run):
    server_side, client_side = _self_signed(tmp_path)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.socket = server_side.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{httpd.server_address[1]}/11"

    async def main() -> tuple[bytes, Exception]:
        async with _client(client_side) as client:
            body = (await client.get(url)).content
        async with _client(ssl.create_default_context()) as client:  # does not trust the self-signed certificate
            with pytest.raises(httpx.ConnectError) as refused:
                await client.get(url)
        return body, refused.value

    try:
        body, refused = run(main())
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert body == b"x" * 11
    assert "certificate" in str(refused).lower()


def test_it_maps_a_refused_connection_to_connect_error():
    async def main() -> None:
        async with _client() as client:
            await client.get("http://127.0.0.1:9/")  # discard port: nothing listens

    with pytest.raises(httpx.ConnectError):
        asyncio.run(main())
