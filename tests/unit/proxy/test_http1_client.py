"""The hot-path HTTP/1.1 client on its own: TLS (Hasura Cloud, Nhost) and the framings a body can have."""

from __future__ import annotations

import datetime
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from clerk_gateway.proxy import http1
from clerk_gateway.proxy.http1 import Http1Upstream
from clerk_gateway.proxy.upstream import UpstreamConnectError


def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[int, Path]]:
    cert, key = _certificate(tmp_path, "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def graphql(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "application/json"})
        await response.prepare(request)
        await response.write(b'{"data":')
        await response.write(b'{"host":"' + request.host.encode() + b'"}}')
        return response

    app = web.Application()
    app.router.add_post("/v1/graphql", graphql)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield port, cert
    await runner.cleanup()


_create_default_context = ssl.create_default_context


def _trusting(cafile: Path) -> object:
    def create_default_context() -> ssl.SSLContext:
        return _create_default_context(cafile=str(cafile))
    return create_default_context


async def test_https_upstream_with_a_trusted_certificate(tls_server: tuple[int, Path],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    port, cert = tls_server
    monkeypatch.setattr(http1.ssl, "create_default_context", _trusting(cert))
    client = Http1Upstream()
    try:
        for _ in range(2):  # the second request reuses the pooled TLS connection
            response = await client.send("POST", f"https://localhost:{port}/v1/graphql",
                                         [(b"content-type", b"application/json")], b"{}", timeout=5,
                                         streaming=False)
            body = b"".join([chunk async for chunk in response.chunks()])
            await response.aclose()
            assert response.status == 200
            assert body == b'{"data":{"host":"localhost:%d"}}' % port
    finally:
        await client.aclose()


async def test_untrusted_certificate_is_a_connect_error(tls_server: tuple[int, Path]) -> None:
    port, _ = tls_server
    client = Http1Upstream()
    try:
        with pytest.raises(UpstreamConnectError):
            await client.send("POST", f"https://localhost:{port}/v1/graphql", [], b"{}", timeout=5,
                              streaming=False)
    finally:
        await client.aclose()


async def test_a_body_delimited_by_the_connection_closing_arrives_whole() -> None:
    """An old-style upstream that sends neither Content-Length nor chunks ends its body by closing."""
    import asyncio

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nfirst ")
        await writer.drain()
        writer.write(b"and last")
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = Http1Upstream()
    try:
        response = await client.send("GET", f"http://127.0.0.1:{port}/x", [], b"", timeout=5, streaming=False)
        body = b"".join([chunk async for chunk in response.chunks()])
        await response.aclose()
        assert body == b"first and last"
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()


async def test_connections_are_capped_and_waiters_get_the_freed_one() -> None:
    """A burst beyond max_connections waits for a connection instead of opening more sockets."""
    import asyncio

    accepted = 0
    release = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        while True:
            try:
                await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            await release.wait()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = Http1Upstream(max_connections_per_origin=2)

    async def one() -> bytes:
        response = await client.send("GET", f"http://127.0.0.1:{port}/", [], b"", timeout=5, streaming=False)
        body = b"".join([chunk async for chunk in response.chunks()])
        await response.aclose()
        return body

    try:
        tasks = [asyncio.create_task(one()) for _ in range(6)]
        for _ in range(250):  # until the two allowed connections are in (bounded wait, not a timing check)
            if accepted >= 2:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)  # room for a third connection to show up if the cap did not hold
        assert accepted == 2
        release.set()
        assert await asyncio.gather(*tasks) == [b"ok"] * 6
        assert accepted == 2
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()


async def test_waiting_for_a_connection_counts_against_the_timeout() -> None:
    import asyncio

    from clerk_gateway.proxy.upstream import UpstreamTimeout

    hold = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await hold.wait()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = Http1Upstream(max_connections_per_origin=1)
    try:
        first = asyncio.create_task(client.send("GET", f"http://127.0.0.1:{port}/", [], b"", timeout=5,
                                                streaming=False))
        await asyncio.sleep(0.05)
        with pytest.raises(UpstreamTimeout):
            await client.send("GET", f"http://127.0.0.1:{port}/", [], b"", timeout=0.2, streaming=False)
        hold.set()
        with pytest.raises(UpstreamConnectError):
            await first
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()
