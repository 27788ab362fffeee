"""A local fake of Clerk's Backend API on 127.0.0.1: template tokens for known sessions, and its JWKS.

It speaks the documented shape (``bapi/2026-05-12.yml``, ``CreateSessionTokenFromTemplate``):

``POST /v1/sessions/{session_id}/tokens/{template_name}`` with ``Authorization: Bearer <secret key>``
and an optional JSON body ``{"expires_in_seconds": 30…315360000}``

* 200 ``{"object": "token", "jwt": "…"}``: a JWT-template token signed with the fake's key (as
  Clerk signs templates with the instance key), carrying the template's claims — the ``hasura``
  template has Clerk's Hasura claims namespace, so a Hasura-like upstream accepts it;
* 401 ``{"errors": [{"message", "long_message", "code"}]}``: the secret key is wrong
  (``clerk_key_invalid``) or the header is malformed (``authorization_header_format_invalid``),
  or the session is no longer active (``authentication_invalid``, "you need to supply an active
  session" — Clerk's documented InvalidAuthentication; the status and code an ended session gets
  can be changed with :attr:`FakeClerkApi.ended_answer`);
* 404 ``resource_not_found``: the session, or the template, does not exist.

``GET /v1/jwks`` (same bearer auth) publishes the public key, as the Backend API JWKS does, so a
gateway configured with ``CLERK_SECRET_KEY`` finds its fallback key source here too.

Failure modes (:meth:`FakeClerkApi.fail`, token endpoint only, so the JWKS keeps working):

``"error"``         HTTP 500 with a short text body.
``"garbage"``       HTTP 200, ``application/json``, a body that is not JSON.
``"no-jwt"``        HTTP 200 ``{"object": "token"}``: the documented shape without the token.
``"rate-limited"``  HTTP 429 with ``Retry-After: 3`` and an errors array.
``"slow"``          the answer waits until :meth:`FakeClerkApi.release_slow` (or ``slow_max_seconds``).
``"reset"``         the connection is dropped without an answer.
``"refused"``       shorthand for :meth:`stop`: nothing listens on the port any more.

Every request is recorded (:attr:`FakeClerkApi.calls`), and every token handed out too
(:attr:`FakeClerkApi.issued`), so a test can check what the gateway sent and forwarded.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from .ports import BackgroundServer
from .tokens import SigningKey, jwks

__all__ = ["DEFAULT_SECRET_KEY", "HASURA_NAMESPACE", "TEMPLATE_CATEGORY", "ClerkCall", "FailureMode",
           "FakeClerkApi", "Session", "hasura_template"]

DEFAULT_SECRET_KEY = "sk_test_" + "fakeClerkSecret" * 3
HASURA_NAMESPACE = "https://hasura.io/jwt/claims"
TEMPLATE_CATEGORY = "cl_B7d4PD222AAA"  # the JWT-template token class (``cat`` header)
FailureMode = Literal["error", "garbage", "no-jwt", "rate-limited", "slow", "reset", "refused"]
Template = Callable[["Session"], dict[str, Any]]


def hasura_template(session: Session) -> dict[str, Any]:
    """The claims of Clerk's built-in Hasura template (``{{user.id}}`` filled in)."""
    return {HASURA_NAMESPACE: {"x-hasura-allowed-roles": ["user"], "x-hasura-default-role": "user",
                               "x-hasura-user-id": session.user_id}}


@dataclass
class Session:
    session_id: str
    user_id: str
    status: str = "active"


@dataclass(frozen=True, slots=True)
class ClerkCall:
    """One request as the fake received it (the path already split for the token endpoint)."""

    method: str
    path: str
    authorization: str | None
    session_id: str | None
    template: str | None
    body: bytes


def _errors(message: str, long_message: str, code: str) -> dict[str, Any]:
    return {"errors": [{"message": message, "long_message": long_message, "code": code}],
            "clerk_trace_id": uuid.uuid4().hex}


