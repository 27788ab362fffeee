"""Property: whatever headers a client sends, the upstream sees only the identity the gateway derived.

Hypothesis draws request header lists mixing ``x-hasura-*`` names (in any letter case, lower-cased
as an ASGI server delivers them), the admin secret and access-key headers, ``Cookie``,
``Authorization``, hop-by-hop names, names listed in ``Connection`` and random names, with random
byte values (no CR/LF, which no HTTP parser lets through). Each request goes through the real
:meth:`BackendProxy.handle` with the real Hasura adapter; a stub verifier stands in for token
checks and a recording :class:`UpstreamClient` captures the header list exactly as the proxy hands
it to the HTTP client (respx would show httpx's own additions such as ``Host`` mixed in).

What must hold for every request that reaches the upstream:

* ``x-hasura-*``: exactly the gateway's set — in ``admin_secret`` mode the configured secret once,
  exactly one role (the requested one only when allowed, else the request is refused), the session
  variables from the token; in ``forward`` mode no secret and at most one role. Nothing else a
  client sent under that prefix, and never ``x-hasura-access-key``.
* no ``Cookie``; ``Authorization`` only in ``forward`` mode and then exactly ``Bearer <the verified
  token>``;
* no hop-by-hop header and no header named in any ``Connection`` header;
* every other client header passes unchanged and in order (the filter must not over-reach).

A request that does not reach the upstream must have been refused with 401/403.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import AsyncIterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from clerk_gateway.adapters.hasura import HasuraAdapter, HasuraSettings
from clerk_gateway.auth.model import TokenKind, VerifiedToken
from clerk_gateway.errors import AuthenticationError
from clerk_gateway.proxy.http import BackendProxy

Header = tuple[bytes, bytes]

SECRET = b"gateway-admin-secret"
ALLOWED_ROLES = ("user", "editor")
SUBJECT = "user_1"
NAMESPACE = "https://hasura.io/jwt/claims"
NAMESPACED_CLAIMS = {"x-hasura-default-role": "viewer", "x-hasura-allowed-roles": ["viewer", "user"],
                     "x-hasura-user-id": "ns_user", "x-hasura-org-id": "org_9"}
GOOD = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyXzEifQ.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"
_TOKEN = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")

#: RFC 9110 §7.6.1, plus the obsolete ones every proxy strips.
HOP_BY_HOP = ("connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te",
              "trailer", "transfer-encoding", "upgrade")
#: Never forwarded from the client: the upstream client sets its own, or the gateway sets them.
GATEWAY_OWNED = {"host", "content-length", "cookie", "authorization", "x-request-id", "expect"}


# -- doubles -------------------------------------------------------------------------------------


@dataclass
class StubVerifier:
    """Accepts anything shaped like a compact JWS, as the real verifier would accept a good one."""

    namespaced: bool = False
    verified: list[str] = field(default_factory=list)

    async def verify(self, token: str) -> VerifiedToken:
        if not _TOKEN.fullmatch(token):
            raise AuthenticationError("malformed-token", "the token is not a compact JWS")
        self.verified.append(token)
        claims: dict[str, Any] = {"sub": SUBJECT, "sid": "sess_1"}
        if self.namespaced:
            claims[NAMESPACE] = NAMESPACED_CLAIMS
        return VerifiedToken(token=token, header={}, claims=claims, kind=TokenKind.SESSION, subject=SUBJECT,
                             expires_at=2e9, session_id="sess_1")


class _Answer:
    status = 200
    headers: list[Header] = [(b"content-type", b"application/json")]

    async def chunks(self) -> AsyncIterator[bytes]:
        yield b'{"data":{}}'

    def at_eof(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


@dataclass
class RecordingClient:
    """An :class:`UpstreamClient` that keeps the exact header list the proxy sends."""

    sent: list[list[Header]] = field(default_factory=list)

    async def send(self, method: str, url: str, headers: list[Header], body: bytes, *,
                   timeout: float, streaming: bool) -> _Answer:
        self.sent.append(list(headers))
        return _Answer()

    async def aclose(self) -> None:
        return None


def make_proxy(mode: str, namespaced: bool) -> tuple[BackendProxy, StubVerifier, RecordingClient]:
    values: dict[str, Any] = {"url": "http://hasura.test", "auth_mode": mode, "allowed_roles": list(ALLOWED_ROLES)}
    if mode == "admin_secret":
        values["admin_secret"] = SECRET.decode()
    adapter = HasuraAdapter("hasura", HasuraSettings.model_validate(values))
    verifier, upstream = StubVerifier(namespaced), RecordingClient()
    proxy = BackendProxy(adapter, upstream, verifier,
                         cookie_names=("__session",), max_body_bytes=1024)
    return proxy, verifier, upstream


async def call(proxy: BackendProxy, headers: list[Header]) -> tuple[int, dict[bytes, bytes]]:
    """One request through :meth:`BackendProxy.handle`, as uvicorn would deliver it."""
    scope: dict[str, Any] = {"type": "http", "method": "POST", "path": "/hasura/v1/graphql", "query_string": b"",
                             "headers": headers, "client": ("127.0.0.1", 50000)}
    messages: list[dict[str, Any]] = [{"type": "http.request", "body": b"{}", "more_body": False}]
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await proxy.handle(scope, receive, send, "/v1/graphql")
    start = sent[0]
    assert start["type"] == "http.response.start"
    return int(start["status"]), dict(start["headers"])


# -- strategies ----------------------------------------------------------------------------------


def _any_case(names: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """The name in random letter case; the ASGI server lower-cases it before the proxy sees it."""
    return names.flatmap(lambda name: st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
        lambda upper: "".join(ch.upper() if up else ch for ch, up in zip(name, upper, strict=True))))


_values = st.binary(max_size=24).map(lambda value: value.replace(b"\r", b"").replace(b"\n", b""))
_hasura_names = _any_case(st.sampled_from([
    "x-hasura-role", "x-hasura-user-id", "x-hasura-admin-secret", "x-hasura-access-key", "x-hasura-org-id",
    "x-hasura-default-role", "x-hasura-allowed-roles",
]) | st.from_regex(r"x-hasura-[a-z0-9-]{1,10}", fullmatch=True))
_random_names = st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True).filter(lambda name: name != "close")
_plain_names = st.sampled_from(["content-type", "accept", "accept-encoding", "user-agent", "origin",
                                "x-request-id", "expect", "x-forwarded-for"])
_roles = st.sampled_from([b"user", b"editor", b"viewer", b"admin", b"User", b"", b"user ", "\u00e9diteur".encode()])
_authorizations = st.sampled_from([b"Bearer " + GOOD, b"Bearer forged.token.value", b"Basic dXNlcjpwYXNz",
                                   b"Bearer", b"bearer " + GOOD, GOOD])
_cookies = st.sampled_from([b"__session=" + GOOD, b"theme=dark; __session=a.b.c", b"__session=", b"a=b"])

_header = st.one_of(
    st.tuples(_hasura_names, _values),
    st.tuples(_any_case(st.just("x-hasura-role")), _roles | _values),
    st.tuples(_any_case(st.just("x-hasura-admin-secret")), st.just(SECRET) | _values),
    st.tuples(st.just("authorization"), _authorizations | _values),
    st.tuples(st.just("cookie"), _cookies | _values),
    st.tuples(_any_case(st.sampled_from(HOP_BY_HOP)), _values),
    st.tuples(_random_names, _values),
    st.tuples(_plain_names, _values),
).map(lambda header: (header[0].lower().encode("latin-1"), header[1]))


@st.composite
def client_headers(draw: st.DrawFn) -> list[Header]:
    headers = draw(st.lists(_header, max_size=12))
    token = draw(st.sampled_from(["bearer", "bearer", "cookie", "none"]))
    if token != "none":
        credential = (b"authorization", b"Bearer " + GOOD) if token == "bearer" else (b"cookie", b"__session=" + GOOD)
        headers.insert(draw(st.integers(0, len(headers))), credential)
    # Connection headers naming some of the drawn headers (and others), in any case, with OWS.
    for _ in range(draw(st.integers(0, 2))):
        names = [name.decode("latin-1") for name, _ in headers]
        listed = draw(st.lists(st.sampled_from(names) if names else _random_names, max_size=3)
                      | st.lists(_random_names, max_size=2))
        listed += draw(st.lists(st.sampled_from(["keep-alive", "close", "x-hasura-role", "upgrade"]), max_size=1))
        tokens = [draw(_any_case(st.just(name))) for name in listed]
        separator = draw(st.sampled_from([b",", b", ", b" ,\t"]))
        value = separator.join(token.encode("latin-1") for token in tokens)
        headers.insert(draw(st.integers(0, len(headers))), (b"connection", value))
    return [(b"host", b"gateway.test"), *headers, (b"content-length", b"2")]


# -- the model -----------------------------------------------------------------------------------


def connection_options(headers: list[Header], whitespace: bytes | None = b" \t") -> set[bytes]:
    """Every field name listed in any ``Connection`` header (RFC 9110 §7.6.1: the field is a list).

    RFC 9110 allows only spaces and tabs around the commas (``whitespace``); ``None`` strips every
    ASCII whitespace byte, as a lenient parser may, which can only ever list *more* names.
    """
    return {option.strip(whitespace).lower() for name, value in headers if name == b"connection"
            for option in value.split(b",")} - {b""}


def must_drop(name: bytes, options: set[bytes]) -> bool:
    text = name.decode("latin-1")
    return text in HOP_BY_HOP or text in GATEWAY_OWNED or text.startswith("x-hasura-") or name in options


def requested_role(headers: list[Header]) -> bytes | None:
    values = [value for name, value in headers if name == b"x-hasura-role"]
    return values[-1] if values else None


def expected_identity(mode: str, namespaced: bool, requested: bytes | None) -> list[Header] | None:
    """The ``x-hasura-*`` headers the gateway must send, or ``None`` when the role must be refused."""
    if namespaced:
        default, allowed = NAMESPACED_CLAIMS["x-hasura-default-role"], NAMESPACED_CLAIMS["x-hasura-allowed-roles"]
        variables = [(b"x-hasura-user-id", b"ns_user"), (b"x-hasura-org-id", b"org_9")]
    else:
        default, allowed = "user", list(ALLOWED_ROLES)
        variables = [(b"x-hasura-user-id", SUBJECT.encode())]
    role: bytes | None
    if mode == "forward" and not namespaced:
        # Hasura checks it against the forwarded token itself; the bytes pass as the client sent them.
        role = requested
    elif requested is None:
        role = str(default).encode()
    elif requested.decode("latin-1") in allowed:
        role = requested
    else:
        return None
    if mode == "forward":
        return [(b"x-hasura-role", role)] if role is not None else []
    assert role is not None
    return [(b"x-hasura-admin-secret", SECRET), (b"x-hasura-role", role), *variables]


# -- the property --------------------------------------------------------------------------------


#: RFC 9110 §5.3: a list field may arrive as several lines; every ``Connection`` line counts.
SECOND_CONNECTION_LINE = [(b"host", b"gateway.test"), (b"connection", b"keep-alive"),
                          (b"connection", b"x-internal-hop"), (b"authorization", b"Bearer " + GOOD),
                          (b"x-internal-hop", b"1"), (b"content-length", b"2")]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(headers=SECOND_CONNECTION_LINE, mode="admin_secret", namespaced=False)
@given(headers=client_headers(), mode=st.sampled_from(["admin_secret", "forward"]), namespaced=st.booleans())
async def test_upstream_sees_only_the_gateway_identity(headers: list[Header], mode: str, namespaced: bool) -> None:
    proxy, verifier, upstream = make_proxy(mode, namespaced)
    status, response_headers = await call(proxy, headers)

    if not verifier.verified:
        assert status == 401 and upstream.sent == []
        return
    identity = expected_identity(mode, namespaced, requested_role(headers))
    if identity is None:
        assert status == 403 and upstream.sent == []
        return
    assert status == 200 and len(upstream.sent) == 1
    sent = upstream.sent[0]
    names = [name for name, _ in sent]

    # identity: exactly the gateway's x-hasura-* headers, nothing a client sent under that prefix
    assert Counter(h for h in sent if h[0].startswith(b"x-hasura-")) == Counter(identity)
    assert b"x-hasura-access-key" not in names
    assert names.count(b"x-hasura-role") == (1 if mode == "admin_secret" else len(identity))
    # credentials
    assert b"cookie" not in names
    authorization = [value for name, value in sent if name == b"authorization"]
    if mode == "admin_secret":
        assert authorization == []
    else:
        assert authorization == [b"Bearer " + verifier.verified[0].encode("ascii")]
    # the request id: exactly one, the one echoed to the client
    assert [value for name, value in sent if name == b"x-request-id"] == [response_headers[b"x-request-id"]]
    # everything else: the client's own headers minus hop-by-hop and gateway-owned ones, unchanged, in order
    options = connection_options(headers)
    either = connection_options(headers, whitespace=None) - options  # odd whitespace: dropping is fine too
    passed = [h for h in sent if not h[0].startswith(b"x-hasura-") and h[0] not in (b"authorization", b"x-request-id")]
    assert not any(name.decode("latin-1") in HOP_BY_HOP or name in options for name, _ in passed), passed
    expected = [h for h in headers if not must_drop(h[0], options)]
    assert [h for h in passed if h[0] not in either] == [h for h in expected if h[0] not in either]
    assert all(h in expected for h in passed)


async def test_forwarded_role_keeps_its_bytes() -> None:
    proxy, _, upstream = make_proxy("forward", namespaced=False)
    status, _ = await call(proxy, [(b"authorization", b"Bearer " + GOOD), (b"x-hasura-role", b"\xe9diteur"),
                                   (b"content-length", b"2")])
    assert status == 200
    assert [value for name, value in upstream.sent[0] if name == b"x-hasura-role"] == [b"\xe9diteur"]
