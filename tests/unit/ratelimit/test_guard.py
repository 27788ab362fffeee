"""The rate-limit guard against a stub request context, with memory stores and a fake clock."""

from __future__ import annotations

import orjson
import pytest

from clerk_gateway.adapters.base import Route
from clerk_gateway.auth.model import TokenKind, VerifiedToken
from clerk_gateway.errors import AuthenticationError, ForbiddenError, MissingTokenError, UpstreamUnavailableError
from clerk_gateway.observability.metrics import REGISTRY
from clerk_gateway.proxy.guards import RequestContext
from clerk_gateway.proxy.responses import render_error
from clerk_gateway.ratelimit import MemoryBucketStore, Rate, RateLimitedError, RateLimitGuard, client_address
from tests.support.clock import ManualClock

SECRET_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyXzEifQ.c2lnbmF0dXJl"


def context(ip: str | None = "203.0.113.7", *, subject: str | None = None,
            headers: list[tuple[bytes, bytes]] | None = None) -> RequestContext:
    ctx = RequestContext("hasura", "POST", Route("http://up/v1/graphql"), headers or [], ip)
    if subject is not None:
        ctx.token = VerifiedToken(token=SECRET_TOKEN, header={}, claims={"sub": subject}, kind=TokenKind.SESSION,
                                  subject=subject, expires_at=2e9, session_id="sess_1")
    return ctx


def guard(clock: ManualClock, *, user_burst: int = 3, failure_burst: int = 2,
          header: str | None = None) -> RateLimitGuard:
    return RateLimitGuard(MemoryBucketStore(Rate(1, user_burst), clock=clock),
                          MemoryBucketStore(Rate(0.5, failure_burst), clock=clock), client_ip_header=header)


def limited(kind: str) -> float:
    return REGISTRY.get_sample_value("gateway_rate_limited_total", {"kind": kind}) or 0.0


BAD = AuthenticationError("invalid-signature", "the token's signature is not valid")


async def test_user_limit_refuses_with_429_and_retry_after() -> None:
    clock = ManualClock(0.0)
    g = guard(clock)
    before = limited("user")
    for _ in range(3):
        await g.after_auth(context(subject="user_1"))
    with pytest.raises(RateLimitedError) as caught:
        await g.after_auth(context(subject="user_1"))
    error = caught.value
    assert error.status == 429 and error.code == "rate-limited" and error.reason == "rate-limited-user"
    assert error.headers == {"retry-after": "1"}
    assert limited("user") == before + 1
    await g.after_auth(context(subject="user_2"))  # another user is not affected
    clock.now += 1.0
    await g.after_auth(context(subject="user_1"))


async def test_user_limit_ignores_the_address() -> None:
    g = guard(ManualClock(0.0), user_burst=1)
    await g.after_auth(context("198.51.100.1", subject="user_1"))
    with pytest.raises(RateLimitedError):
        await g.after_auth(context("198.51.100.2", subject="user_1"))


def guard_trusting_peer(clock: ManualClock, **kwargs: int) -> RateLimitGuard:
    g = guard(clock, **kwargs)
    g.trust_peer_address = True
    return g


async def test_an_address_that_keeps_failing_gets_429_for_its_failures() -> None:
    clock = ManualClock(0.0)
    g = guard_trusting_peer(clock, failure_burst=2)
    before = limited("auth-failures")
    assert await g.on_refused(context(), BAD) is None
    assert await g.on_refused(context(), BAD) is None
    error = await g.on_refused(context(), BAD)
    assert isinstance(error, RateLimitedError)
    assert error.reason == "rate-limited-auth-failures"
    assert error.headers["retry-after"] == "2"  # 0.5 token per second
    assert limited("auth-failures") == before + 1
    assert await g.on_refused(context("203.0.113.8"), BAD) is None  # another address is not affected
    clock.now += 2.0
    assert await g.on_refused(context(), BAD) is None


async def test_the_failure_limit_never_refuses_before_the_token_is_verified() -> None:
    """An address over its failure budget still has good tokens served: nothing is refused
    before verification, and a verified request never consults the failure budget."""
    g = guard_trusting_peer(ManualClock(0.0), failure_burst=1)
    await g.on_refused(context(), BAD)
    assert isinstance(await g.on_refused(context(), BAD), RateLimitedError)
    for n in range(5):
        await g.before_auth(context())
        await g.after_auth(context(subject=f"user_{n}"))


async def test_refusal_by_the_limit_itself_is_not_another_failure() -> None:
    clock = ManualClock(0.0)
    g = guard_trusting_peer(clock, failure_burst=1)
    await g.on_refused(context(), BAD)
    for _ in range(5):
        error = await g.on_refused(context(), BAD)
        assert isinstance(error, RateLimitedError)
        assert await g.on_refused(context(), error) is None  # a 429 is not a failed authentication
    clock.now += 2.0
    assert await g.on_refused(context(), BAD) is None  # recovered at the normal rate, not pushed back


@pytest.mark.parametrize("error", [MissingTokenError(), ForbiddenError("role-not-allowed", "no"),
                                   UpstreamUnavailableError("hasura")])
async def test_only_failed_tokens_count(error: Exception) -> None:
    g = guard_trusting_peer(ManualClock(0.0), failure_burst=1)
    for _ in range(5):
        assert await g.on_refused(context(), error) is None  # type: ignore[arg-type]
    assert await g.on_refused(context(), BAD) is None