class FakeClerkApi(BackgroundServer):
    """The fake Backend API. ``issuer`` is the templates' ``iss`` (the Frontend API URL)."""

    def __init__(self, key: SigningKey, *, secret_key: str = DEFAULT_SECRET_KEY, issuer: str,
                 templates: Mapping[str, Template] | None = None, template_lifetime: int = 60,
                 allowed_clock_skew: int = 5, port: int | None = None, slow_max_seconds: float = 30.0) -> None:
        super().__init__(self._build_app, port=port)
        self.key = key
        self.secret_key = secret_key
        self.issuer = issuer
        self.template_lifetime = template_lifetime
        self.allowed_clock_skew = allowed_clock_skew
        #: (status, code) answered for a session that is not active.
        self.ended_answer: tuple[int, str] = (401, "authentication_invalid")
        self._templates: dict[str, Template] = dict(templates or {"hasura": hasura_template})
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._calls: list[ClerkCall] = []
        self._issued: list[str] = []
        self._mode: FailureMode | None = None
        self._slow_max_seconds = slow_max_seconds
        self._slow_release: asyncio.Event | None = None

    # -- what tests set -------------------------------------------------------------------------

    def add_session(self, session_id: str, user_id: str = "user_2abc") -> Session:
        """A live session Clerk knows (created, or made active again)."""
        session = Session(session_id, user_id)
        with self._lock:
            self._sessions[session_id] = session
        return session

    def end_session(self, session_id: str, status: str = "ended") -> None:
        """The user signed out (``ended``), or the app revoked it (``revoked``): no more tokens."""
        with self._lock:
            self._sessions[session_id].status = status

    def remove_session(self, session_id: str) -> None:
        """Clerk no longer knows the session at all (404)."""
        with self._lock:
            self._sessions.pop(session_id, None)

    def set_template(self, name: str, template: Template) -> None:
        with self._lock:
            self._templates[name] = template

    def fail(self, mode: FailureMode) -> None:
        """Make the token endpoint misbehave until :meth:`recover`."""
        if mode == "refused":
            self.stop()
            return
        with self._lock:
            self._mode = mode
            if mode == "slow":
                self._slow_release = None  # a fresh hold; the handler creates it on its loop

    def recover(self) -> None:
        with self._lock:
            self._mode = None
        self.release_slow()
        if not self.running:
            self.start()

    def release_slow(self) -> None:
        """Let every answer held back by the ``"slow"`` mode go out now."""
        event = self._slow_release
        if event is not None and self.running:
            self.call_soon(event.set)

    def reset(self) -> None:
        """Forget the recorded calls and issued tokens (sessions and mode stay)."""
        with self._lock:
            self._calls.clear()
            self._issued.clear()

    # -- what tests read ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The Backend API base URL to give the gateway (``CLERK_API_URL``), without ``/v1``."""
        return self.base_url

    @property
    def calls(self) -> list[ClerkCall]:
        with self._lock:
            return list(self._calls)

    @property
    def token_calls(self) -> list[ClerkCall]:
        """Calls to the token endpoint (answered or not), oldest first; JWKS fetches left out."""
        return [call for call in self.calls if call.template is not None]

    def token_calls_for(self, session_id: str) -> list[ClerkCall]:
        return [call for call in self.token_calls if call.session_id == session_id]

    @property
    def issued(self) -> list[str]:
        """Every template token handed out, oldest first."""
        with self._lock:
            return list(self._issued)

    # -- the server -----------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        self._slow_release = None
        app = web.Application()
        app.router.add_post("/v1/sessions/{session_id}/tokens/{template}", self._token)
        app.router.add_get("/v1/jwks", self._jwks)
        app.router.add_route("*", "/{tail:.*}", self._other)
        return app

    def _record(self, request: web.Request, body: bytes, session_id: str | None = None,
                template: str | None = None) -> None:
        with self._lock:
            self._calls.append(ClerkCall(request.method, request.path, request.headers.get("authorization"),
                                         session_id, template, body))

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        """Clerk's answer to a missing, malformed or wrong secret key; ``None`` when it is right."""
        authorization = request.headers.get("authorization", "")
        if not authorization.startswith("Bearer "):
            return web.json_response(_errors(
                "Invalid Authorization header format",
                "Invalid Authorization header format. Must be 'Bearer <YOUR_API_KEY>'",
                "authorization_header_format_invalid"), status=401)
        if authorization.removeprefix("Bearer ") != self.secret_key:
            return web.json_response(_errors(
                "The provided Clerk Secret Key is invalid. Make sure that your Clerk Secret Key is correct.",
                "The provided Clerk Secret Key is invalid. Make sure that your Clerk Secret Key is correct.",
                "clerk_key_invalid"), status=401)
        return None

    async def _jwks(self, request: web.Request) -> web.StreamResponse:
        self._record(request, b"")
        return self._unauthorized(request) or web.json_response(jwks(self.key))

    async def _other(self, request: web.Request) -> web.StreamResponse:
        self._record(request, await request.read())
        return web.json_response(_errors("not found", "The requested resource was not found", "resource_not_found"),
                                 status=404)

    async def _token(self, request: web.Request) -> web.StreamResponse:
        session_id = request.match_info["session_id"]
        template_name = request.match_info["template"]
        body = await request.read()
        self._record(request, body, session_id, template_name)
        with self._lock:
            mode = self._mode
        held = await self._misbehave(request, mode)
        if held is not None:
            return held
        refused = self._unauthorized(request)
        if refused is not None:
            return refused
        with self._lock:
            session = self._sessions.get(session_id)
            template = self._templates.get(template_name)
            if session is not None:
                session = Session(session.session_id, session.user_id, session.status)
        if session is None:
            return web.json_response(_errors("not found", f"No session was found with id {session_id}",
                                             "resource_not_found"), status=404)
        if template is None:
            return web.json_response(_errors("not found", f"No JWT template exists with name: {template_name}",
                                             "resource_not_found"), status=404)
        if session.status != "active":
            status, code = self.ended_answer
            return web.json_response(_errors(
                "Invalid authentication", "Unable to authenticate the request, you need to supply an active session",
                code), status=status)
        lifetime = self.template_lifetime
        if body:
            try:
                requested = json.loads(body).get("expires_in_seconds")
            except (ValueError, AttributeError):
                return web.json_response(_errors("is invalid", "The request body is not valid JSON",
                                                 "form_param_format_invalid"), status=422)
            if isinstance(requested, int) and not isinstance(requested, bool):
                lifetime = requested
        token = self.sign_template(session, template, lifetime=lifetime)
        if mode == "no-jwt":
            return web.json_response({"object": "token"})
        with self._lock:
            self._issued.append(token)
        return web.json_response({"object": "token", "jwt": token})

    async def _misbehave(self, request: web.Request, mode: FailureMode | None) -> web.StreamResponse | None:
        """The answer of a failure mode, or ``None`` to answer normally (after a ``slow`` hold)."""
        if mode == "error":
            return web.Response(status=500, text="internal error (test double)")
        if mode == "garbage":
            return web.Response(status=200, body=b"<html>not a token", content_type="application/json")
        if mode == "rate-limited":
            return web.json_response(_errors("Too many requests", "Too many requests, please retry later",
                                             "too_many_requests"), status=429, headers={"Retry-After": "3"})
        if mode == "reset":
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError()
        if mode == "slow":
            if self._slow_release is None:
                self._slow_release = asyncio.Event()
            try:
                await asyncio.wait_for(self._slow_release.wait(), self._slow_max_seconds)
            except TimeoutError:
                pass
        return None

    def sign_template(self, session: Session, template: Template, *, lifetime: int | None = None,
                      now: float | None = None) -> str:
        """A template token as Clerk mints it: the default claims, then the template's claims."""
        iat = int(time.time() if now is None else now)
        claims: dict[str, Any] = {  # no azp: a Backend API call has no Origin to take it from
            "iss": self.issuer, "sub": session.user_id, "iat": iat, "nbf": iat - self.allowed_clock_skew,
            "exp": iat + (lifetime or self.template_lifetime), "jti": uuid.uuid4().hex[:20],
        }
        claims.update(template(session))
        return self.key.sign(claims, header={"cat": TEMPLATE_CATEGORY})
