"""``POST /webhooks/clerk``: raw ASGI, so the signature is checked on the bytes exactly as sent.

The endpoint sits outside the token checks (Svix sends no Clerk token) and has its own body limit
(``GATEWAY_WEBHOOK_MAX_BODY_BYTES``). The order of the answers is Svix's contract: a delivery is
acknowledged (2xx) only once its write or revocation happened, so that nothing is lost; a
backend that failed answers 503, and Svix retries; a delivery that can never succeed (a bad
signature, a malformed event) is a 400. Unknown event types and repeats of an applied
``svix-id`` are 200 no-ops. No body, signature or secret is ever logged: a log line names the
event type, the message id, the outcome and a reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from clerk_gateway.errors import BadRequestError, GatewayError, PayloadTooLargeError, ServiceUnavailableError
from clerk_gateway.observability.metrics import WEBHOOK_EVENTS
from clerk_gateway.proxy.responses import render_error

from .deliveries import DeliveryLog
from .events import KNOWN_TYPES, ClerkEventHandler, InvalidEvent
from .revocation import SharedStateUnavailable
from .store import SyncUnavailable
from .verification import WebhookRejected, WebhookVerifier

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

log = logging.getLogger("clerk_gateway.webhooks")

PATH = "/webhooks/clerk"
#: Svix waits 15 s for an answer; the body must arrive well within that.
BODY_TIMEOUT_SECONDS = 10.0
#: After a 503: when Svix may try again makes no difference (it has its own schedule), but a
#: Retry-After is what a well-behaved 503 carries.
RETRY_AFTER_SECONDS = "5"


class _MethodNotAllowed(GatewayError):
    status = 405
    code = "method-not-allowed"
    title = "Method Not Allowed"


class ClerkWebhookEndpoint:
    def __init__(self, verifier: WebhookVerifier, deliveries: DeliveryLog, handler: ClerkEventHandler, *,
                 max_body_bytes: int) -> None:
        self.verifier = verifier
        self.deliveries = deliveries
        self.handler = handler
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await _answer_error(send, _MethodNotAllowed("method-not-allowed", "the webhook endpoint takes POST",
                                                        headers={"Allow": "POST"}))
            return
        try:
            body = await self._read_body(scope, receive)
        except GatewayError as error:
            await _answer_error(send, error, close=True)
            return
        except _ClientGone:
            return
        try:
            delivery = self.verifier.verify(body, scope["headers"])
        except WebhookRejected as rejected:
            WEBHOOK_EVENTS.labels("unverified", rejected.reason).inc()
            log.info("webhook refused", extra={"reason": rejected.reason})
            await _answer_error(send, BadRequestError(rejected.reason, rejected.message))
            return
        kind = delivery.type if delivery.type in KNOWN_TYPES else "other"
        context = {"event_type": delivery.type[:64], "svix_id": delivery.message_id[:64]}
        if await self.deliveries.seen(delivery.message_id):
            WEBHOOK_EVENTS.labels(kind, "duplicate").inc()
            log.info("webhook already applied", extra={**context, "outcome": "duplicate"})
            await _answer(send, 200, {"status": "duplicate"})
            return
        try:
            applied = await self.handler.handle(delivery)
        except InvalidEvent as exc:
            WEBHOOK_EVENTS.labels(kind, "invalid").inc()
            log.warning("webhook event not applicable", extra={**context, "reason": str(exc)})
            await _answer_error(send, BadRequestError("invalid-event", str(exc)))
            return
        except (SyncUnavailable, SharedStateUnavailable) as exc:
            reason = exc.reason if isinstance(exc, SyncUnavailable) else "shared-state-unavailable"
            WEBHOOK_EVENTS.labels(kind, "failed").inc()
            log.warning("webhook not applied; Svix will retry", extra={**context, "reason": reason,
                                                                        "error": str(exc)[:300]})
            await _answer_error(send, ServiceUnavailableError(
                reason, "the change could not be written yet; retry later",
                headers={"Retry-After": RETRY_AFTER_SECONDS}))
            return
        except Exception:  # a bug: still the contract's shape, and Svix retries it
            WEBHOOK_EVENTS.labels(kind, "failed").inc()
            log.exception("webhook handling failed inside the gateway", extra=context)
            await _answer_error(send, ServiceUnavailableError("internal-error", "the gateway failed to apply it"))
            return
        await self.deliveries.remember(delivery.message_id)
        WEBHOOK_EVENTS.labels(kind, applied.outcome).inc()
        log.info("webhook applied", extra={**context, "outcome": applied.outcome})
        await _answer(send, 200, {"status": applied.outcome})

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                raise PayloadTooLargeError(limit)
        parts: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(BODY_TIMEOUT_SECONDS):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _ClientGone()
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        raise PayloadTooLargeError(limit)
                    parts.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(parts)
        except TimeoutError:
            raise BadRequestError("body-timeout", "the body did not arrive in time") from None


class _ClientGone(Exception):
    pass


async def _answer(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = orjson.dumps(payload)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"cache-control", b"no-store"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _answer_error(send: Send, error: GatewayError, *, close: bool = False) -> None:
    status, headers, body = render_error(error, graphql=False)
    headers.append((b"content-length", str(len(body)).encode()))
    if close:  # the body was not read to its end: the connection cannot be reused
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
