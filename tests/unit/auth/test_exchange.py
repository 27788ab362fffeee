"""The ``exchange`` client: Clerk's Backend API mocked with respx, time moved by hand.

What is proved here: the request Clerk gets (path, percent-encoding, ``Bearer <secret>``, no
retries), the cache (lifetime, safety margin, clock skew, LRU bound, distinct keys), single
flight, and the error each of Clerk's answers becomes — with neither the secret nor a token in
any message, header or log line, even when Clerk's own error body contains them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx

from clerk_gateway.auth.exchange import ClerkRateLimitedError, ClerkTokenExchange, ClerkUnavailableError
from clerk_gateway.errors import AuthenticationError, GatewayError, UpstreamUnavailableError
from clerk_gateway.observability.metrics import REGISTRY
from tests.support.clock import ManualClock
from tests.support.tokens import SigningKey

API = "https://api.clerk.example.test"
SECRET = "sk_test_" + "unitS3cret" * 4
NOW = 1_700_000_000.0
KEY = SigningKey.rsa("ins_unit")
NAMESPACE = "https://hasura.io/jwt/claims"


def template_token(*, iat: float | None = NOW, lifetime: float | None = 60, sub: str = "user_1",
                   **extra: Any) -> str:
    claims: dict[str, Any] = {"iss": "https://clerk.example.test", "sub": sub,
                              NAMESPACE: {"x-hasura-default-role": "user", "x-hasura-allowed-roles": ["user"],
                                          "x-hasura-user-id": sub}}
    if iat is not None:
        claims["iat"] = int(iat)
        claims["nbf"] = int(iat) - 5
    if lifetime is not None:
        claims["exp"] = int((iat if iat is not None else NOW) + lifetime)
    claims.update(extra)
    return KEY.sign(claims)


def token_url(session_id: str = "sess_1", template: str = "hasura") -> str:
    return f"{API}/v1/sessions/{session_id}/tokens/{template}"


def clerk_errors(code: str, message: str = "error", long_message: str = "an error") -> dict[str, Any]:
    return {"errors": [{"message": message, "long_message": long_message, "code": code}]}


def exchanges(outcome: str) -> float:
    return REGISTRY.get_sample_value("gateway_token_exchanges_total", {"outcome": outcome}) or 0.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def clerk() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


@pytest.fixture
async def exchange(http: httpx.AsyncClient, clock: ManualClock) -> AsyncIterator[ClerkTokenExchange]:
    client = ClerkTokenExchange(http, SECRET, api_url=API, clock=clock)
    yield client
    await client.aclose()


def answer(token: str) -> httpx.Response:
    return httpx.Response(200, json={"object": "token", "jwt": token})


def assert_clean(error: BaseException, *secrets: str) -> None:
    """Neither the secret key nor any of ``secrets`` (tokens) anywhere in what the client or a log sees."""
    texts = [str(error), repr(error)]
    if isinstance(error, GatewayError):
        texts += [error.message, error.reason, *error.headers.values()]
    for text in texts:
        for secret in (SECRET, *secrets):
            assert secret not in text, text


# -- the request ----------------------------------------------------------------------------------


async def test_asks_clerk_with_the_secret_key_as_bearer(exchange: ClerkTokenExchange,
                                                        clerk: respx.MockRouter) -> None:
    token = template_token()
    route = clerk.post(token_url()).mock(return_value=answer(token))
    assert await exchange.token_for("sess_1", "hasura") == token
    assert route.call_count == 1
    request = route.calls[0].request
    assert request.method == "POST"
    assert request.url.raw_path == b"/v1/sessions/sess_1/tokens/hasura"
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    assert request.headers["accept"] == "application/json"


async def test_the_api_url_may_end_with_a_slash(http: httpx.AsyncClient, clock: ManualClock,
                                                clerk: respx.MockRouter) -> None:
    route = clerk.post(token_url()).mock(return_value=answer(template_token()))
    client = ClerkTokenExchange(http, SECRET, api_url=API + "/", clock=clock)
    await client.token_for("sess_1", "hasura")
    assert route.call_count == 1
    await client.aclose()


async def test_path_segments_are_percent_encoded(exchange: ClerkTokenExchange, clerk: respx.MockRouter) -> None:
    route = clerk.post(url__regex=r".*").mock(return_value=answer(template_token()))
    await exchange.token_for("sess a?b#c%", "my template")
    assert route.calls[0].request.url.raw_path == b"/v1/sessions/sess%20a%3Fb%23c%25/tokens/my%20template"


@pytest.mark.parametrize("session_id", ["", "a/b", "../users", ".", "..", "sess\n1", "s" * 257, "a\\b"])
async def test_a_session_id_that_is_no_path_segment_is_refused_without_a_call(
        exchange: ClerkTokenExchange, clerk: respx.MockRouter, session_id: str) -> None:
    route = clerk.route().mock(return_value=answer(template_token()))
    with pytest.raises(AuthenticationError) as caught:
        await exchange.token_for(session_id, "hasura")
    assert caught.value.status == 401 and caught.value.code == "invalid-jwt"
    assert caught.value.reason == "session-id-invalid"
    assert route.call_count == 0


@pytest.mark.parametrize("template", ["", "a/b", "..", "x\r\ny"])
async def test_a_template_that_is_no_path_segment_is_refused_without_a_call(
        exchange: ClerkTokenExchange, clerk: respx.MockRouter, template: str) -> None:
    route = clerk.route().mock(return_value=answer(template_token()))
    with pytest.raises(AuthenticationError) as caught:
        await exchange.token_for("sess_1", template)
    assert caught.value.status == 401 and caught.value.reason == "template-invalid"
    assert route.call_count == 0


async def test_clerk_failures_are_not_retried(exchange: ClerkTokenExchange, clerk: respx.MockRouter) -> None:
    """The SDK's default would retry 5xx with backoff for up to an hour; the gateway answers at once."""
    route = clerk.post(token_url()).mock(return_value=httpx.Response(503, text="unavailable"))
    with pytest.raises(ClerkUnavailableError):
        await exchange.token_for("sess_1", "hasura")
    assert route.call_count == 1


