"""Fauna adapter: settings, allow-list, identity headers, audit tags, audience, error shape, and the
proxy ending a stream when its token expires (in-process, with an upstream the test feeds)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import pytest

from clerk_gateway.adapters.base import EXCHANGER, AdapterServices, IncomingRequest
from clerk_gateway.adapters.fauna import EXPIRED_EVENT, FaunaAdapter, FaunaSettings, check_audience, merge_query_tags
from clerk_gateway.adapters.registry import adapter_classes, build_backend_settings, create_adapter
from clerk_gateway.auth.model import TokenKind, VerifiedToken
from clerk_gateway.errors import (
    AuthenticationError,
    ForbiddenError,
    GatewayError,
    MethodNotAllowedError,
    MissingTokenError,
    NotFoundError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from clerk_gateway.proxy.http import BackendProxy
from clerk_gateway.settings.problems import Problems

TOKEN = "head.payload.signature"


def adapter(**fields: Any) -> FaunaAdapter:
    values: dict[str, Any] = {"url": "http://fauna:8443"}
    values.update(fields)
    return FaunaAdapter("fauna", FaunaSettings.model_validate(values))


def token(claims: dict[str, Any] | None = None, *, kind: TokenKind = TokenKind.SESSION,
          expires_at: float = 2e9) -> VerifiedToken:
    base: dict[str, Any] = {"sub": "user_2abc", "sid": "sess_1", "exp": int(expires_at)}
    base.update(claims or {})
    return VerifiedToken(token=TOKEN, header={"alg": "RS256"}, claims=base, kind=kind, subject=base["sub"],
                         expires_at=expires_at, session_id=base.get("sid"))


def request(*headers: tuple[bytes, bytes]) -> IncomingRequest:
    return IncomingRequest(method="POST", path="/fauna/query/1", query_string=b"", headers=list(headers),
                           request_id="r1")


async def sent(a: FaunaAdapter, t: VerifiedToken, *headers: tuple[bytes, bytes]) -> list[tuple[str, str]]:
    route = a.match("POST", "/query/1")
    return [(k.decode(), v.decode()) for k, v in await a.identity_headers(t, request(*headers), route)]


# -- settings and routes ----------------------------------------------------------------------------


def test_defaults_and_registration() -> None:
    problems = Problems()
    settings = build_backend_settings({"fauna": {}}, problems)
    assert problems.items == []
    made = create_adapter("fauna", settings["fauna"])
    assert isinstance(made, FaunaAdapter) and adapter_classes()["fauna"] is FaunaAdapter
    assert made.fauna.url == "https://db.fauna.com" and made.fauna.auth_mode == "forward"
    assert made.fauna.query_tags and made.fauna.audience is None
    assert made.accepted_kinds == frozenset(TokenKind)  # forward: Fauna verifies, template tokens carry aud
    assert made.services_needed() == frozenset()
    assert made.probe_url() == "https://db.fauna.com/ping"


@pytest.mark.parametrize(("fields", "message"), [
    ({"url": "fauna:8443"}, "http(s) URL"),
    ({"auth_mode": "exchange"}, "needs template"),
    ({"auth_mode": "exchange", "template": "fauna", "audience": "https://db.fauna.com/db/x"}, "audience"),
    ({"auth_mode": "admin_secret"}, "auth_mode"),
    ({"secret": "fnAE…"}, "secret"),
])
def test_settings_problems_name_the_field(fields: dict[str, Any], message: str) -> None:
    problems = Problems()
    build_backend_settings({"fauna": fields}, problems)
    assert problems.items and message.lower() in " ".join(str(item) for item in problems.items).lower()


def test_url_slash_is_stripped_and_token_kinds_read_from_text() -> None:
    a = adapter(url="http://fauna:8443/", token_kinds="session")
    assert a.match("POST", "/query/1").upstream_url == "http://fauna:8443/query/1"
    assert a.accepted_kinds == frozenset({TokenKind.SESSION})


def test_routes() -> None:
    a = adapter()
    query, stream, feed = (a.match("POST", path) for path in ("/query/1", "/stream/1", "/feed/1"))
    assert (query.upstream_url, stream.upstream_url, feed.upstream_url) == (
        "http://fauna:8443/query/1", "http://fauna:8443/stream/1", "http://fauna:8443/feed/1")
    assert not (query.graphql or stream.graphql or feed.graphql)
    assert stream.streaming and stream.ends_at_token_expiry
    assert not (query.streaming or query.ends_at_token_expiry or feed.streaming or feed.ends_at_token_expiry)


@pytest.mark.parametrize("path", ["/", "/query/1/", "/query/2", "/query", "/schema/1/files", "/export/1",
                                  "/environment/1", "/ping", "/databases", "/stream/1/../query/1"])
def test_other_paths_are_not_found(path: str) -> None:
    with pytest.raises(NotFoundError):
        adapter().match("POST", path)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "OPTIONS"])
def test_other_methods_are_not_allowed(method: str) -> None:
    with pytest.raises(MethodNotAllowedError) as raised:
        adapter().match(method, "/stream/1")
    assert raised.value.headers == {"allow": "POST"}


def test_header_policy_blocks_only_the_tags_the_adapter_resends() -> None:
    assert FaunaAdapter.header_policy.blocked == frozenset({b"x-query-tags"})
    assert FaunaAdapter.header_policy.blocked_prefixes == ()


# -- identity headers and query tags -----------------------------------------------------------------


async def test_forward_sends_the_verified_token_and_the_audit_tag() -> None:
    assert await sent(adapter(), token()) == [("authorization", f"Bearer {TOKEN}"),
                                              ("x-query-tags", "clerk_user=user_2abc")]


async def test_client_tags_are_kept_and_a_forged_user_tag_replaced() -> None:
    headers = await sent(adapter(), token(), (b"x-query-tags", b"app=shop,clerk_user=user_evil"),
                         (b"x-query-tags", b" page=cart , CLERK_USER=x,"))
    assert headers[1] == ("x-query-tags", "app=shop,page=cart,clerk_user=user_2abc")
    assert [name for name, _ in headers].count("x-query-tags") == 1


async def test_query_tags_off_passes_the_clients_tags_verbatim() -> None:
    headers = await sent(adapter(query_tags=False), token(), (b"x-query-tags", b"app=shop,clerk_user=me"))
    assert headers == [("authorization", f"Bearer {TOKEN}"), ("x-query-tags", "app=shop,clerk_user=me")]
    assert await sent(adapter(query_tags=False), token()) == [("authorization", f"Bearer {TOKEN}")]


@pytest.mark.parametrize(("values", "subject", "expected"), [
    ([], "user_2abc", b"clerk_user=user_2abc"),
    ([b"a=1,b=2"], "user_2abc", b"a=1,b=2,clerk_user=user_2abc"),
    ([b"clerk_user=x"], "user_2abc", b"clerk_user=user_2abc"),
    ([b"clerk_user = x,a=1"], "user_2abc", b"a=1,clerk_user=user_2abc"),
    ([b",,a=1,,"], "user_2abc", b"a=1,clerk_user=user_2abc"),
    ([b"a=1,clerk_user=x"], "auth0|123", b"a=1"),  # not a valid tag value: no tag, and no forged one
    ([], "u" * 81, b""),
    ([], "user-with-dash", b""),
    ([], "usér", b""),
    ([], "u" * 80, b"clerk_user=" + b"u" * 80),
])
def test_merge_query_tags(values: list[bytes], subject: str, expected: bytes) -> None:
    assert merge_query_tags(values, subject) == expected


async def test_a_subject_fauna_cannot_tag_sends_no_tags_header_at_all() -> None:
    assert await sent(adapter(), token({"sub": "auth0|1"})) == [("authorization", f"Bearer {TOKEN}")]


# -- audience --------------------------------------------------------------------------------------

AUD = "https://db.fauna.com/db/ys1"


@pytest.mark.parametrize("aud", [AUD, [AUD], ["https://other", AUD]])
def test_audience_accepted(aud: object) -> None:
    check_audience(aud, AUD)


@pytest.mark.parametrize(("aud", "reason"), [
    (None, "audience-missing"), ("https://db.fauna.com/db/other", "audience-mismatch"), ([], "audience-mismatch"),
    (["https://other"], "audience-mismatch"), (AUD + "/", "audience-mismatch"), (42, "audience-mismatch"),
    ({"aud": AUD}, "audience-mismatch"),
])
def test_audience_refused(aud: object, reason: str) -> None:
    with pytest.raises(AuthenticationError) as raised:
        check_audience(aud, AUD)
    assert raised.value.reason == reason and raised.value.status == 401


async def test_audience_is_checked_before_any_header_is_built() -> None:
    a = adapter(audience=AUD)
    with pytest.raises(AuthenticationError):
        await sent(a, token())
    assert (await sent(a, token({"aud": AUD})))[0] == ("authorization", f"Bearer {TOKEN}")


# -- exchange --------------------------------------------------------------------------------------


class FakeExchanger:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def token_for(self, session_id: str, template: str) -> str:
        self.calls.append((session_id, template))
        return "exchanged.fauna.token"


def exchange_adapter() -> tuple[FaunaAdapter, FakeExchanger]:
    a = adapter(auth_mode="exchange", template="fauna")
    exchanger = FakeExchanger()
    a.services = AdapterServices(exchanger=exchanger)
    return a, exchanger


async def test_exchange_sends_clerks_template_token() -> None:
    a, exchanger = exchange_adapter()
    assert a.services_needed() == frozenset({EXCHANGER})
    assert a.accepted_kinds == frozenset({TokenKind.SESSION})
    headers = await sent(a, token(), (b"x-query-tags", b"app=shop"))
    assert headers == [("authorization", "Bearer exchanged.fauna.token"),
                       ("x-query-tags", "app=shop,clerk_user=user_2abc")]
    assert exchanger.calls == [("sess_1", "fauna")]


async def test_exchange_needs_a_session_and_an_exchanger() -> None:
    a, exchanger = exchange_adapter()
    with pytest.raises(AuthenticationError) as raised:
        await sent(a, token({"sid": None}, kind=TokenKind.TEMPLATE))
    assert raised.value.reason == "token-kind-not-accepted" and exchanger.calls == []
    with pytest.raises(GatewayError):
        await sent(adapter(auth_mode="exchange", template="fauna"), token())


# -- the gateway's refusals in Fauna's shape --------------------------------------------------------


def retry_later() -> GatewayError:
    error = GatewayError("rate-limited-user", "too many requests", headers={"retry-after": "3"})
    error.status = 429
    return error


@pytest.mark.parametrize(("error", "status", "code"), [
    (MissingTokenError(), 401, "unauthorized"),
    (AuthenticationError("token-expired", "the token has expired"), 401, "unauthorized"),
    (ForbiddenError("azp-not-authorized", "nope"), 403, "forbidden"),
    (NotFoundError(), 404, "not_found"),
    (MethodNotAllowedError(["POST"]), 405, "method_not_allowed"),
    (PayloadTooLargeError(10), 413, "request_size_exceeded"),
    (retry_later(), 429, "limit_exceeded"),
    (GatewayError("internal-error", "bug"), 500, "internal_error"),
    (UpstreamUnavailableError("fauna"), 502, "bad_gateway"),
    (ServiceUnavailableError("keys-unavailable", "no keys yet"), 503, "service_unavailable"),
    (UpstreamTimeoutError("fauna"), 504, "gateway_timeout"),
])
def test_render_error_in_faunas_shape(error: GatewayError, status: int, code: str) -> None:
    got_status, headers, body = adapter().render_error(error, None)
    names = dict(headers)
    assert got_status == status
    assert names[b"content-type"] == b"application/json;charset=utf-8"
    assert json.loads(body) == {"error": {"code": code, "message": error.message, "reason": error.reason}}
    assert (b"www-authenticate" in names) == (status == 401)
    if status == 401:
        assert names[b"www-authenticate"].startswith(b'Bearer error="invalid_token"')
    if status == 405:
        assert names[b"allow"] == b"POST"
    if status == 429:
        assert names[b"retry-after"] == b"3"


def test_render_error_shape_drives_the_official_drivers_error_classes() -> None:
    import fauna.errors

    expected = {401: fauna.errors.AuthenticationError, 403: fauna.errors.AuthorizationError,
                429: fauna.errors.ThrottlingError, 502: fauna.errors.ServiceError,
                503: fauna.errors.ServiceTimeoutError}
    errors = {401: MissingTokenError(), 403: ForbiddenError("x", "y"), 429: retry_later(),
              502: UpstreamUnavailableError("fauna"), 503: ServiceUnavailableError("k", "m")}
    for status, error in errors.items():
        got_status, _, body = adapter().render_error(error, None)
        with pytest.raises(expected[status]):
            fauna.errors.FaunaError.parse_error_and_throw(json.loads(body), got_status)


@pytest.mark.parametrize(("last", "ending"), [(b"", EXPIRED_EVENT), (b'{"type":"add"}\r\n', EXPIRED_EVENT),
                                              (b'{"type":"ad', None)])
def test_stream_expired_ending(last: bytes, ending: bytes | None) -> None:
    a = adapter()
    assert a.stream_expired_ending(a.match("POST", "/stream/1"), last) == ending
    event = json.loads(EXPIRED_EVENT)
    assert event["type"] == "error" and event["error"]["code"] == "unauthorized" and EXPIRED_EVENT.endswith(b"\r\n")


# -- the proxy ends a stream at the token's expiry (in-process) ----------------------------------------

STATUS_EVENT = b'{"type":"status","txn_ts":1,"cursor":"c0","stats":{}}\r\n'
ADD_EVENT = b'{"type":"add","data":{},"txn_ts":2,"cursor":"c1","stats":{}}\r\n'


class FedResponse:
    """An upstream answer whose body chunks the test feeds; ``None`` ends it."""

    def __init__(self) -> None:
        self.status = 200
        self.headers = [(b"content-type", b"application/json;charset=utf-8")]
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.closed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        while (chunk := await self.queue.get()) is not None:
            yield chunk

    def at_eof(self) -> bool:
        return False

    async def aclose(self) -> None:
        self.closed = True


class FedUpstream:
    def __init__(self) -> None:
        self.response = FedResponse()
        self.calls: list[tuple[str, bool]] = []

    async def send(self, method: str, url: str, headers: list[tuple[bytes, bytes]], body: bytes, *,
                   timeout: float, streaming: bool) -> FedResponse:
        self.calls.append((url, streaming))
        return self.response

    async def aclose(self) -> None:
        pass


class ExpiringVerifier:
    def __init__(self, expires_at: float) -> None:
        self.expires_at = expires_at

    async def verify(self, text: str) -> VerifiedToken:
        return token(expires_at=self.expires_at)


class Exchange:
    """Runs one request through the proxy and records what the client got."""

    def __init__(self, *, lifetime: float, path: str = "/stream/1") -> None:
        self.upstream = FedUpstream()
        self.proxy = BackendProxy(adapter(), self.upstream, ExpiringVerifier(time.time() + lifetime),  # type: ignore[arg-type]
                                  cookie_names=("__session",), max_body_bytes=1024)
        self.path = path
        self.messages: list[MutableMapping[str, Any]] = []
        self.disconnect = asyncio.Event()
        self.send_gate: asyncio.Event | None = None  # set: the client write of the next body blocks on it
        self._sent = asyncio.Event()
        self._body_read = False

    async def _receive(self) -> MutableMapping[str, Any]:
        if not self._body_read:
            self._body_read = True
            return {"type": "http.request", "body": b'{"token":"t"}', "more_body": False}
        await self.disconnect.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: MutableMapping[str, Any]) -> None:
        gate = self.send_gate
        if gate is not None and message["type"] == "http.response.body" and message.get("body"):
            self.send_gate = None
            await gate.wait()
        self.messages.append(message)
        self._sent.set()

    def start(self) -> asyncio.Task[None]:
        scope = {"type": "http", "method": "POST", "path": "/fauna" + self.path, "query_string": b"",
                 "headers": [(b"authorization", f"Bearer {TOKEN}".encode())], "client": ("127.0.0.1", 5)}
        return asyncio.create_task(self.proxy.handle(scope, self._receive, self._send, self.path))

    @property
    def bodies(self) -> list[bytes]:
        return [m["body"] for m in self.messages if m["type"] == "http.response.body"]

    @property
    def completed(self) -> bool:
        return any(m["type"] == "http.response.body" and not m.get("more_body") for m in self.messages)

    async def until_sent(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.bodies) < count:
                self._sent.clear()
                await self._sent.wait()


async def test_expiry_between_events_ends_with_faunas_error_event() -> None:
    exchange = Exchange(lifetime=0.3)
    task = exchange.start()
    exchange.upstream.response.queue.put_nowait(STATUS_EVENT)
    await exchange.until_sent(1)
    exchange.upstream.response.queue.put_nowait(ADD_EVENT)
    async with asyncio.timeout(5):
        await task
    assert exchange.messages[0]["status"] == 200
    assert exchange.bodies == [STATUS_EVENT, ADD_EVENT, EXPIRED_EVENT, b""]
    assert exchange.completed and exchange.upstream.response.closed
    assert exchange.upstream.calls == [("http://fauna:8443/stream/1", True)]


async def test_expiry_in_the_middle_of_an_event_cuts_the_connection() -> None:
    exchange = Exchange(lifetime=0.3)
    task = exchange.start()
    exchange.upstream.response.queue.put_nowait(ADD_EVENT[:10])
    async with asyncio.timeout(5):
        await task
    assert exchange.bodies == [ADD_EVENT[:10]]
    assert not exchange.completed and exchange.upstream.response.closed


async def test_expiry_before_the_stream_opened_is_a_fauna_shaped_401() -> None:
    exchange = Exchange(lifetime=0.2)
    task = exchange.start()
    async with asyncio.timeout(5):
        await task
    start = exchange.messages[0]
    assert start["status"] == 401 and dict(start["headers"])[b"www-authenticate"]
    body = json.loads(exchange.bodies[0])
    assert body["error"]["code"] == "unauthorized" and body["error"]["reason"] == "token-expired"
    assert exchange.upstream.response.closed


async def test_expiry_never_interrupts_a_write_to_the_client() -> None:
    exchange = Exchange(lifetime=0.2)
    gate = exchange.send_gate = asyncio.Event()
    task = exchange.start()
    exchange.upstream.response.queue.put_nowait(STATUS_EVENT)  # its write blocks past the expiry
    await asyncio.sleep(0.4)
    assert not task.done()
    gate.set()
    async with asyncio.timeout(5):
        await task
    assert exchange.bodies == [STATUS_EVENT, EXPIRED_EVENT, b""]


async def test_a_stream_that_ends_first_cancels_the_timer() -> None:
    exchange = Exchange(lifetime=0.2)
    task = exchange.start()
    exchange.upstream.response.queue.put_nowait(STATUS_EVENT)
    exchange.upstream.response.queue.put_nowait(None)
    async with asyncio.timeout(5):
        await task
    await asyncio.sleep(0.3)  # past the expiry: nothing more happens
    assert exchange.bodies == [STATUS_EVENT, b""]


async def test_client_disconnect_closes_the_upstream_stream() -> None:
    exchange = Exchange(lifetime=60)
    task = exchange.start()
    exchange.upstream.response.queue.put_nowait(STATUS_EVENT)
    await exchange.until_sent(1)
    exchange.disconnect.set()
    async with asyncio.timeout(5):
        await task
    assert exchange.upstream.response.closed and not exchange.completed


async def test_routes_without_the_flag_never_end_at_expiry() -> None:
    exchange = Exchange(lifetime=0.1, path="/query/1")
    task = exchange.start()
    await asyncio.sleep(0.3)  # the token expired while Fauna was still answering
    exchange.upstream.response.queue.put_nowait(b'{"data":1}')
    exchange.upstream.response.queue.put_nowait(None)
    async with asyncio.timeout(5):
        await task
    assert exchange.messages[0]["status"] == 200 and exchange.bodies == [b'{"data":1}', b""]
    assert exchange.upstream.calls == [("http://fauna:8443/query/1", False)]
