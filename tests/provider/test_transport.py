"""The chat client's HTTP/1.1 transport (tokens.http1): plain and TLS connections, keep-alive, bodies delimited
every way HTTP/1.1 allows, informational answers, servers that close or misbehave, and failures mapped to httpx's
errors."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tokens.http1 import MAX_HEAD_BYTES, Http1Transport, pushable, raw_body


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


class _CountingServer(ThreadingHTTPServer):
    connections = 0

    def process_request(self, request, client_address) -> None:
        self.connections += 1
        super().process_request(request, client_address)


@pytest.fixture
def server():
    httpd = _CountingServer(("127.0.0.1", 0), _Handler)
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
    return httpx.AsyncClient(transport=Http1Transport(ssl_context=ssl_context or ssl.create_default_context()))


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
            return sizes

    assert run(main()) == [5, 300_000, 7]
    assert server.connections == 1


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


@pytest.fixture
def scripted():
    """A server that answers each connection with the next scripted list of byte strings (sent one by one), then
    closes it, or holds it open when the script ends with None; it records what each connection sent."""
    listener = socket.create_server(("127.0.0.1", 0))
    scripts: list[list[bytes | None]] = []
    received: list[bytes] = []
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            script = scripts.pop(0) if scripts else []
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            received.append(data)
            for part in script:
                if part is None:
                    held.append(conn)
                    break
                conn.sendall(part)
            else:
                conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1], scripts, received
    listener.close()
    for conn in held:
        conn.close()


def _get(port: int, path: str = "/") -> tuple[int, bytes]:
    async def main() -> tuple[int, bytes]:
        async with _client() as client:
            response = await client.get(f"http://127.0.0.1:{port}{path}")
            return response.status_code, response.content

    return asyncio.run(main())


def test_it_decodes_chunked_bodies_split_anywhere(scripted):
    port, scripts, received = scripted
    wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    scripts.append([wire[i : i + 3] for i in range(0, len(wire), 3)])
    assert _get(port, "/x?y=1") == (200, b"hello world")
    assert received[0].startswith(b"GET /x?y=1 HTTP/1.1\r\n") and b"\r\nhost: 127.0.0.1:" in received[0].lower()


def test_it_skips_informational_answers(scripted):
    port, scripts, _ = scripted
    scripts.append(
        [
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Real: yes\r\n\r\nok",
        ]
    )
    assert _get(port) == (200, b"ok")


def test_it_reads_a_body_that_ends_with_the_connection(scripted):
    port, scripts, _ = scripted
    scripts.append([b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ", b"the end"])
    assert _get(port) == (200, b"until the end")


@pytest.mark.parametrize(
    "script, error",
    [
        ([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"], httpx.RemoteProtocolError),
        ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"], httpx.RemoteProtocolError),
        ([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"], httpx.RemoteProtocolError),  # closed inside the head
        ([], httpx.RemoteProtocolError),  # closed without a word
        ([b"SMTP ready\r\n\r\n"], httpx.RemoteProtocolError),
        ([b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * (MAX_HEAD_BYTES + 10), None], httpx.RemoteProtocolError),
    ],
    ids=["short-length", "cut-chunk", "cut-head", "silent-close", "not-http", "endless-header"],
)
def test_it_maps_broken_answers_to_httpx_errors(scripted, script, error):
    port, scripts, _ = scripted
    scripts.append(script)
    with pytest.raises(error):
        _get(port)


def test_it_opens_a_new_connection_when_the_server_closed_the_idle_one(scripted):
    port, scripts, received = scripted
    scripts.append([b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"])  # then closes: keep-alive is over
    scripts.append([b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb"])

    async def main() -> list[bytes]:
        async with _client() as client:
            first = (await client.get(f"http://127.0.0.1:{port}/")).content
            [[idle]] = client._transport._idle.values()
            async with asyncio.timeout(5):  # until the server's close reaches the pooled connection
                while not idle.eof:
                    await asyncio.sleep(0)
            second = (await client.get(f"http://127.0.0.1:{port}/")).content
            return [first, second]

    assert asyncio.run(main()) == [b"a", b"b"]
    assert len(received) == 2


def test_it_closes_a_connection_whose_body_was_left_unread(scripted):
    port, scripts, received = scripted
    scripts.append([b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10, None])
    scripts.append([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", None])

    async def main() -> bytes:
        async with _client() as client:
            async with client.stream("GET", f"http://127.0.0.1:{port}/") as response:
                await anext(response.aiter_raw())
            return (await client.get(f"http://127.0.0.1:{port}/")).content

    assert asyncio.run(main()) == b"ok"
    assert len(received) == 2  # the half-read connection was not reused


def test_it_refuses_methods_whose_answers_it_cannot_delimit():
    async def main() -> None:
        async with _client() as client:
            await client.head("http://127.0.0.1:9/")  # refused before any connection

    with pytest.raises(httpx.UnsupportedProtocol):
        asyncio.run(main())


def test_it_drops_a_connection_the_server_wrote_to_unasked(scripted):
    # A server may answer again on a kept-alive connection (a 408 before closing it): that connection cannot carry
    # the next request, whose answer would never come on it.
    port, scripts, received = scripted
    unasked = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n"
    scripts.append([b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na" + unasked, None])
    scripts.append([b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb", None])

    async def main() -> list[bytes]:
        async with _client() as client, asyncio.timeout(5):
            return [(await client.get(f"http://127.0.0.1:{port}/")).content for _ in range(2)]

    assert asyncio.run(main()) == [b"a", b"b"]
    assert len(received) == 2


def test_raw_body_reads_what_aiter_raw_reads_and_pools_the_connection(server, run):
    port = server.server_address[1]

    async def main() -> list[int]:
        async with _client() as client:
            sizes = []
            for size in (5, 300_000):
                async with client.stream("GET", f"http://127.0.0.1:{port}/{size}") as response:
                    sizes.append(sum([len(part) async for part in raw_body(response)]))
            other = httpx.AsyncClient()  # another transport: httpx's own aiter_raw
            async with other, other.stream("GET", f"http://127.0.0.1:{port}/9") as response:
                sizes.append(sum([len(part) async for part in raw_body(response)]))
            return sizes

    assert run(main()) == [5, 300_000, 9]
    assert server.connections == 2  # one kept alive for both of ours, one for httpx's own client


CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def _pushed(port: int, handler_returns=lambda data: False, run=asyncio.run):
    """GET /, push the body's reads to a handler; return (reads pushed, then what iterating on yields)."""

    async def main() -> tuple[list[bytes], list[bytes]]:
        pushed: list[bytes] = []

        def handler(data: bytes) -> bool:
            pushed.append(data)
            return handler_returns(data)

        async with _client() as client, client.stream("GET", f"http://127.0.0.1:{port}/") as response:
            body = pushable(response)
            assert body is not None
            async with asyncio.timeout(5):
                await body.pushed(handler)
                return pushed, [part async for part in raw_body(response)]

    return run(main())