def test_the_secret_key_is_required(clock: ManualClock) -> None:
    with pytest.raises(ValueError, match="CLERK_SECRET_KEY"):
        ClerkTokenExchange(httpx.AsyncClient(), "", api_url=API, clock=clock)


async def test_repr_never_shows_the_secret(exchange: ClerkTokenExchange) -> None:
    assert SECRET not in repr(exchange)


# -- the cache ------------------------------------------------------------------------------------


async def test_a_token_is_served_from_the_cache_within_its_lifetime(
        exchange: ClerkTokenExchange, clerk: respx.MockRouter, clock: ManualClock) -> None:
    token = template_token(lifetime=60)
    route = clerk.post(token_url()).mock(return_value=answer(token))
    hits = exchanges("hit")
    assert await exchange.token_for("sess_1", "hasura") == token
    clock.advance(49)  # 60 s token, 10 s margin: kept until 50 s
    assert await exchange.token_for("sess_1", "hasura") == token
    assert route.call_count == 1
    assert exchanges("hit") == hits + 1


async def test_a_token_near_its_expiry_is_fetched_again(
        exchange: ClerkTokenExchange, clerk: respx.MockRouter, clock: ManualClock) -> None:
    first, second = template_token(lifetime=60), template_token(iat=NOW + 50, lifetime=60)
    route = clerk.post(token_url()).mock(side_effect=[answer(first), answer(second)])
    assert await exchange.token_for("sess_1", "hasura") == first
    clock.advance(50)
    assert await exchange.token_for("sess_1", "hasura") == second
    assert route.call_count == 2