async def test_no_address_no_failure_limit() -> None:
    g = guard_trusting_peer(ManualClock(0.0), failure_burst=1)
    for _ in range(3):
        assert await g.on_refused(context(None), BAD) is None


async def test_an_untrusted_peer_address_is_never_a_key() -> None:
    """Without a client-IP header or the explicit opt-in, the peer may be a load balancer that every
    client shares: the guard keeps no budget for it at all."""
    g = guard(ManualClock(0.0), failure_burst=1)
    for _ in range(5):
        assert await g.on_refused(context("10.0.0.2"), BAD) is None
    # With the header configured, a request lacking it is not charged to the proxy's address either.
    g = guard(ManualClock(0.0), failure_burst=1, header="x-forwarded-for")
    for _ in range(5):
        assert await g.on_refused(context("10.0.0.2"), BAD) is None


async def test_disabled_limits_do_nothing() -> None:
    g = RateLimitGuard(None, None)
    for _ in range(10):
        await g.before_auth(context(subject="user_1"))
        await g.after_auth(context(subject="user_1"))
        await g.on_refused(context(), BAD)
    await g.aclose()


async def test_after_auth_without_token_is_a_no_op() -> None:
    g = guard(ManualClock(0.0), user_burst=1)
    for _ in range(3):
        await g.after_auth(context())


async def test_keys_never_hold_the_token() -> None:
    users = MemoryBucketStore(Rate(1, 5))
    failures = MemoryBucketStore(Rate(1, 5))
    g = RateLimitGuard(users, failures, trust_peer_address=True)
    ctx = context(subject="user_1", headers=[(b"authorization", f"Bearer {SECRET_TOKEN}".encode())])
    await g.after_auth(ctx)
    await g.on_refused(ctx, BAD)
    keys = list(users._buckets) + list(failures._buckets)
    assert keys == ["user_1", "203.0.113.7"]
    assert all(SECRET_TOKEN not in key for key in keys)


def test_ipv6_addresses_share_their_64() -> None:
    assert client_address(context("2001:db8:1:2:aaaa::1")) == "2001:db8:1:2::/64"
    assert client_address(context("2001:db8:1:2:bbbb::9")) == "2001:db8:1:2::/64"
    assert client_address(context("2001:db8:1:3::1")) == "2001:db8:1:3::/64"
    assert client_address(context("::ffff:192.0.2.5")) == "192.0.2.5"
    assert client_address(context("192.0.2.5")) == "192.0.2.5"
    assert client_address(context(None)) is None


def test_client_ip_header_uses_the_entry_the_proxy_appended() -> None:
    header = b"x-forwarded-for"
    spoofed = context("10.0.0.2", headers=[(header, b"1.2.3.4, 198.51.100.9")])
    assert client_address(spoofed, header) == "198.51.100.9"
    # A client's own header line comes first; the proxy's appended line is the one that counts.
    two_lines = context("10.0.0.2", headers=[(header, b"1.2.3.4"), (header, b"198.51.100.9")])
    assert client_address(two_lines, header) == "198.51.100.9"
    assert client_address(context("10.0.0.2", headers=[(header, b"not-an-ip")]), header) == "10.0.0.2"
    assert client_address(context("10.0.0.2", headers=[(header, b"not-an-ip")]), header, trust_peer=False) is None
    assert client_address(context("10.0.0.2"), header) == "10.0.0.2"
    assert client_address(context("10.0.0.2"), header, trust_peer=False) is None
    assert client_address(context("10.0.0.2", headers=[(header, b" 2001:db8::1 ")]), header) == "2001:db8::/64"


async def test_guard_reads_the_configured_header() -> None:
    g = guard(ManualClock(0.0), failure_burst=1, header="X-Real-IP")
    behind_proxy = [(b"x-real-ip", b"198.51.100.20")]
    assert await g.on_refused(context("10.0.0.2", headers=behind_proxy), BAD) is None
    assert isinstance(await g.on_refused(context("10.0.0.2", headers=behind_proxy), BAD), RateLimitedError)
    assert await g.on_refused(context("10.0.0.2", headers=[(b"x-real-ip", b"198.51.100.21")]), BAD) is None


def test_429_renders_in_both_contract_shapes() -> None:
    error = RateLimitedError("rate-limited-user", "too many requests for this user", 2.2)
    status, headers, body = render_error(error, graphql=True)
    assert status == 429
    assert (b"retry-after", b"3") in headers
    assert orjson.loads(body) == {"errors": [{"message": "too many requests for this user; retry after 3 s",
                                              "extensions": {"code": "rate-limited", "reason": "rate-limited-user"}}]}
    status, headers, body = render_error(error, graphql=False)
    assert (b"content-type", b"application/problem+json") in headers and (b"retry-after", b"3") in headers
    problem = orjson.loads(body)
    assert problem["status"] == 429 and problem["code"] == "rate-limited" and problem["reason"] == "rate-limited-user"
    assert problem["title"] == "Too Many Requests"


def test_retry_after_is_at_least_one_second() -> None:
    assert RateLimitedError("r", "m", 0.001).headers["retry-after"] == "1"
    assert RateLimitedError("r", "m", 0).retry_after == 1
