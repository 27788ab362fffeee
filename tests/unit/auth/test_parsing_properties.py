"""Properties of token parsing that the verifier's own property tests do not state.

``test_verifier.py`` already checks that *any* text or *any* signed content is verified or refused
cleanly (never an unexpected exception). These properties pin down what "strict" means:

* one token, one spelling: every single-character edit of a valid token is refused, so no second
  string verifies as the same token (the verified-token cache is keyed by the token text);
* nothing lost: the claims a key signed come back exactly, whatever their JSON shape and however
  the signer escaped the text;
* a duplicate member is refused at any depth, not only at the top level (row 15 of the attack
  table shows it for ``alg``, ``sub`` and ``iss``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from clerk_gateway.auth.verifier import TokenVerifier, VerifierPolicy
from clerk_gateway.errors import AuthenticationError
from tests.support.tokens import KeySetProvider, SigningKey, clerk_claims, jwks

ISSUER = "https://clerk.example.com"
NOW = 1_750_000_000.0
RSA = SigningKey.rsa("k1")
EC = SigningKey.ec("k3")
VERIFIER = TokenVerifier(KeySetProvider(jwks(RSA, EC)), VerifierPolicy(issuer=ISSUER), clock=lambda: NOW)
CLAIMS = clerk_claims(issuer=ISSUER, now=NOW)
TOKENS = {"rsa": RSA.sign(CLAIMS), "ec": EC.sign(CLAIMS)}
#: Claims whose rules are tested elsewhere; extra claims avoid them so the token stays valid.
RULED = {"exp", "nbf", "iat", "iss", "sub", "sid", "azp", "sts", "aud", "jti", "v", "fva"}
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

_settings = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- one token, one spelling ---------------------------------------------------------------------

_characters = st.sampled_from(_ALPHABET + ".=+/ ~") | st.characters(codec="utf-8")


@st.composite
def edits(draw: st.DrawFn) -> tuple[str, str]:
    kind = draw(st.sampled_from(sorted(TOKENS)))
    token = TOKENS[kind]
    position = draw(st.integers(0, len(token) - 1))
    operation = draw(st.sampled_from(["replace", "insert", "delete"]))
    if operation == "delete":
        edited = token[:position] + token[position + 1:]
    else:
        character = draw(_characters)
        end = position + 1 if operation == "replace" else position
        edited = token[:position] + character + token[end:]
    return kind, edited


@_settings
@given(edits())
async def test_every_edit_of_a_valid_token_is_refused(edit: tuple[str, str]) -> None:
    kind, edited = edit
    assume(edited != TOKENS[kind])
    with pytest.raises(AuthenticationError):
        await VERIFIER.verify(edited)


async def test_the_unedited_tokens_verify() -> None:
    for token in TOKENS.values():
        assert (await VERIFIER.verify(token)).claims == CLAIMS


# -- nothing lost --------------------------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=12,
)
_extra_claims = st.dictionaries(_text.filter(lambda name: name not in RULED), _json, max_size=6)


@_settings
@given(extra=_extra_claims, ascii_only=st.booleans(), signer=st.sampled_from([RSA, EC]))
async def test_signed_claims_come_back_exactly(extra: dict[str, Any], ascii_only: bool, signer: SigningKey) -> None:
    claims = CLAIMS | extra
    header = json.dumps({"alg": signer.alg, "kid": signer.kid, "typ": "JWT"})
    token = signer.sign_raw(header, json.dumps(claims, ensure_ascii=ascii_only).encode("utf-8"))
    verified = await VERIFIER.verify(token)
    assert verified.claims == claims
    assert json.dumps(verified.claims, sort_keys=True) == json.dumps(claims, sort_keys=True)  # -0.0, 1 vs 1.0


# -- duplicates at any depth ---------------------------------------------------------------------


def _dumps_with_duplicate(value: dict[str, Any], path: list[str], duplicate: Any) -> str:
    """``value`` as JSON, with the first member of the object at ``path`` written a second time."""
    members = []
    for name, member in value.items():
        if path and name == path[0]:
            text = _dumps_with_duplicate(member, path[1:], duplicate)
        else:
            text = json.dumps(member)
        members.append(f"{json.dumps(name)}: {text}")
    if not path:
        first = next(iter(value))
        members.append(f"{json.dumps(first)}: {json.dumps(value[first] if duplicate is ... else duplicate)}")
    return "{" + ", ".join(members) + "}"


@_settings
@given(target=st.dictionaries(_text, _json, min_size=1, max_size=4),
       path=st.lists(_text.filter(lambda name: name not in RULED), max_size=3, unique=True),
       duplicate=st.just(...) | _json, in_header=st.booleans())
async def test_a_duplicate_member_is_refused_at_any_depth(target: dict[str, Any], path: list[str], duplicate: Any,
                                                          in_header: bool) -> None:
    if in_header:
        document: dict[str, Any] = {"alg": "RS256", "kid": "k1"}
    else:
        document = dict(CLAIMS)
    if path:  # nest the target object under the path's names
        nested: Any = target
        for name in reversed(path[1:]):
            nested = {name: nested}
        document[path[0]] = nested
    else:
        document = document | target if in_header else target | document  # the top-level object itself
    text = _dumps_with_duplicate(document, path, duplicate)
    if in_header:
        token = RSA.sign_raw(text, json.dumps(CLAIMS))
    else:
        token = RSA.sign_raw(json.dumps({"alg": "RS256", "kid": "k1"}), text)
    with pytest.raises(AuthenticationError) as caught:
        await VERIFIER.verify(token)
    assert caught.value.reason == "malformed-token"