async def test_a_short_token_keeps_four_fifths_of_its_life(
        exchange: ClerkTokenExchange, clerk: respx.MockRouter, clock: ManualClock) -> None:
    """30 s token: 20 % (6 s) is smaller than 10 s, so it is kept 24 s."""
    route = clerk.post(token_url()).mock(side_effect=lambda request: answer(template_token(
        iat=clock.now, lifetime=30)))
    await exchange.token_for("sess_1", "hasura")
    clock.advance(23.9)
    await exchange.token_for("sess_1", "hasura")
    assert route.call_count == 1
    clock.advance(0.2)
    await exchange.token_for("sess_1", "hasura")
    assert route.call_count == 2


async def test_a_token_without_exp_is_not_cached(exchange: ClerkTokenExchange, clerk: respx.MockRouter) -> None:
    route = clerk.post(token_url()).mock(return_value=answer(template_token(lifetime=None)))
    await exchange.token_for("sess_1", "hasura")
    await exchange.token_for("sess_1", "hasura")
    assert route.call_count == 2
    assert exchange.size == 0


@pytest.mark.parametrize("exp", ["soon", True, None, float("inf")])
async def test_a_token_with_an_unusable_exp_is_not_cached(exchange: ClerkTokenExchange, clerk: respx.MockRouter,
                                                          exp: object) -> None:
    token = KEY.sign({"sub": "user_1", "iat": int(NOW), "exp": exp}) if exp != float("inf") else \
        KEY.sign_raw('{"alg":"RS256","kid":"ins_unit"}', '{"sub":"u","exp":1e999}')
    clerk.post(token_url()).mock(return_value=answer(token))
    assert await exchange.token_for("sess_1", "hasura") == token
    assert exchange.size == 0


async def test_a_gateway_clock_behind_clerks_does_not_stretch_the_lifetime(
        exchange: ClerkTokenExchange, clerk: respx.MockRouter, clock: ManualClock) -> None:
    """Clerk's clock 100 s ahead: ``exp - now`` would be 160 s; the token is kept 50 s all the same."""
    route = clerk.post(token_url()).mock(return_value=answer(template_token(iat=NOW + 100, lifetime=60)))
    await exchange.token_for("sess_1", "hasura")
    clock.advance(49)
    await exchange.token_for("sess_1", "hasura")
    assert route.call_count == 1
    clock.advance(1.5)
    await exchange.token_for("sess_1", "hasura")
    assert route.call_count == 2


async def test_a_gateway_clock_ahead_of_clerks_shortens_the_lifetime(
        exchange: ClerkTokenExchange, clerk: respx.MockRouter, clock: ManualClock) -> None:
    """Our clock 30 s ahead: only 30 s of the token are left by our clock, minus the 10 s margin."""
    route = clerk.post(token_url()).mock(return_value=answer(template_token(iat=NOW - 30, lifetime=60)))
    await exchange.token_for("sess_1", "hasura")
    clock.advance(20.5)
    await exchange.token_for("sess_1", "hasura")
    assert route.call_count == 2


async def test_an_already_expired_token_is_returned_but_not_cached(
        exchange: ClerkTokenExchange, clerk: respx.MockRouter) -> None:
    token = template_token(iat=NOW - 120, lifetime=60)
    clerk.post(token_url()).mock(return_value=answer(token))
    assert await exchange.token_for("sess_1", "hasura") == token
    assert exchange.size == 0


async def test_a_long_lived_template_is_cached_at_most_max_ttl(
        http: httpx.AsyncClient, clock: ManualClock, clerk: respx.MockRouter) -> None:
    client = ClerkTokenExchange(http, SECRET, api_url=API, clock=clock, max_ttl_seconds=600)
    route = clerk.post(token_url()).mock(return_value=answer(template_token(lifetime=365 * 86400)))
    await client.token_for("sess_1", "hasura")
    clock.advance(599)
    await client.token_for("sess_1", "hasura")
    assert route.call_count == 1
    clock.advance(2)
    await client.token_for("sess_1", "hasura")
    assert route.call_count == 2
    await client.aclose()