def test_pushed_hands_over_each_read_until_the_body_ends(scripted, run):
    port, scripts, _received = scripted
    scripts.append([CHUNKED + b"5\r\nhello\r\n", b"6\r\n world\r\n", b"0\r\n\r\n"])

    pushed, rest = _pushed(port, run=run)

    assert b"".join(pushed) == b"hello world" and rest == []


def test_pushed_stops_when_the_handler_has_had_enough_and_the_rest_can_be_read(scripted):
    port, scripts, _received = scripted
    scripts.append([CHUNKED + b"5\r\nhello\r\n", b"6\r\n world\r\n0\r\n\r\n"])

    pushed, rest = _pushed(port, handler_returns=lambda data: True)

    # The two writes may arrive as one read or two: either way one push, and the rest is there to read.
    assert len(pushed) == 1 and b"".join(pushed + rest) == b"hello world"


def test_pushed_raises_what_the_handler_raises_and_a_cut_body_raises_on_reading(scripted):
    port, scripts, _received = scripted
    scripts.append([CHUNKED + b"5\r\nhello\r\n"])  # then the server closes mid-body
    scripts.append([CHUNKED + b"5\r\nhello\r\n", None])

    with pytest.raises(httpx.RemoteProtocolError):
        _pushed(port)

    def refuse(data: bytes) -> bool:
        raise ValueError(data)

    with pytest.raises(ValueError, match="hello"):
        _pushed(port, handler_returns=refuse)


def test_a_cancelled_push_leaves_the_body_to_be_read(scripted):
    port, scripts, _received = scripted
    scripts.append([CHUNKED + b"5\r\nhello\r\n", None])  # held open: nothing more comes

    async def main() -> list[bytes]:
        async with _client() as client, client.stream("GET", f"http://127.0.0.1:{port}/") as response:
            body = pushable(response)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await body.pushed(lambda data: False)
            assert body._connection.listener is None  # reads wake a reader again
            return []

    assert asyncio.run(main()) == []
