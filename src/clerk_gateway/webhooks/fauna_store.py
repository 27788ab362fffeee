"""The users collection on Fauna: one FQL v10 query per write, with the same guard as the Hasura upsert.

Clerk ids (``user_…``) are not Fauna document ids, so each user is the document whose ``clerk_id`` field holds the
id, found through the index ``byClerkId`` (a unique constraint on ``.clerk_id`` keeps it to one). Every write reads
and writes in one query, and a Fauna query is one strictly serializable transaction, so the check ("is the stored
version older? is the user deleted?") and the write cannot be split by a concurrent delivery; two concurrent
creates meet the unique constraint, and the loser's 400 ``constraint_failure`` is retried by Svix and then updates.

The query texts depend only on the settings (the collection and field names, validated here), so they are built
once per store; every value travels in ``arguments``, in Fauna's tagged format (``X-Format: tagged``: numbers are
``@int`` / ``@long`` / ``@double``, instants ``@time``, objects with ``@`` keys ``@object``). The queries run with
``X-Typecheck: false`` so that they do not depend on how far the collection's schema declares its fields.

The collection the user must create (FSL; ``clerk_id`` is fixed, the other fields are whatever ``columns`` maps)::

    collection users {
      unique [.clerk_id]
      index byClerkId {
        terms [.clerk_id]
      }
    }
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from clerk_gateway.settings.user_sync import UserSyncSettings

from .backend_http import iso_utc, post_json, reason_word, safe_message
from .records import UserRecord
from .store import SyncUnavailable, WriteOutcome

__all__ = ["CLERK_ID_FIELD", "CLERK_ID_INDEX", "FaunaQueries", "FaunaUserStore", "build_queries", "tagged"]

#: The field holding the Clerk user id, and the index that finds a document by it.
CLERK_ID_FIELD = "clerk_id"
CLERK_ID_INDEX = "byClerkId"
#: Names Fauna keeps for itself on a document (fauna/faunadb ``Tokens.ReservedFieldNames``, and ``ttl``).
RESERVED_FIELDS = frozenset({"id", "coll", "ts", "data", "ttl", "delete", "update", "replace", "updateData",
                             "replaceData", "exists"})
#: Words FQL does not accept as identifiers: a field read in the query text (``doc!.<field>``) cannot be one.
FQL_KEYWORDS = frozenset({"if", "else", "at", "match", "case", "let", "null", "true", "false", "isa", "join", "on",
                          "of", "FQL"})
_INT32 = range(-(2**31), 2**31)
_INT64 = range(-(2**63), 2**63)
_OUTCOMES = {"applied": WriteOutcome.APPLIED, "stale": WriteOutcome.STALE}


@dataclass(frozen=True, slots=True)
class Instant:
    """A moment to send as Fauna's ``@time`` (a plain string would be stored as a string)."""

    ms: int