async def test_distinct_sessions_and_templates_are_cached_apart(
        exchange: ClerkTokenExchange, clerk: respx.MockRouter) -> None:
    tokens = {(sid, name): template_token(sub=f"user_{sid}_{name}") for sid in ("sess_1", "sess_2")
              for name in ("hasura", "fauna")}
    routes = {key: clerk.post(token_url(*key)).mock(return_value=answer(token)) for key, token in tokens.items()}
    for _ in range(2):
        for (sid, name), token in tokens.items():
            assert await exchange.token_for(sid, name) == token
    assert all(route.call_count == 1 for route in routes.values())
    assert exchange.size == 4


async def test_the_cache_is_bounded_least_recently_used_first(
        http: httpx.AsyncClient, clock: ManualClock, clerk: respx.MockRouter) -> None:
    client = ClerkTokenExchange(http, SECRET, api_url=API, clock=clock, max_entries=2)
    routes = {sid: clerk.post(token_url(sid)).mock(return_value=answer(template_token(sub=sid)))
              for sid in ("sess_a", "sess_b", "sess_c")}
    await client.token_for("sess_a", "hasura")
    await client.token_for("sess_b", "hasura")
    await client.token_for("sess_a", "hasura")  # a is now the most recently used
    await client.token_for("sess_c", "hasura")  # evicts b
    assert client.size == 2
    await client.token_for("sess_a", "hasura")
    await client.token_for("sess_c", "hasura")
    assert routes["sess_a"].call_count == 1 and routes["sess_c"].call_count == 1
    await client.token_for("sess_b", "hasura")
    assert routes["sess_b"].call_count == 2
    await client.aclose()


async def test_forget_session_drops_its_tokens(exchange: ClerkTokenExchange, clerk: respx.MockRouter) -> None:
    route = clerk.post(token_url()).mock(return_value=answer(template_token()))
    other = clerk.post(token_url("sess_2")).mock(return_value=answer(template_token()))
    await exchange.token_for("sess_1", "hasura")
    await exchange.token_for("sess_2", "hasura")
    exchange.forget_session("sess_1")
    await exchange.token_for("sess_1", "hasura")
    await exchange.token_for("sess_2", "hasura")
    assert route.call_count == 2 and other.call_count == 1


# -- single flight --------------------------------------------------------------------------------


async def test_concurrent_misses_share_one_call(exchange: ClerkTokenExchange, clerk: respx.MockRouter) -> None:
    token = template_token()
    release = asyncio.Event()

    async def slow_answer(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return answer(token)

    route = clerk.post(token_url()).mock(side_effect=slow_answer)
    joined = exchanges("joined")
    waiters = [asyncio.create_task(exchange.token_for("sess_1", "hasura")) for _ in range(25)]
    for _ in range(50):
        await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiters) == [token] * 25
    assert route.call_count == 1
    assert exchanges("joined") == joined + 24


async def test_concurrent_misses_share_one_failure(exchange: ClerkTokenExchange, clerk: respx.MockRouter) -> None:
    release = asyncio.Event()

    async def slow_failure(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return httpx.Response(500, text="boom")

    route = clerk.post(token_url()).mock(side_effect=slow_failure)
    waiters = [asyncio.create_task(exchange.token_for("sess_1", "hasura")) for _ in range(5)]
    for _ in range(20):
        await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(result, ClerkUnavailableError) for result in results)
    assert route.call_count == 1


