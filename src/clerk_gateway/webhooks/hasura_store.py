"""The users table on Hasura (and Nhost, which is Hasura): one guarded GraphQL mutation per write.

Every write is a single mutation, so it is atomic in Postgres and needs no read first:

* ``upsert``: ``insert_<table>_one`` with ``on_conflict`` on the primary key. The conflict's ``where`` is the guard:
  it is evaluated against the *stored* row, and when it is false Hasura updates nothing and answers ``null``, which
  is :attr:`~.store.WriteOutcome.STALE` (an older event, a duplicate, or a deleted user), not an error.
* hard ``delete``: ``delete_<table>_by_pk``; a missing row answers ``null`` and is applied all the same.
* soft ``delete``: an upsert of a *tombstone* (the id and the deletion time), so a ``user.created`` or
  ``user.updated`` that arrives late, or before the row ever existed, finds it and is refused by the guard.

The documents depend only on the settings, so each is built once per store; values only ever travel as GraphQL
variables. The requests carry the admin secret and no ``x-hasura-role``: the sync is the backend's owner, not a
user, and must not depend on the table's role permissions.

What a failed write may say about itself is decided in :mod:`.backend_http`, shared with the Fauna store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from clerk_gateway.settings.user_sync import UserSyncSettings

from .backend_http import iso_utc, post_json, reason_word, safe_message
from .records import UserRecord
from .store import SyncUnavailable, WriteOutcome

__all__ = ["HasuraDocuments", "HasuraUserStore", "build_documents"]

# -- the mutations ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HasuraDocuments:
    """The two mutations a store sends, and the root fields whose answers it reads."""

    upsert: str
    upsert_field: str
    delete: str
    delete_field: str
    #: Whether the upsert's ``on_conflict`` has a ``where``: only then does a ``null`` answer mean "refused".
    guarded: bool


def _guard(sync: UserSyncSettings) -> str | None:
    """The upsert's ``where``, evaluated against the stored row.

    A stored version that is NULL (a row the app created itself, or one from before the version column was added)
    counts as older than any event, so that such rows are filled in rather than refused forever."""
    conditions: list[str] = []
    if sync.version_column:
        column = sync.version_column
        conditions.append(f"{{_or: [{{{column}: {{_is_null: true}}}}, {{{column}: {{_lt: $version}}}}]}}")
    if sync.delete == "soft" and sync.deleted_column:
        conditions.append(f"{{{sync.deleted_column}: {{_is_null: true}}}}")
    if not conditions:
        return None
    return conditions[0] if len(conditions) == 1 else f"{{_and: [{', '.join(conditions)}]}}"


def _on_conflict(sync: UserSyncSettings, update_columns: list[str], where: str | None) -> str:
    parts = [f"constraint: {sync.constraint_name}", f"update_columns: [{', '.join(update_columns)}]"]
    if where is not None:
        parts.append(f"where: {where}")
    return "{" + ", ".join(parts) + "}"


def build_documents(sync: UserSyncSettings) -> HasuraDocuments:
    """The upsert and delete mutations for ``sync`` (every name in them was validated as a plain GraphQL name)."""
    table, id_column = sync.table, sync.id_column
    insert_field, delete_field = f"insert_{table}_one", f"delete_{table}_by_pk"
    update_columns = [column for column in sync.columns if column != id_column]
    if sync.version_column:
        update_columns.append(sync.version_column)
    guard = _guard(sync)
    version_variable = ", $version: bigint!" if sync.version_column else ""
    upsert = (f"mutation ClerkUserUpsert($object: {table}_insert_input!{version_variable}) {{\n"
              f"  {insert_field}(object: $object, on_conflict: {_on_conflict(sync, update_columns, guard)}) {{\n"
              f"    {id_column}\n  }}\n}}")
    if sync.delete == "soft" and sync.deleted_column:
        deleted = sync.deleted_column
        tombstone = _on_conflict(sync, [deleted], f"{{{deleted}: {{_is_null: true}}}}")
        delete = (f"mutation ClerkUserTombstone($object: {table}_insert_input!) {{\n"
                  f"  {insert_field}(object: $object, on_conflict: {tombstone}) {{\n"
                  f"    {id_column}\n  }}\n}}")
        delete_root = insert_field
    else:
        delete = (f"mutation ClerkUserDelete($id: String!) {{\n"
                  f"  {delete_field}({id_column}: $id) {{\n"
                  f"    {id_column}\n  }}\n}}")
        delete_root = delete_field
    return HasuraDocuments(upsert=upsert, upsert_field=insert_field, delete=delete, delete_field=delete_root,
                           guarded=guard is not None)


# -- the store -------------------------------------------------------------------------------------------------------


class HasuraUserStore:
    """:class:`~.store.UserStore` on a Hasura (or Nhost) GraphQL endpoint, as its admin.

    The HTTP client belongs to the caller (the runtime shares one), so :meth:`aclose` leaves it open."""

    def __init__(self, graphql_url: str, admin_secret: str, sync: UserSyncSettings,
                 client: httpx.AsyncClient) -> None:
        self._url = graphql_url
        self._secret = admin_secret
        self._sync = sync
        self._client = client
        # No x-hasura-role: with a valid admin secret Hasura then runs the request as admin (REFERENCE §2.3).
        self._headers = {"x-hasura-admin-secret": admin_secret, "content-type": "application/json"}
        self.documents = build_documents(sync)

    async def upsert(self, user: UserRecord) -> WriteOutcome:
        row_values = dict(user.values)
        variables: dict[str, Any] = {"object": row_values}
        if self._sync.version_column:
            row_values[self._sync.version_column] = user.version_ms
            variables["version"] = user.version_ms
        row = await self._run(self.documents.upsert, variables, self.documents.upsert_field)
        if row is None and self.documents.guarded:
            return WriteOutcome.STALE
        # Unguarded, a null can only be "update_columns: []" on an existing row (only the id is mapped): nothing
        # to change, so the row is as the event says.
        return WriteOutcome.APPLIED

    async def delete(self, user_id: str, version_ms: int) -> WriteOutcome:
        sync = self._sync
        variables: dict[str, Any]
        if sync.delete == "soft" and sync.deleted_column:
            tombstone: dict[str, Any] = {sync.id_column: user_id, sync.deleted_column: iso_utc(version_ms)}
            if sync.version_column:
                tombstone[sync.version_column] = version_ms
            variables = {"object": tombstone}
        else:
            variables = {"id": user_id}
        # A null answer is a row that was not there (hard) or was already deleted (soft): applied either way.
        await self._run(self.documents.delete, variables, self.documents.delete_field)
        return WriteOutcome.APPLIED

    async def aclose(self) -> None:
        """Nothing to release: the client is the caller's."""

    async def _run(self, document: str, variables: dict[str, Any], field: str) -> dict[str, Any] | None:
        """Send one mutation; the root field's value (a row, or ``None``), or :class:`SyncUnavailable`."""
        response = await post_json(self._client, self._url, {"query": document, "variables": variables},
                                   headers=self._headers, timeout=self._sync.timeout_seconds,
                                   what="the GraphQL endpoint")
        if response.status_code != 200:
            raise SyncUnavailable(f"backend-http-{response.status_code}",
                                  f"the GraphQL endpoint answered HTTP {response.status_code}")
        try:
            answer = response.json()
        except ValueError:
            raise SyncUnavailable("backend-invalid-answer", "the GraphQL endpoint's answer is not JSON") from None
        if not isinstance(answer, dict):
            raise SyncUnavailable("backend-invalid-answer", "the GraphQL endpoint's answer is not a JSON object")
        errors = answer.get("errors")
        if errors:
            raise self._refused(errors, variables)
        data = answer.get("data")
        if not isinstance(data, dict) or field not in data:
            raise SyncUnavailable("backend-invalid-answer", f"the GraphQL answer has no data.{field}")
        value = data[field]
        if value is not None and not isinstance(value, dict):
            raise SyncUnavailable("backend-invalid-answer", f"data.{field} is neither a row nor null")
        return value

    def _refused(self, errors: object, variables: dict[str, Any]) -> SyncUnavailable:
        """Hasura's ``errors`` (HTTP 200) as a retryable failure: the first error's code and message. Only
        ``message`` is read; ``extensions.internal`` (admin answers) quotes the SQL arguments, i.e. user data."""
        first = errors[0] if isinstance(errors, list) and errors else errors
        code: object = None
        message: object = None
        if isinstance(first, dict):
            extensions = first.get("extensions")
            code = extensions.get("code") if isinstance(extensions, dict) else None
            message = first.get("message")
        text = safe_message(message, variables, secrets=(self._secret,))
        return SyncUnavailable(reason_word(code, "graphql-error"),
                               f"Hasura refused the write: {text}" if text else "Hasura refused the write")
