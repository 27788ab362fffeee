"""A workload of refusals mixed with accepted requests, sent over a few keep-alive clients.

It answers one question a user cares about: after the gateway refuses a request, does the *next*
request on that connection still go through? A frontend whose token just expired gets a 401,
refreshes the token and retries on the same pooled connection; a transport error there ("server
disconnected without sending a response") is a bug the user sees, even though every single
answer was right. So the workload counts transport errors, never tolerates one, and checks that
each answer is one its kind of request may get.

The end-to-end test (``tests/e2e/test_keepalive_after_refusal.py``) and the benchmark's keep-alive
check (``bench/bench.py``) both run it; each brings its own tokens as a :class:`TokenKit`.
Everything is synchronous ``httpx.Client`` — the ordinary client the defect was found with — one
client per thread, each reusing its connections.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import httpx

__all__ = ["KINDS", "MixResult", "TokenKit", "run_mix", "run_single_client_malformed"]


@dataclass(frozen=True)
class TokenKit:
    """The tokens the mix needs, made by whoever runs it (tests and the benchmark sign differently)."""

    users: Sequence[str]  #: valid session tokens, one per user, each used a few times only
    hot_user: str  #: a valid token sent often enough to exhaust its per-user budget
    expired: str
    bad_signature: str


@dataclass(frozen=True)
class RequestKind:
    name: str
    weight: int
    statuses: frozenset[int]  #: the answers this kind of request may get


#: The kinds of request in the mix. 429 is allowed for every bad token because the failure
#: budget of the (header-supplied) address it comes from may be used up; never for a good one.
KINDS: tuple[RequestKind, ...] = (
    RequestKind("accepted", 12, frozenset({200})),
    RequestKind("missing-token", 10, frozenset({401})),
    RequestKind("malformed-token", 14, frozenset({401, 429})),
    RequestKind("expired-token", 14, frozenset({401, 429})),
    RequestKind("bad-signature", 12, frozenset({401, 429})),
    RequestKind("forbidden-role", 10, frozenset({403})),
    RequestKind("too-large-declared", 6, frozenset({413})),
    RequestKind("too-large-chunked", 4, frozenset({413})),
    RequestKind("rate-limited-user", 10, frozenset({200, 429})),
)
REFUSAL_STATUSES = frozenset({401, 403, 413, 429})


@dataclass
class MixResult:
    requests: int = 0
    transport_errors: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)  #: "kind: got 500 (…)" lines, at most 20
    errors: list[str] = field(default_factory=list)  #: the first transport errors, for the message

    @property
    def refusals(self) -> int:
        return sum(count for status, count in self.statuses.items() if status in REFUSAL_STATUSES)

    def merge(self, other: MixResult) -> None:
        self.requests += other.requests
        self.transport_errors += other.transport_errors
        self.statuses.update(other.statuses)
        self.by_kind.update(other.by_kind)
        self.unexpected.extend(other.unexpected[: 20 - len(self.unexpected)])
        self.errors.extend(other.errors[: 20 - len(self.errors)])

    def summary(self) -> str:
        statuses = ", ".join(f"{status}: {count}" for status, count in sorted(self.statuses.items()))
        return (f"{self.requests} requests ({self.refusals} refusals: {statuses}), "
                f"{self.transport_errors} transport errors")


def json_body(size: int) -> bytes:
    """A GraphQL request body of exactly ``size`` bytes (at least the bare query's size)."""
    base = b'{"query":"{ viewer { id } }","pad":""}'
    if size <= len(base):
        return base[: max(size, 0)] if size < len(base) else base
    return base[:-2] + b"x" * (size - len(base)) + b'"}'


def _body_sizes(limit: int) -> list[int]:
    """From empty to near the limit, weighted towards the sizes frontends really send."""
    return [0, 0, 40, 200, 1_000, 3_000, 8_000, 20_000, 40_000, 64 * 1024 - 1, 64 * 1024 + 1,
            limit // 2, limit - 4096, limit]


def _chunks(body: bytes, size: int = 16 * 1024) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start:start + size]


class _Worker:
    def __init__(self, url: str, path: str, tokens: TokenKit, *, limit: int, seed: int,
                 addresses: Sequence[str], client_factory: Callable[[], httpx.Client]) -> None:
        self.url, self.path, self.tokens, self.limit = url, path, tokens, limit
        self.random = random.Random(seed)
        self.addresses = addresses
        self.client_factory = client_factory
        self.sizes = _body_sizes(limit)
        self.malformed = "x" * 3_000  # what the defect was found with: a 3 KB token that is not a JWS
        self.result = MixResult()

    def request(self, client: httpx.Client, kind: RequestKind) -> None:
        rnd = self.random
        headers = {"content-type": "application/json"}
        size = rnd.choice(self.sizes)
        content: bytes | Iterator[bytes] = json_body(size)
        token: str | None = rnd.choice(self.tokens.users)
        if kind.name == "missing-token":
            token = None
        elif kind.name == "malformed-token":
            token = self.malformed
        elif kind.name == "expired-token":
            token = self.tokens.expired
        elif kind.name == "bad-signature":
            token = self.tokens.bad_signature
        elif kind.name == "forbidden-role":
            headers["x-hasura-role"] = "admin"
        elif kind.name == "too-large-declared":
            content = json_body(self.limit + 1 + rnd.randrange(64 * 1024))
        elif kind.name == "too-large-chunked":
            content = _chunks(json_body(self.limit + 1 + rnd.randrange(64 * 1024)))
        elif kind.name == "rate-limited-user":
            token = self.tokens.hot_user
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        if kind.statuses & {401, 429} == {401, 429} and self.addresses:
            headers["x-forwarded-for"] = rnd.choice(self.addresses)
        result = self.result
        result.requests += 1
        result.by_kind[kind.name] += 1
        try:
            response = client.post(self.path, content=content, headers=headers)
        except httpx.TransportError as exc:
            result.transport_errors += 1
            if len(result.errors) < 20:
                result.errors.append(f"{kind.name} (body {size} B): {type(exc).__name__}: {exc}")
            return
        result.statuses[response.status_code] += 1
        if response.status_code not in kind.statuses and len(result.unexpected) < 20:
            result.unexpected.append(f"{kind.name}: got {response.status_code} ({response.text[:200]})")

    def run(self, count: int) -> None:
        weights = [kind.weight for kind in KINDS]
        with self.client_factory() as client:
            for kind in self.random.choices(KINDS, weights, k=count):
                self.request(client, kind)


def run_mix(url: str, tokens: TokenKit, *, requests: int, clients: int = 4, limit: int,
            path: str = "/hasura/v1/graphql", addresses: Sequence[str] = (), seed: int = 1,
            timeout: float = 30.0) -> MixResult:
    """Send ``requests`` requests of every kind, spread over ``clients`` keep-alive clients in threads.

    ``limit`` is the gateway's body limit: bodies go from empty to ``limit``, and the too-large
    kinds send up to 64 KiB more. ``addresses`` are ``X-Forwarded-For`` values given to bad-token
    requests, so that a gateway trusting that header spends several addresses' failure budgets.
    """

    def factory() -> httpx.Client:
        return httpx.Client(base_url=url, timeout=timeout, trust_env=False,
                            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))

    workers = [_Worker(url, path, tokens, limit=limit, seed=seed * 1000 + index, addresses=addresses,
                       client_factory=factory) for index in range(clients)]
    share, extra = divmod(requests, clients)
    threads = [threading.Thread(target=worker.run, args=(share + (1 if index < extra else 0),), daemon=True)
               for index, worker in enumerate(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = MixResult()
    for worker in workers:
        total.merge(worker.result)
    return total


def run_single_client_malformed(url: str, *, requests: int = 3_000, body_bytes: int = 20_000,
                                path: str = "/hasura/v1/graphql", timeout: float = 30.0) -> MixResult:
    """The defect's own measurement: one ``httpx.Client``, POSTs with a 3 KB malformed bearer token
    and a ``body_bytes`` JSON body, each refused with 401 (or 429 once a failure budget is spent)."""
    result = MixResult()
    body = json_body(body_bytes)
    headers = {"authorization": "Bearer " + "x" * 3_000, "content-type": "application/json"}
    with httpx.Client(base_url=url, timeout=timeout, trust_env=False) as client:
        for _ in range(requests):
            result.requests += 1
            try:
                response = client.post(path, content=body, headers=headers)
            except httpx.TransportError as exc:
                result.transport_errors += 1
                if len(result.errors) < 20:
                    result.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            result.statuses[response.status_code] += 1
    return result


def describe(result: MixResult) -> str:
    """A multi-line failure message: the summary, the first errors and unexpected answers."""
    lines = [result.summary(), json.dumps(dict(result.by_kind), sort_keys=True)]
    lines += [f"  transport error: {line}" for line in result.errors]
    lines += [f"  unexpected: {line}" for line in result.unexpected]
    return "\n".join(lines)
