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

``GET /v1/users`` (same bearer auth) lists the users added with :meth:`FakeClerkApi.add_users`
(realistic User objects from :func:`clerk_user`) as Clerk does: a bare JSON array, ``limit``
1…500 (default 10) and ``offset`` ≥ 0, ``order_by`` ``[+|-]created_at`` or ``[+|-]updated_at``
(default ``-created_at``, newest first); anything else is Clerk's 422 ``form_param_value_invalid``,
which is also what an unencoded ``+`` gets (it arrives as a space). :meth:`FakeClerkApi.throttle_users`
answers the next request(s) — of one page, if given its offset — with 429 and ``Retry-After``, and
:meth:`FakeClerkApi.fail_users` with a 5xx; :attr:`FakeClerkApi.user_list_requests` records what
each list request asked for and got, and :attr:`FakeClerkApi.on_users_page` runs after a page is
served (to create or delete users "during" a backfill).

Every request is recorded (:attr:`FakeClerkApi.calls`), and every token handed out too
(:attr:`FakeClerkApi.issued`), so a test can check what the gateway sent and forwarded.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
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
           "FakeClerkApi", "Session", "UserListRequest", "clerk_user", "clerk_users", "hasura_template"]

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
    #: the raw (still percent-encoded) query string
    query: str = ""


@dataclass(frozen=True, slots=True)
class UserListRequest:
    """One ``GET /v1/users`` as the fake parsed it, and the status it answered."""

    limit: int | None
    offset: int | None
    order_by: str | None
    query: str
    authorization: str | None
    status: int
    #: how many users the page held (0 for an error answer)
    count: int = 0


@dataclass
class _UserFault:
    status: int
    offset: int | None
    remaining: int
    retry_after: str | None


_FIRST_NAMES = ("Ada", "Grace", "Alan", "Katherine", "Linus", "Margaret", "Dennis", "Barbara", "Edsger", "Radia")
_LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Johnson", "Torvalds", "Hamilton", "Ritchie", "Liskov", "Dijkstra",
               "Perlman")
#: 2025-06-01T00:00:00Z in ms: the generated users were created one second apart from here.
USERS_EPOCH_MS = 1748736000000


def _clerk_id(prefix: str, seed: str) -> str:
    """A Clerk-looking id (``user_2…``, 27 base62 characters), the same for the same seed."""
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    number = int.from_bytes(hashlib.sha256(seed.encode()).digest(), "big")
    chars = []
    for _ in range(26):
        number, rest = divmod(number, 62)
        chars.append(alphabet[rest])
    return f"{prefix}_2{''.join(chars)}"


