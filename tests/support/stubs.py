"""A verifier stand-in for in-process proxy tests: one good token, every other token refused."""

from __future__ import annotations

from clerk_gateway.auth.model import TokenKind, VerifiedToken
from clerk_gateway.errors import AuthenticationError

GOOD_TOKEN = "good.token.value"


class StubVerifier:
    def __init__(self, kind: TokenKind = TokenKind.SESSION) -> None:
        self.kind = kind
        self.calls = 0

    async def verify(self, token: str) -> VerifiedToken:
        self.calls += 1
        if token != GOOD_TOKEN:
            raise AuthenticationError("invalid-signature", "the token's signature is not valid")
        return VerifiedToken(token=token, header={}, claims={"sub": "user_1", "sid": "s"}, kind=self.kind,
                             subject="user_1", expires_at=2e9, session_id="s")
