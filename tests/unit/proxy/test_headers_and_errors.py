"""Header policy and error rendering: what crosses the gateway and what a client is told."""

from __future__ import annotations

import json

from clerk_gateway.adapters.hasura import HasuraAdapter
from clerk_gateway.errors import AuthenticationError, ForbiddenError, MissingTokenError
from clerk_gateway.proxy.headers import RequestHeaderFilter, filter_response_headers
from clerk_gateway.proxy.request_id import request_id_from
from clerk_gateway.proxy.responses import render_error


def test_request_filter_drops_secrets_identity_and_hop_by_hop() -> None:
    incoming = [
        (b"host", b"gw"), (b"authorization", b"Bearer x"), (b"cookie", b"__session=x"),
        (b"x-hasura-admin-secret", b"guess"), (b"x-hasura-access-key", b"guess"),
        (b"x-hasura-user-id", b"someone-else"), (b"x-hasura-role", b"admin"), (b"connection", b"x-secret-hop"),
        (b"x-secret-hop", b"1"), (b"transfer-encoding", b"chunked"), (b"content-length", b"5"),
        (b"content-type", b"application/json"), (b"accept-encoding", b"gzip"), (b"x-test", b"kept"),
    ]
    kept = RequestHeaderFilter(HasuraAdapter.header_policy).apply(incoming)
    assert kept == [(b"content-type", b"application/json"), (b"accept-encoding", b"gzip"), (b"x-test", b"kept")]


def test_response_filter_keeps_encoding_and_drops_hop_by_hop() -> None:
    upstream = [(b"content-type", b"application/json"), (b"content-encoding", b"gzip"),
                (b"connection", b"keep-alive"), (b"keep-alive", b"timeout=5"), (b"transfer-encoding", b"chunked"),
                (b"content-length", b"10")]
    assert filter_response_headers(upstream) == [
        (b"content-type", b"application/json"), (b"content-encoding", b"gzip"), (b"content-length", b"10")]


def test_request_id_kept_when_sane_else_generated() -> None:
    assert request_id_from([(b"x-request-id", b"abc-123")]) == b"abc-123"
    generated = request_id_from([(b"x-request-id", b"bad id\r\n")])
    assert len(generated) == 32 and generated != request_id_from([])


def test_graphql_shaped_401_with_www_authenticate() -> None:
    status, headers, body = render_error(AuthenticationError("token-expired", "token expired"), graphql=True)
    assert status == 401
    assert dict(headers)[b"www-authenticate"] == b'Bearer error="invalid_token", error_description="token expired"'
    error = json.loads(body)["errors"][0]
    assert error["extensions"]["code"] == "invalid-jwt" and error["extensions"]["reason"] == "token-expired"


def test_missing_token_uses_invalid_headers_code() -> None:
    _, _, body = render_error(MissingTokenError(), graphql=True)
    assert json.loads(body)["errors"][0]["extensions"]["code"] == "invalid-headers"


def test_problem_json_elsewhere_and_403_without_challenge() -> None:
    status, headers, body = render_error(ForbiddenError("role-not-allowed", "nope"), graphql=False)
    assert status == 403 and dict(headers)[b"content-type"] == b"application/problem+json"
    assert b"www-authenticate" not in dict(headers)
    problem = json.loads(body)
    assert problem["status"] == 403 and problem["code"] == "access-denied" and problem["detail"] == "nope"