def clerk_user(index: int, *, created_at: int | None = None, updated_at: int | None = None) -> dict[str, Any]:
    """The ``index``-th generated user, shaped like the Backend API's User (REFERENCE §8.3.3).

    Most have a first and last name and one verified primary email; every 7th has a username and no
    names, every 11th no primary email (a phone-only sign-up), every 5th a second, non-primary email.
    Each carries ``private_metadata`` and ``unsafe_metadata`` too, which must never reach a backend.
    """
    created = USERS_EPOCH_MS + index * 1000 if created_at is None else created_at
    updated = created + 500 + index % 97 if updated_at is None else updated_at
    user_id = _clerk_id("user", f"user-{index}")
    first: str | None = _FIRST_NAMES[index % len(_FIRST_NAMES)]
    last: str | None = _LAST_NAMES[(index // len(_FIRST_NAMES)) % len(_LAST_NAMES)]
    username: str | None = None
    if index % 7 == 3:
        first = last = None
        username = f"coder{index}"
    emails: list[dict[str, Any]] = []
    primary: str | None = None
    if index % 11 != 5:
        primary = _clerk_id("idn", f"email-{index}")
        emails.append(_email_address(primary, f"user{index}@example.com", created))
        if index % 5 == 2:
            emails.append(_email_address(_clerk_id("idn", f"email2-{index}"), f"user{index}.work@example.org",
                                         created + 100))
    phone = _clerk_id("idn", f"phone-{index}")
    return {
        "id": user_id, "object": "user", "external_id": None,
        "username": username, "first_name": first, "last_name": last,
        "image_url": f"https://img.clerk.com/{user_id}", "has_image": index % 3 == 0,
        "primary_email_address_id": primary, "primary_phone_number_id": phone if primary is None else None,
        "primary_web3_wallet_id": None,
        "email_addresses": emails,
        "phone_numbers": [] if primary else [{
            "id": phone, "object": "phone_number", "phone_number": f"+1555{index:07d}", "reserved_for_second_factor":
            False, "default_second_factor": False, "reserved": False, "linked_to": [], "backup_codes": None,
            "verification": {"status": "verified", "strategy": "phone_code", "attempts": 1, "expire_at": None},
            "created_at": created, "updated_at": created}],
        "web3_wallets": [], "passkeys": [], "external_accounts": [], "saml_accounts": [], "enterprise_accounts": [],
        "password_enabled": index % 2 == 0, "two_factor_enabled": False, "totp_enabled": False,
        "backup_code_enabled": False, "mfa_enabled_at": None, "mfa_disabled_at": None,
        "public_metadata": {"plan": "pro", "seat": index} if index % 4 == 0 else {},
        "private_metadata": {"stripe_customer": f"cus_SECRET{index}"},
        "unsafe_metadata": {"theme": "dark"},
        "banned": False, "locked": False, "lockout_expires_in_seconds": None, "verification_attempts_remaining": 100,
        "create_organization_enabled": True, "create_organizations_limit": None, "delete_self_enabled": True,
        "legal_accepted_at": None, "last_sign_in_at": updated, "last_active_at": created - created % 86400000,
        "created_at": created, "updated_at": updated,
    }


def _email_address(address_id: str, address: str, at: int) -> dict[str, Any]:
    return {"id": address_id, "object": "email_address", "email_address": address, "reserved": False,
            "verification": {"status": "verified", "strategy": "email_code", "attempts": 1, "expire_at": None},
            "linked_to": [], "matches_sso_connection": False, "created_at": at, "updated_at": at}


def clerk_users(count: int, *, start: int = 0) -> list[dict[str, Any]]:
    """:func:`clerk_user` for ``start`` … ``start + count - 1``, oldest first."""
    return [clerk_user(index) for index in range(start, start + count)]


#: What the fake can sort by; Clerk has more fields, a backfill only needs these.
_ORDER_BY = re.compile(r"[+-]?(created_at|updated_at)")


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
        self._users: list[dict[str, Any]] = []
        self._user_faults: list[_UserFault] = []
        self._user_list_requests: list[UserListRequest] = []
        #: Called (on the server's thread) after each page of users is served, with its offset and
        #: the users on it: a test creates or deletes users here to act "during" a backfill.
        self.on_users_page: Callable[[int, list[dict[str, Any]]], None] | None = None

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
        """Forget the recorded calls and issued tokens (sessions, users and mode stay); pending user-list
        faults are dropped."""
        with self._lock:
            self._calls.clear()
            self._issued.clear()
            self._user_list_requests.clear()
            self._user_faults.clear()

    def add_users(self, count: int) -> list[dict[str, Any]]:
        """``count`` more generated users (:func:`clerk_user`), created after every user there is."""
        with self._lock:
            users = clerk_users(count, start=len(self._users))
            self._users.extend(users)
        return [dict(user) for user in users]

    def add_user(self, user: dict[str, Any]) -> None:
        """A user of the test's own making (it should have ``id``, ``created_at`` and ``updated_at``)."""
        with self._lock:
            self._users.append(dict(user))

    def update_user(self, user_id: str, **fields: Any) -> dict[str, Any]:
        """Change a user as Clerk would (``updated_at`` moves on by a second unless given)."""
        with self._lock:
            user = next(user for user in self._users if user["id"] == user_id)
            fields.setdefault("updated_at", int(user["updated_at"]) + 1000)
            user.update(fields)
            return dict(user)

    def delete_user(self, user_id: str) -> None:
        with self._lock:
            self._users = [user for user in self._users if user["id"] != user_id]

    def clear_users(self) -> None:
        with self._lock:
            self._users.clear()

    def throttle_users(self, *, offset: int | None = None, times: int = 1, retry_after: str | None = "2") -> None:
        """Answer the next ``times`` user-list requests (for the page at ``offset``, if given) with 429 and
        ``Retry-After: retry_after`` (``None``: no header), as Clerk's per-instance limit does."""
        with self._lock:
            self._user_faults.append(_UserFault(429, offset, times, retry_after))

    def fail_users(self, *, status: int = 500, offset: int | None = None, times: int = 1) -> None:
        """Answer the next ``times`` user-list requests (at ``offset``, if given) with ``status``."""
        with self._lock:
            self._user_faults.append(_UserFault(status, offset, times, None))

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
    def users(self) -> list[dict[str, Any]]:
        """The users Clerk has, oldest first (copies)."""
        with self._lock:
            return [dict(user) for user in self._users]

    @property
    def user_list_requests(self) -> list[UserListRequest]:
        """Every ``GET /v1/users``, oldest first, with what it asked for and the status it got."""
        with self._lock:
            return list(self._user_list_requests)

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
        app.router.add_get("/v1/users", self._list_users)
        app.router.add_route("*", "/{tail:.*}", self._other)
        return app

    def _record(self, request: web.Request, body: bytes, session_id: str | None = None,
                template: str | None = None) -> None:
        with self._lock:
            self._calls.append(ClerkCall(request.method, request.path, request.headers.get("authorization"),
                                         session_id, template, body, request.rel_url.raw_query_string))

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

    async def _list_users(self, request: web.Request) -> web.StreamResponse:
        self._record(request, b"")
        limit = _int_param(request, "limit", 10)
        offset = _int_param(request, "offset", 0)
        order_by = request.query.get("order_by", "-created_at")
        answer, count = self._user_page(request, limit, offset, order_by)
        with self._lock:
            self._user_list_requests.append(UserListRequest(
                limit, offset, request.query.get("order_by"), request.rel_url.raw_query_string,
                request.headers.get("authorization"), answer.status, count))
        return answer

    def _user_page(self, request: web.Request, limit: int | None, offset: int | None,
                   order_by: str) -> tuple[web.Response, int]:
        refused = self._unauthorized(request)
        if refused is not None:
            return refused, 0
        invalid = None
        if limit is None or not 1 <= limit <= 500:
            invalid = "limit"
        elif offset is None or offset < 0:
            invalid = "offset"
        elif not _ORDER_BY.fullmatch(order_by):
            invalid = "order_by"  # an unencoded "+" arrives as a space and ends here
        if invalid is not None:
            return web.json_response(_errors("is invalid", f"{invalid} has an invalid value",
                                             "form_param_value_invalid"), status=422), 0
        assert limit is not None and offset is not None
        with self._lock:
            fault = next((f for f in self._user_faults if f.offset in (None, offset) and f.remaining > 0), None)
            if fault is not None:
                fault.remaining -= 1
            field_name = order_by.lstrip("+-")
            ordered = sorted(self._users, key=lambda user: (user[field_name], user["id"]),
                             reverse=order_by.startswith("-"))
            page = [dict(user) for user in ordered[offset:offset + limit]]
        if fault is not None and fault.status == 429:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            return web.json_response(_errors("Too many requests", "Too many requests, please retry later",
                                             "too_many_requests"), status=429, headers=headers), 0
        if fault is not None:
            return web.Response(status=fault.status, text="internal error (test double)"), 0
        if self.on_users_page is not None:
            self.on_users_page(offset, page)
        return web.json_response(page), len(page)

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


def _int_param(request: web.Request, name: str, default: int) -> int | None:
    """A whole-number query parameter (``None`` when it is not one, which Clerk answers with 422)."""
    text = request.query.get(name)
    if text is None:
        return default
    return int(text) if text.isdigit() else None