def tagged(value: Any) -> Any:
    """``value`` in Fauna's tagged format, the one ``arguments`` are read in under ``X-Format: tagged``."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, Instant):
        return {"@time": iso_utc(value.ms)}
    if isinstance(value, int):
        if value in _INT32:
            return {"@int": str(value)}
        return {"@long": str(value)} if value in _INT64 else {"@double": str(float(value))}
    if isinstance(value, float):
        return {"@double": repr(value)}
    if isinstance(value, Mapping):
        inner = {str(key): tagged(item) for key, item in value.items()}
        # An object whose keys look like tags must be wrapped, or Fauna would read it as a (bad) tagged value.
        return {"@object": inner} if any(key.startswith("@") for key in inner) else inner
    if isinstance(value, list | tuple):
        return [tagged(item) for item in value]
    raise TypeError(f"cannot send a {type(value).__name__} to Fauna")


@dataclass(frozen=True, slots=True)
class FaunaQueries:
    upsert: str
    delete: str


def _check_names(sync: UserSyncSettings) -> None:
    """Refuse settings Fauna would refuse at the first write (a 400 loop), at start instead."""
    if sync.collection in FQL_KEYWORDS:
        raise ValueError(f"GATEWAY_USER_SYNC collection '{sync.collection}' is an FQL keyword")
    for column, source in sync.columns.items():
        if source == "id":
            continue  # stored as clerk_id, whatever the column is called
        if column in RESERVED_FIELDS:
            raise ValueError(f"GATEWAY_USER_SYNC column '{column}' is a field name Fauna reserves")
        if column == CLERK_ID_FIELD:
            raise ValueError(f"GATEWAY_USER_SYNC column '{CLERK_ID_FIELD}' holds the Clerk id in Fauna; map it "
                             "from 'id' or choose another name")
    for extra in (sync.version_column, sync.deleted_column):
        if extra is not None and (extra in RESERVED_FIELDS or extra in FQL_KEYWORDS or extra == CLERK_ID_FIELD):
            raise ValueError(f"GATEWAY_USER_SYNC field '{extra}' cannot be used on Fauna (reserved or a keyword)")


def build_queries(sync: UserSyncSettings) -> FaunaQueries:
    """The FQL of the upsert and of the delete (hard, or the soft tombstone) for ``sync``.

    Arguments: ``clerkId`` (string); upsert: ``fields`` (the document: ``clerk_id``, the mapped columns, the version)
    and ``version`` (``@long``) when a version field is set; soft delete: ``tombstone`` (``clerk_id``, the deleted
    field, the version) and ``mark`` (the deleted field only)."""
    _check_names(sync)
    coll = sync.collection
    find = f"let doc = {coll}.{CLERK_ID_INDEX}(clerkId).first()\n"
    refusals = ""
    if sync.delete == "soft" and sync.deleted_column:
        refusals += f'}} else if (doc!.{sync.deleted_column} != null) {{\n  "stale"\n'
    if sync.version_column:
        version = sync.version_column
        refusals += f'}} else if (doc!.{version} != null && doc!.{version} >= version) {{\n  "stale"\n'
    upsert = (f"{find}"
              f"if (doc == null) {{\n  {coll}.create(fields)\n  \"applied\"\n"
              f"{refusals}"
              f"}} else {{\n  doc!.update(fields)\n  \"applied\"\n}}")
    if sync.delete == "soft" and sync.deleted_column:
        delete = (f"{find}"
                  f"if (doc == null) {{\n  {coll}.create(tombstone)\n"
                  f"}} else if (doc!.{sync.deleted_column} == null) {{\n  doc!.update(mark)\n}}\n"
                  f"\"applied\"")
    else:
        delete = f"{find}if (doc != null) {{\n  doc!.delete()\n}}\n\"applied\""
    return FaunaQueries(upsert=upsert, delete=delete)


class FaunaUserStore:
    """:class:`~.store.UserStore` on Fauna's ``POST /query/1`` with a key (role ``server``) of the database.

    The HTTP client belongs to the caller, so :meth:`aclose` leaves it open."""

    def __init__(self, query_url: str, secret: str, sync: UserSyncSettings, client: httpx.AsyncClient) -> None:
        self._url = query_url
        self._secret = secret
        self._sync = sync
        self._client = client
        self.queries = build_queries(sync)
        self._headers = {
            "authorization": f"Bearer {secret}",
            "content-type": "application/json",
            "x-format": "tagged",
            "x-typecheck": "false",
            # Fauna stops the query itself once we stop waiting, so a late commit is unlikely, not merely unseen.
            "x-query-timeout-ms": str(int(sync.timeout_seconds * 1000)),
        }

    async def upsert(self, user: UserRecord) -> WriteOutcome:
        sync = self._sync
        fields: dict[str, Any] = {CLERK_ID_FIELD: user.user_id}
        fields.update((column, value) for column, value in user.values.items() if column != sync.id_column)
        arguments: dict[str, Any] = {"clerkId": user.user_id, "fields": fields}
        if sync.version_column:
            fields[sync.version_column] = user.version_ms
            arguments["version"] = user.version_ms
        return await self._run(self.queries.upsert, arguments)

    async def delete(self, user_id: str, version_ms: int) -> WriteOutcome:
        sync = self._sync
        arguments: dict[str, Any] = {"clerkId": user_id}
        if sync.delete == "soft" and sync.deleted_column:
            tombstone: dict[str, Any] = {CLERK_ID_FIELD: user_id, sync.deleted_column: Instant(version_ms)}
            if sync.version_column:
                tombstone[sync.version_column] = version_ms
            arguments["tombstone"] = tombstone
            arguments["mark"] = {sync.deleted_column: Instant(version_ms)}
        await self._run(self.queries.delete, arguments)
        return WriteOutcome.APPLIED

    async def aclose(self) -> None:
        """Nothing to release: the client is the caller's."""

    async def _run(self, query: str, arguments: dict[str, Any]) -> WriteOutcome:
        body = {"query": query, "arguments": tagged(arguments)}
        response = await post_json(self._client, self._url, body, headers=self._headers,
                                   timeout=self._sync.timeout_seconds, what="Fauna")
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code != 200:
            raise self._refused(response.status_code, answer, arguments)
        data = answer.get("data") if isinstance(answer, dict) else None
        outcome = _OUTCOMES.get(data) if isinstance(data, str) else None
        if outcome is None:
            raise SyncUnavailable("backend-invalid-answer", "Fauna's answer is not JSON with the query's outcome")
        return outcome

    def _refused(self, status: int, answer: object, arguments: dict[str, Any]) -> SyncUnavailable:
        """Fauna's ``{"error": {"code", "message"}}`` as a retryable failure (query errors are all 400s; protocol
        errors have their own statuses). ``summary`` is not read: it quotes the query around the failure."""
        error = answer.get("error") if isinstance(answer, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        text = safe_message(message, arguments, secrets=(self._secret,))
        reason = reason_word(code, f"backend-http-{status}")
        return SyncUnavailable(reason, f"Fauna refused the write (HTTP {status}): {text}" if text
                               else f"Fauna answered HTTP {status}")
