"""Drop-in proof: the official ``fauna`` Python driver uses the gateway as its endpoint.

The driver is configured exactly as an application would configure it against Fauna
(``Client(endpoint="<gateway>/fauna", secret=<the Clerk token>)``); the gateway verifies the token
and forwards to the fake Fauna core (:mod:`tests.support.fauna_server`), which records what it got.
Both upstream clients of the hot path are exercised. Stream ordering is proved by producing each
event only after the client received the previous one, never with timings.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import fauna.errors
import httpx
import pytest
from fauna import fql
from fauna.client import Client, QueryOptions
from fauna.http.httpx_client import HTTPXClient
from fauna.query import EventSource

from tests.e2e.conftest import Mint, bearer
from tests.support.fauna_server import FaunaServer, data_event
from tests.support.gateway_process import GatewayProcess, gateway_env
from tests.support.jwks_server import JwksServer

AUDIENCE = "https://db.fauna.com/db/ys1clerkgateway"
BACKEND_TIMEOUT = 2.0  # seconds; an idle stream must outlive it


@pytest.fixture(scope="module")
def fauna_server() -> Iterator[FaunaServer]:
    with FaunaServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_fauna(fauna_server: FaunaServer) -> None:
    fauna_server.reset()


@pytest.fixture(scope="module", params=["http1", "httpx"])
def gateway(request: pytest.FixtureRequest, jwks_server: JwksServer,
            fauna_server: FaunaServer) -> Iterator[GatewayProcess]:
    backends = {
        "fauna": {"url": fauna_server.url, "timeout_seconds": BACKEND_TIMEOUT},
        "fauna-aud": {"adapter": "fauna", "url": fauna_server.url, "audience": AUDIENCE},
    }
    env = gateway_env(jwks_server.url, backends, GATEWAY_UPSTREAM_CLIENT=request.param,
                      GATEWAY_DEFAULT_BACKEND="fauna")
    with GatewayProcess(env) as process:
        yield process


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    """Reads a driver iterator with a deadline: a gateway that buffered would hang ``next()``."""
    executor = ThreadPoolExecutor(max_workers=1)
    yield executor
    executor.shutdown(wait=False, cancel_futures=True)


def driver(gateway: GatewayProcess, token: str, backend: str = "fauna") -> Client:
    """The official driver pointed at the gateway; its own HTTP client, so no global state is
    shared between tests, and one attempt, so a retry never hides a failure."""
    http = HTTPXClient(httpx.Client(timeout=httpx.Timeout(15.0), trust_env=False))
    return Client(endpoint=f"{gateway.url}/{backend}", secret=token, http_client=http, max_attempts=1)


def next_within(pool: ThreadPoolExecutor, iterator: Iterator[Any], seconds: float = 10.0) -> Any:
    return pool.submit(next, iterator, None).result(timeout=seconds)


def open_source(client: Client) -> EventSource:
    source = client.query(fql("Product.all().eventSource()")).data
    assert isinstance(source, EventSource)
    return source


def test_query_goes_through_with_the_verified_token_and_one_audit_tag(
        gateway: GatewayProcess, fauna_server: FaunaServer, mint: Mint) -> None:
    token = mint(sub="user_2fauna")
    client = driver(gateway, token)
    try:
        result = client.query(fql("Product.all()"), QueryOptions(
            query_tags={"app": "shop", "clerk_user": "user_forged"}))
    finally:
        client.close()

    assert result.data == {"greeting": "hello", "answer": 42}
    assert result.query_tags == {"app": "shop", "clerk_user": "user_2fauna"}
    sent = fauna_server.requests_to("/query/1")
    assert len(sent) == 1
    assert sent[0].header("authorization") == f"Bearer {token}"
    tags = sent[0].header("x-query-tags")
    assert tags == "app=shop,clerk_user=user_2fauna"
    assert sent[0].header("x-format") == "tagged"
    assert sent[0].header("x-driver") == "python"
    assert sent[0].header("x-query-timeout-ms") == "5000"
    assert sent[0].has_header("x-request-id") and not sent[0].has_header("cookie")
    assert sent[0].json()["query"] == {"fql": ["Product.all()"]}


def test_the_default_backend_serves_fauna_paths_at_the_root_for_drivers_that_drop_the_path(
        gateway: GatewayProcess, fauna_server: FaunaServer, mint: Mint) -> None:
    """Fauna's JavaScript driver resolves /query/1 against the endpoint's origin; with
    GATEWAY_DEFAULT_BACKEND=fauna the gateway serves the Fauna paths there too."""
    token = mint(sub="user_root")
    http = HTTPXClient(httpx.Client(timeout=httpx.Timeout(15.0), trust_env=False))
    client = Client(endpoint=gateway.url, secret=token, http_client=http, max_attempts=1)
    try:
        assert client.query(fql("Product.all()")).data == {"greeting": "hello", "answer": 42}
    finally:
        client.close()
    (sent,) = fauna_server.requests_to("/query/1")
    assert sent.header("authorization") == f"Bearer {token}"
    with gateway.client() as plain:
        assert plain.post("/query/2", content=b"{}").status_code == 404  # only the adapter's own paths


def test_stream_events_arrive_one_by_one_and_an_idle_stream_outlives_the_backend_timeout(
        gateway: GatewayProcess, fauna_server: FaunaServer, mint: Mint, pool: ThreadPoolExecutor) -> None:
    token = mint(sub="user_streamer")
    client = driver(gateway, token)
    try:
        source = open_source(client)
        handle = fauna_server.stream(source.token)
        with client.stream(source) as stream:
            events = iter(stream)
            for number in (1, 2, 3):
                if number == 3:
                    time.sleep(BACKEND_TIMEOUT + 1.0)  # idle past the backend's timeout: no read timeout
                handle.push(data_event("add", number))
                event = next_within(pool, events)
                assert event is not None and event["type"] == "add"
                assert event["data"]["number"] == number
                assert handle.produced == number, "the next event existed before this one arrived"
            handle.end()
            assert next_within(pool, events) is None  # Fauna ending the stream ends the iteration
    finally:
        client.close()

    opened = fauna_server.requests_to("/stream/1")
    assert len(opened) == 1 and handle.opened == 1
    assert opened[0].header("authorization") == f"Bearer {token}"
    assert opened[0].json() == {"token": source.token}


def test_feed_page_is_read(gateway: GatewayProcess, fauna_server: FaunaServer, mint: Mint) -> None:
    token = mint(sub="user_feeder")
    client = driver(gateway, token)
    try:
        source = open_source(client)
        pages = list(client.feed(source))
    finally:
        client.close()

    assert len(pages) == 1
    events = list(pages[0])
    assert [event["type"] for event in events] == ["add", "update"]
    assert pages[0].cursor == events[-1]["cursor"]
    sent = fauna_server.requests_to("/feed/1")
    assert len(sent) == 1 and sent[0].header("authorization") == f"Bearer {token}"
    assert sent[0].json()["token"] == source.token


@pytest.mark.parametrize("kind", ["garbage", "expired", "wrong-issuer"])
def test_bad_tokens_raise_the_drivers_authentication_error(
        gateway: GatewayProcess, fauna_server: FaunaServer, mint: Mint, kind: str) -> None:
    token = {"garbage": "not.a.token", "expired": mint(lifetime=-60),
             "wrong-issuer": mint(issuer="https://evil.example")}[kind]
    client = driver(gateway, token)
    try:
        with pytest.raises(fauna.errors.AuthenticationError) as raised:
            client.query(fql("Product.all()"))
    finally:
        client.close()

    assert raised.value.status_code == 401 and raised.value.code == "unauthorized"
    assert fauna_server.requests == []


def test_gateway_refusals_are_fauna_shaped(gateway: GatewayProcess, fauna_server: FaunaServer,
                                           mint: Mint) -> None:
    with gateway.client() as http:
        unauthorized = http.post("/fauna/query/1", json={"query": "1"}, headers=bearer("not.a.token"))
        not_found = http.post("/fauna/schema/1/files", json={}, headers=bearer(mint()))
        wrong_method = http.get("/fauna/query/1", headers=bearer(mint()))

    assert unauthorized.status_code == 401
    assert unauthorized.headers["content-type"].startswith("application/json")
    assert unauthorized.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert unauthorized.json()["error"]["code"] == "unauthorized"
    assert set(unauthorized.json()) == {"error"}
    assert not_found.status_code == 404 and not_found.json()["error"]["code"] == "not_found"
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert fauna_server.requests == []


def test_faunas_own_errors_pass_through_untouched(gateway: GatewayProcess, fauna_server: FaunaServer,
                                                 mint: Mint) -> None:
    fauna_server.fail_next("/query/1", 400, "invalid_query", "the query failed 1 validation check")
    client = driver(gateway, mint())
    try:
        with pytest.raises(fauna.errors.QueryCheckError) as raised:
            client.query(fql("Product.all("))
        fauna_server.fail_next("/query/1", 401, "unauthorized", "invalid token: unable to authenticate request")
        with pytest.raises(fauna.errors.AuthenticationError) as rejected:
            client.query(fql("Product.all()"))
    finally:
        client.close()

    assert raised.value.message == "the query failed 1 validation check"
    assert rejected.value.message == "invalid token: unable to authenticate request"
    assert len(fauna_server.requests_to("/query/1")) == 2


@pytest.mark.parametrize("aud", [None, "https://db.fauna.com/db/another", ["https://db.fauna.com/db/another"]])
def test_audience_mismatch_is_refused_before_fauna_is_called(
        gateway: GatewayProcess, fauna_server: FaunaServer, mint: Mint, aud: Any) -> None:
    client = driver(gateway, mint(aud=aud), backend="fauna-aud")
    try:
        with pytest.raises(fauna.errors.AuthenticationError):
            client.query(fql("Product.all()"))
    finally:
        client.close()
    assert fauna_server.requests == []


@pytest.mark.parametrize("aud", [AUDIENCE, ["https://other.example", AUDIENCE]])
def test_matching_audience_goes_through(gateway: GatewayProcess, fauna_server: FaunaServer, mint: Mint,
                                        aud: Any) -> None:
    client = driver(gateway, mint(aud=aud), backend="fauna-aud")
    try:
        assert client.query(fql("Product.all()")).data["answer"] == 42
    finally:
        client.close()
    assert len(fauna_server.requests_to("/query/1")) == 1


def test_closing_the_stream_closes_the_upstream_stream(
        gateway: GatewayProcess, fauna_server: FaunaServer, mint: Mint, pool: ThreadPoolExecutor) -> None:
    client = driver(gateway, mint(sub="user_leaver"))
    try:
        source = open_source(client)
        handle = fauna_server.stream(source.token)
        with client.stream(source) as stream:
            events = iter(stream)
            handle.push(data_event("add", 1))
            assert next_within(pool, events)["data"]["number"] == 1
        # leaving the block closes the driver's response, and with it the connection
        assert handle.disconnected.wait(10), "the upstream stream stayed open after the client went away"
    finally:
        client.close()
    assert not handle.ended.is_set()


def test_stream_ends_when_the_token_expires(
        gateway: GatewayProcess, fauna_server: FaunaServer, mint: Mint, pool: ThreadPoolExecutor) -> None:
    lifetime = 4
    token = mint(sub="user_expiring", lifetime=lifetime)
    expires_at = int(time.time()) + lifetime  # what the token's exp says (minted a moment ago)
    client = driver(gateway, token)
    try:
        source = open_source(client)
        handle = fauna_server.stream(source.token)
        with client.stream(source) as stream:
            events = iter(stream)
            handle.push(data_event("add", 1))
            assert next_within(pool, events)["data"]["number"] == 1
            with pytest.raises(fauna.errors.AuthenticationError) as raised:
                next_within(pool, events, seconds=lifetime + 10)
            ended_at = time.time()
    finally:
        client.close()

    assert raised.value.code == "unauthorized" and "expired" in raised.value.message
    assert expires_at - 1.0 <= ended_at <= expires_at + 5.0, (ended_at, expires_at)
    assert handle.disconnected.wait(10), "the gateway kept the upstream stream open after the token expired"
    assert handle.opened == 1, "the driver reconnected instead of seeing the end of the stream"
