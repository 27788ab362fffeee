"""Every delivery the verifier must refuse, signed with the ``standardwebhooks`` library itself.

Each refusal is a :class:`WebhookRejected` with a reason (the endpoint's 400), never another
exception: the library raises ``ValueError``/``binascii.Error`` for some malformed headers and
``UnicodeDecodeError`` for a non-UTF-8 body, which a naive handler turns into a 500.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from standardwebhooks import Webhook

from clerk_gateway.webhooks.verification import Delivery, WebhookRejected, WebhookVerifier
from tests.support.webhook_signing import SECOND_SECRET, SECRET, new_secret, signed_delivery

EVENT = {"type": "user.created", "object": "event", "data": {"id": "user_1"}, "timestamp": 1748751899130}


def _headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode(), value.encode("latin-1")) for name, value in headers.items()]


def _verify(body: bytes, headers: dict[str, str], *secrets: str) -> Delivery:
    return WebhookVerifier(secrets or (SECRET,)).verify(body, _headers(headers))


def _reason(body: bytes, headers: dict[str, str], *secrets: str) -> str:
    with pytest.raises(WebhookRejected) as refused:
        _verify(body, headers, *secrets)
    assert refused.value.message and "\n" not in refused.value.message
    return refused.value.reason


def test_a_valid_delivery_is_verified_on_its_raw_bytes_and_parsed_after() -> None:
    body, headers = signed_delivery(EVENT, message_id="msg_valid")
    delivery = _verify(body, headers)
    assert delivery.message_id == "msg_valid" and delivery.event == EVENT and delivery.type == "user.created"


def test_the_published_standard_webhooks_vector_is_the_scheme_the_tests_sign_with() -> None:
    """REFERENCE.md §8.1: the spec's own example signature, reproduced by the library the tests sign
    with (the verifier cannot take it as is: its timestamp is years outside the 5-minute window), and
    a fresh delivery under the spec's secret verifies."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    moment = datetime.fromtimestamp(1614265330, tz=UTC)
    assert Webhook(secret).sign("msg_p5jXN8AQM9LWM0D4loKWxJek", moment, '{"test": 2432232314}') == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    body, headers = signed_delivery({"test": 2432232314, "type": "x"}, secrets=(secret,), message_id="msg_p5jX")
    assert _verify(body, headers, secret).event["test"] == 2432232314


def test_the_same_bytes_reserialised_differently_fail() -> None:
    body, headers = signed_delivery(EVENT)
    reserialised = body.replace(b",", b", ")
    assert _reason(reserialised, headers) == "invalid-signature"


@pytest.mark.parametrize(("change", "reason"), [
    (lambda b, h: (b.replace(b"user_1", b"user_2"), h), "invalid-signature"),
    (lambda b, h: (b, {**h, "svix-id": "msg_other"}), "invalid-signature"),
    (lambda b, h: (b, {**h, "svix-signature": "v1a,aGVsbG8="}), "invalid-signature"),
    (lambda b, h: (b, {**h, "svix-signature": "v2," + h["svix-signature"].split(",", 1)[1]}), "invalid-signature"),
    (lambda b, h: (b, {k: v for k, v in h.items() if k != "svix-id"}), "missing-headers"),
    (lambda b, h: (b, {k: v for k, v in h.items() if k != "svix-timestamp"}), "missing-headers"),
    (lambda b, h: (b, {k: v for k, v in h.items() if k != "svix-signature"}), "missing-headers"),
    (lambda b, h: (b, {**h, "svix-signature": ""}), "missing-headers"),
    (lambda b, h: (b, {**h, "svix-timestamp": "yesterday"}), "invalid-timestamp"),
    (lambda b, h: (b, {**h, "svix-signature": "garbage"}), "malformed-signature"),
    (lambda b, h: (b, {**h, "svix-signature": "v1,a,b"}), "malformed-signature"),
    (lambda b, h: (b, {**h, "svix-signature": "v1,AAAA  " + h["svix-signature"]}), "malformed-signature"),
    (lambda b, h: (b, {**h, "svix-signature": "v1,@@not-base64@@"}), "malformed-signature"),
    (lambda b, h: (b, {**h, "svix-signature": "v1," + "A" * 5000}), "malformed-signature"),
], ids=["tampered-body", "other-id", "v1a-only", "unknown-version", "no-id", "no-timestamp", "no-signature",
        "empty-signature", "timestamp-not-a-number", "garbage-entry", "two-commas", "double-space", "bad-base64",
        "oversized"])
def test_a_tampered_or_malformed_delivery_is_refused_with_its_reason(change: Any, reason: str) -> None:
    body, headers = change(*signed_delivery(EVENT))
    assert _reason(body, headers) == reason


def test_stale_and_future_timestamps_are_refused_five_minutes_out() -> None:
    now = int(time.time())
    assert _reason(*signed_delivery(EVENT, timestamp=now - 301)) == "stale-timestamp"
    assert _reason(*signed_delivery(EVENT, timestamp=now + 301)) == "future-timestamp"
    assert _verify(*signed_delivery(EVENT, timestamp=now - 290)).type == "user.created"
    assert _verify(*signed_delivery(EVENT, timestamp=now + 290)).type == "user.created"


def test_a_non_utf8_body_is_refused_not_a_crash() -> None:
    body, headers = signed_delivery(EVENT, body=b'{"type": "user.created", "x": "\xff\xfe"}')
    assert _reason(body, headers) == "invalid-body"


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"data": {}}', b'{"type": 7}'],
                         ids=["not-json", "array", "no-type", "type-not-text"])
def test_a_signed_body_that_is_not_a_clerk_event_is_refused(body: bytes) -> None:
    signed_body, headers = signed_delivery(None, body=body)
    assert _reason(signed_body, headers) == "invalid-body"


def test_rotation_accepts_either_secret_and_a_header_carrying_both() -> None:
    both = (SECRET, SECOND_SECRET)
    assert _verify(*signed_delivery(EVENT, secrets=(SECRET,)), *both).type == "user.created"
    assert _verify(*signed_delivery(EVENT, secrets=(SECOND_SECRET,)), *both).type == "user.created"
    assert _verify(*signed_delivery(EVENT, secrets=both), SECOND_SECRET).type == "user.created"
    assert _reason(*signed_delivery(EVENT, secrets=(new_secret(),)), *both) == "invalid-signature"


def test_standard_webhooks_header_names_are_accepted_and_svix_names_win() -> None:
    body, headers = signed_delivery(EVENT, message_id="msg_std")
    standard = {name.replace("svix-", "webhook-"): value for name, value in headers.items()}
    assert _verify(body, standard).message_id == "msg_std"
    mixed = {**headers, "webhook-signature": "v1,AAAA"}
    assert _verify(body, mixed).message_id == "msg_std"


def test_a_verifier_needs_a_secret() -> None:
    with pytest.raises(ValueError):
        WebhookVerifier(())