async def test_a_caller_that_goes_away_does_not_cancel_the_shared_call(
        exchange: ClerkTokenExchange, clerk: respx.MockRouter) -> None:
    token = template_token()
    release = asyncio.Event()

    async def slow_answer(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return answer(token)

    route = clerk.post(token_url()).mock(side_effect=slow_answer)
    leaver = asyncio.create_task(exchange.token_for("sess_1", "hasura"))
    stayer = asyncio.create_task(exchange.token_for("sess_1", "hasura"))
    for _ in range(20):
        await asyncio.sleep(0)
    leaver.cancel()
    release.set()
    assert await stayer == token
    with pytest.raises(asyncio.CancelledError):
        await leaver
    assert await exchange.token_for("sess_1", "hasura") == token  # cached by the call that went on
    assert route.call_count == 1


async def test_aclose_cancels_the_calls_in_flight(exchange: ClerkTokenExchange, clerk: respx.MockRouter) -> None:
    async def never(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    clerk.post(token_url()).mock(side_effect=never)
    waiter = asyncio.create_task(exchange.token_for("sess_1", "hasura"))
    for _ in range(20):
        await asyncio.sleep(0)
    await exchange.aclose()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await exchange.aclose()  # twice is fine


# -- what Clerk's refusals become -----------------------------------------------------------------


async def test_an_unknown_session_is_a_401(exchange: ClerkTokenExchange, clerk: respx.MockRouter) -> None:
    clerk.post(token_url()).mock(return_value=httpx.Response(404, json=clerk_errors(
        "resource_not_found", "not found", "No session was found with id sess_1")))
    with pytest.raises(AuthenticationError) as caught:
        await exchange.token_for("sess_1", "hasura")
    error = caught.value
    assert (error.status, error.code, error.reason) == (401, "invalid-jwt", "session-not-found")
    assert "sess_1" not in error.message


@pytest.mark.parametrize(("status", "code"), [(401, "authentication_invalid"), (400, "session_not_active"),
                                              (422, "form_param_value_invalid"), (401, "authentication_invalid_code")])
async def test_an_ended_session_is_a_401(exchange: ClerkTokenExchange, clerk: respx.MockRouter,
                                         status: int, code: str) -> None:
    clerk.post(token_url()).mock(return_value=httpx.Response(status, json=clerk_errors(
        code, "Invalid authentication", "Unable to authenticate the request, you need to supply an active session")))
    with pytest.raises(AuthenticationError) as caught:
        await exchange.token_for("sess_1", "hasura")
    assert (caught.value.status, caught.value.code, caught.value.reason) == (401, "invalid-jwt", "session-ended")


async def test_an_ended_session_is_remembered(exchange: ClerkTokenExchange, clerk: respx.MockRouter,
                                              clock: ManualClock) -> None:
    """An ended session never comes back; a client retrying in a loop must not spend the rate limit."""
    route = clerk.post(url__regex=r".*/sessions/sess_1/.*").mock(
        return_value=httpx.Response(401, json=clerk_errors("authentication_invalid")))
    for template in ("hasura", "hasura", "fauna"):
        with pytest.raises(AuthenticationError, match="no longer active"):
            await exchange.token_for("sess_1", template)
    assert route.call_count == 1
    clock.advance(9.9)
    with pytest.raises(AuthenticationError):
        await exchange.token_for("sess_1", "hasura")
    assert route.call_count == 1
    clock.advance(0.2)
    with pytest.raises(AuthenticationError):
        await exchange.token_for("sess_1", "hasura")
    assert route.call_count == 2


async def test_an_unknown_session_is_remembered_for_a_second_only(
        exchange: ClerkTokenExchange, clerk: respx.MockRouter, clock: ManualClock) -> None:
    """Right after sign-in a lagging replica may 404 a real session: a burst is collapsed, no more."""
    route = clerk.post(token_url()).mock(side_effect=[
        httpx.Response(404, json=clerk_errors("resource_not_found")),
        answer(template_token(iat=NOW + 1.5))])
    for _ in range(3):
        with pytest.raises(AuthenticationError, match="not known"):
            await exchange.token_for("sess_1", "hasura")
    assert route.call_count == 1
    clock.advance(1.5)
    assert await exchange.token_for("sess_1", "hasura")
    assert route.call_count == 2


async def test_a_missing_template_is_a_502_not_the_users_fault(exchange: ClerkTokenExchange,
                                                               clerk: respx.MockRouter,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    clerk.post(token_url(template="hasuar")).mock(return_value=httpx.Response(404, json=clerk_errors(
        "resource_not_found", "not found", "No JWT template exists with name: hasuar")))
    with caplog.at_level(logging.WARNING, logger="clerk_gateway.exchange"), \
            pytest.raises(ClerkUnavailableError) as caught:
        await exchange.token_for("sess_1", "hasuar")
    assert (caught.value.status, caught.value.reason) == (502, "template-not-found")
    assert "hasuar" in caplog.text  # the operator learns which template to create


@pytest.mark.parametrize("code", ["clerk_key_invalid", "authorization_header_format_invalid"])
async def test_a_refused_secret_key_is_a_502_not_a_401(exchange: ClerkTokenExchange, clerk: respx.MockRouter,
                                                       caplog: pytest.LogCaptureFixture, code: str) -> None:
    """A wrong CLERK_SECRET_KEY is the gateway's fault: a 401 would make every client refresh in a loop."""
    clerk.post(token_url()).mock(return_value=httpx.Response(401, json=clerk_errors(code)))
    with caplog.at_level(logging.WARNING, logger="clerk_gateway.exchange"), \
            pytest.raises(ClerkUnavailableError) as caught:
        await exchange.token_for("sess_1", "hasura")
    assert caught.value.status == 502 and caught.value.code == "bad-gateway"
    assert "CLERK_SECRET_KEY" in caplog.text and SECRET not in caplog.text


@pytest.mark.parametrize("status", [500, 502, 503, 504, 403, 405])
async def test_clerk_failing_is_a_502(exchange: ClerkTokenExchange, clerk: respx.MockRouter, status: int) -> None:
    route = clerk.post(token_url()).mock(return_value=httpx.Response(status, text="<html>oops</html>"))
    with pytest.raises(ClerkUnavailableError) as caught:
        await exchange.token_for("sess_1", "hasura")
    error = caught.value
    assert isinstance(error, UpstreamUnavailableError)
    assert (error.status, error.code, error.reason) == (502, "bad-gateway", "clerk-unavailable")
    await asyncio.sleep(0)
    with pytest.raises(ClerkUnavailableError):  # failures are not cached
        await exchange.token_for("sess_1", "hasura")
    assert route.call_count == 2


async def test_a_404_without_clerks_error_shape_is_a_502(exchange: ClerkTokenExchange,
                                                         clerk: respx.MockRouter) -> None:
    """A 404 page from something that is not Clerk (a wrong CLERK_API_URL) says nothing about the session."""
    clerk.post(token_url()).mock(return_value=httpx.Response(404, text="<html>Not Found</html>",
                                                             headers={"content-type": "text/html"}))
    with pytest.raises(ClerkUnavailableError):
        await exchange.token_for("sess_1", "hasura")


@pytest.mark.parametrize("error", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"),
                                   httpx.ConnectTimeout("slow"), httpx.RemoteProtocolError("reset")])
async def test_clerk_unreachable_is_a_502(exchange: ClerkTokenExchange, clerk: respx.MockRouter,
                                          error: Exception) -> None:
    clerk.post(token_url()).mock(side_effect=error)
    with pytest.raises(ClerkUnavailableError) as caught:
        await exchange.token_for("sess_1", "hasura")
    assert caught.value.status == 502


async def test_clerk_too_slow_is_a_502(http: httpx.AsyncClient, clock: ManualClock, clerk: respx.MockRouter) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return answer(template_token())

    clerk.post(token_url()).mock(side_effect=slow)
    client = ClerkTokenExchange(http, SECRET, api_url=API, clock=clock, timeout_seconds=0.05)
    with pytest.raises(ClerkUnavailableError, match="in time"):
        await client.token_for("sess_1", "hasura")
    await client.aclose()


@pytest.mark.parametrize("response", [
    httpx.Response(200, text="<html>not json", headers={"content-type": "application/json"}),
    httpx.Response(200, json={"object": "token"}),
    httpx.Response(200, json={"object": "token", "jwt": ""}),
    httpx.Response(200, json={"object": "token", "jwt": "not-a-jwt"}),
    httpx.Response(200, json={"object": "token", "jwt": "a.b.c\r\nx-hasura-role: admin"}),
    httpx.Response(200, json={"object": "token", "jwt": "a." + "b" * 20000 + ".c"}),
    httpx.Response(200, text="a.b.c", headers={"content-type": "text/plain"}),
], ids=["not-json", "no-jwt", "empty-jwt", "not-a-jws", "header-injection", "huge", "text"])
async def test_an_unusable_answer_is_a_502(exchange: ClerkTokenExchange, clerk: respx.MockRouter,
                                           response: httpx.Response) -> None:
    clerk.post(token_url()).mock(return_value=response)
    with pytest.raises(ClerkUnavailableError) as caught:
        await exchange.token_for("sess_1", "hasura")
    assert caught.value.status == 502
    assert exchange.size == 0


@pytest.mark.parametrize(("retry_after", "expected"), [("3", "3"), (None, "1"), ("3600", "60"),
                                                       ("Wed, 21 Oct 2015 07:28:00 GMT", "1")])
async def test_clerks_rate_limit_is_a_503_with_retry_after(exchange: ClerkTokenExchange, clerk: respx.MockRouter,
                                                           retry_after: str | None, expected: str) -> None:
    headers = {"retry-after": retry_after} if retry_after else {}
    clerk.post(token_url()).mock(return_value=httpx.Response(429, json=clerk_errors("too_many_requests"),
                                                             headers=headers))
    with pytest.raises(ClerkRateLimitedError) as caught:
        await exchange.token_for("sess_1", "hasura")
    error = caught.value
    assert (error.status, error.code, error.reason) == (503, "unavailable", "clerk-rate-limited")
    assert error.headers == {"retry-after": expected}


# -- secrets --------------------------------------------------------------------------------------


LEAKY_BODY = f'{{"errors":[{{"message":"{SECRET}","long_message":"Bearer {SECRET}","code":"x"}}],"jwt":"%s"}}'


@pytest.mark.parametrize("status", [400, 401, 404, 422, 429, 500, 200])
async def test_neither_the_secret_nor_a_token_reaches_a_message_or_a_log(
        exchange: ClerkTokenExchange, clerk: respx.MockRouter, caplog: pytest.LogCaptureFixture,
        status: int) -> None:
    """Even a Clerk answer that quotes the secret and a token back (the SDK's exception texts embed
    response bodies) leaves no trace in the error or the logs."""
    token = template_token()
    body = LEAKY_BODY % token if status != 200 else f'{{"object":"token","jwt":{{"t":"{token}","k":"{SECRET}"}}}}'
    clerk.post(token_url()).mock(return_value=httpx.Response(status, text=body,
                                                             headers={"content-type": "application/json"}))
    with caplog.at_level(logging.DEBUG), pytest.raises(GatewayError) as caught:
        await exchange.token_for("sess_1", "hasura")
    assert_clean(caught.value, token)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert SECRET not in caplog.text and token not in caplog.text


async def test_a_successful_exchange_logs_nothing_secret(exchange: ClerkTokenExchange, clerk: respx.MockRouter,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    token = template_token()
    clerk.post(token_url()).mock(return_value=answer(token))
    with caplog.at_level(logging.DEBUG):
        await exchange.token_for("sess_1", "hasura")
        await exchange.token_for("sess_1", "hasura")
    assert SECRET not in caplog.text and token not in caplog.text


async def test_outcomes_are_counted(exchange: ClerkTokenExchange, clerk: respx.MockRouter) -> None:
    before = {outcome: exchanges(outcome) for outcome in ("hit", "fetched", "rejected", "error")}
    clerk.post(token_url()).mock(return_value=answer(template_token()))
    clerk.post(token_url("sess_gone")).mock(return_value=httpx.Response(404, json=clerk_errors("resource_not_found")))
    clerk.post(token_url("sess_err")).mock(return_value=httpx.Response(500))
    await exchange.token_for("sess_1", "hasura")
    await exchange.token_for("sess_1", "hasura")
    for sid in ("sess_gone", "sess_err"):
        with pytest.raises(GatewayError):
            await exchange.token_for(sid, "hasura")
    after = {outcome: exchanges(outcome) - before[outcome] for outcome in before}
    assert after == {"hit": 1, "fetched": 1, "rejected": 1, "error": 1}
