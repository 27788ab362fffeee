"""A Hasura stand-in on 127.0.0.1 for the user sync: ``insert_<table>_one`` and ``delete_<table>_by_pk``
on one in-memory table, recording every mutation.

It evaluates what the sync sends the way Hasura does, so a test sees the sync's real documents work:

* the document is parsed (graphql-core) and its arguments resolved with the request's variables;
* ``insert_<table>_one(object:, on_conflict: {constraint, update_columns, where})`` inserts a new row,
  or, on a primary-key conflict, updates only ``update_columns`` and only when ``where`` holds for the
  *stored* row; otherwise it answers ``null`` (REFERENCE §8.6). Without ``on_conflict`` a conflict is
  Hasura's ``constraint-violation`` error. ``where`` supports ``_and``/``_or``/``_not`` and the
  comparison operators ``_eq _neq _lt _lte _gt _gte _in _is_null`` (a comparison with NULL is false,
  as in Postgres);
* ``delete_<table>_by_pk(<pk>:)`` answers the deleted row, or ``null``;
* the answer carries the selected columns of the row; every error is HTTP 200 with ``errors`` (as on
  ``/v1/graphql``), and a request without the right ``x-hasura-admin-secret`` is Hasura's
  ``access-denied``.

Not a GraphQL server: no schema, no types, no queries; anything else is a ``validation-failed`` error.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from graphql import FieldNode, GraphQLError, OperationDefinitionNode, parse, value_from_ast_untyped

from .ports import BackgroundServer

__all__ = ["HasuraRecorder", "RecordedMutation"]


@dataclass(frozen=True, slots=True)
class RecordedMutation:
    """One root field of one request, as the stand-in resolved it."""

    field: str
    arguments: dict[str, Any]
    admin_secret: str | None
    role: str | None
    #: ``None``: answered ``null`` (the guard refused, or nothing to delete); else the answered row
    result: dict[str, Any] | None
    error: str | None = None


class _Refusal(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


_COMPARISONS = {
    "_eq": lambda stored, value: stored == value,
    "_neq": lambda stored, value: stored != value,
    "_lt": lambda stored, value: stored < value,
    "_lte": lambda stored, value: stored <= value,
    "_gt": lambda stored, value: stored > value,
    "_gte": lambda stored, value: stored >= value,
    "_in": lambda stored, value: stored in value,
}


def matches(row: Mapping[str, Any], condition: Mapping[str, Any]) -> bool:
    """Whether a Hasura boolean expression holds for ``row``."""
    for key, value in condition.items():
        if key == "_and":
            ok = all(matches(row, part) for part in value)
        elif key == "_or":
            ok = any(matches(row, part) for part in value)
        elif key == "_not":
            ok = not matches(row, value)
        else:
            ok = _column_matches(row.get(key), value)
        if not ok:
            return False
    return True


def _column_matches(stored: Any, operators: Mapping[str, Any]) -> bool:
    for operator, value in operators.items():
        if operator == "_is_null":
            ok = (stored is None) == bool(value)
        elif operator in _COMPARISONS:
            ok = stored is not None and value is not None and _COMPARISONS[operator](stored, value)
        else:
            raise _Refusal("validation-failed", f"the stand-in does not know the operator {operator}")
        if not ok:
            return False
    return True


class HasuraRecorder(BackgroundServer):
    """``POST /v1/graphql`` over the table ``table`` keyed by ``primary_key``, as its admin only."""

    def __init__(self, *, admin_secret: str, table: str = "users", primary_key: str = "id",
                 port: int | None = None) -> None:
        super().__init__(self._build_app, port=port)
        self.admin_secret = admin_secret
        self.table = table
        self.primary_key = primary_key
        self._lock = threading.Lock()
        self._rows: dict[str, dict[str, Any]] = {}
        self._mutations: list[RecordedMutation] = []

    @property
    def url(self) -> str:
        """The backend ``url`` (Hasura's base URL; the GraphQL endpoint is ``/v1/graphql`` below it)."""
        return self.base_url

    @property
    def rows(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {key: dict(row) for key, row in self._rows.items()}

    @property
    def mutations(self) -> list[RecordedMutation]:
        with self._lock:
            return list(self._mutations)

    def put_row(self, row: Mapping[str, Any]) -> None:
        """A row the table already holds (written by a webhook, or by the app itself)."""
        with self._lock:
            self._rows[str(row[self.primary_key])] = dict(row)

    def reset(self) -> None:
        with self._lock:
            self._rows.clear()
            self._mutations.clear()

    # -- the server -------------------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/graphql", self._graphql)
        app.router.add_get("/healthz", self._healthz)
        return app

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def _graphql(self, request: web.Request) -> web.Response:
        secret, role = request.headers.get("x-hasura-admin-secret"), request.headers.get("x-hasura-role")
        if secret != self.admin_secret:
            return _errors("access-denied", "invalid x-hasura-admin-secret/x-hasura-access-key")
        try:
            body = await request.json()
            document = parse(body["query"])
        except (ValueError, KeyError, TypeError, GraphQLError) as exc:
            return _errors("validation-failed", f"not a GraphQL request ({type(exc).__name__})")
        variables = body.get("variables") or {}
        operations = [node for node in document.definitions if isinstance(node, OperationDefinitionNode)]
        if len(operations) != 1 or operations[0].operation.value != "mutation":
            return _errors("validation-failed", "the stand-in runs exactly one mutation per request")
        data: dict[str, Any] = {}
        with self._lock:  # one request is one transaction, as in Hasura
            for selection in operations[0].selection_set.selections:
                if not isinstance(selection, FieldNode):
                    return _errors("validation-failed", "fragments are not supported by the stand-in")
                name = selection.name.value
                arguments = {arg.name.value: value_from_ast_untyped(arg.value, variables)
                             for arg in selection.arguments}
                try:
                    row = self._run(name, arguments)
                except _Refusal as refusal:
                    self._mutations.append(RecordedMutation(name, arguments, secret, role, None, refusal.code))
                    return _errors(refusal.code, str(refusal))
                self._mutations.append(RecordedMutation(name, arguments, secret, role, row))
                key = selection.alias.value if selection.alias else name
                data[key] = None if row is None else _select(row, selection)
        return web.json_response({"data": data})

    def _run(self, field: str, arguments: Mapping[str, Any]) -> dict[str, Any] | None:
        if field == f"insert_{self.table}_one":
            return self._insert(arguments)
        if field == f"delete_{self.table}_by_pk":
            key = arguments.get(self.primary_key)
            row = self._rows.pop(str(key), None)
            return dict(row) if row is not None else None
        raise _Refusal("validation-failed", f"field '{field}' not found in type: 'mutation_root'")

    def _insert(self, arguments: Mapping[str, Any]) -> dict[str, Any] | None:
        new = dict(arguments.get("object") or {})
        if self.primary_key not in new:
            raise _Refusal("constraint-violation", f'Not-NULL violation. null value in column "{self.primary_key}"')
        key = str(new[self.primary_key])
        stored = self._rows.get(key)
        if stored is None:
            self._rows[key] = new
            return dict(new)
        conflict = arguments.get("on_conflict")
        if conflict is None:
            raise _Refusal("constraint-violation", "Uniqueness violation. duplicate key value violates unique "
                           f'constraint "{self.table}_pkey"')
        if conflict.get("constraint") != f"{self.table}_pkey":
            raise _Refusal("validation-failed", f"unexpected constraint {conflict.get('constraint')}")
        where = conflict.get("where")
        if where is not None and not matches(stored, where):
            return None
        for column in conflict.get("update_columns") or []:
            if column in new:
                stored[column] = new[column]
        return dict(stored)


def _select(row: Mapping[str, Any], field: FieldNode) -> dict[str, Any]:
    if field.selection_set is None:
        return dict(row)
    return {sub.name.value: row.get(sub.name.value) for sub in field.selection_set.selections
            if isinstance(sub, FieldNode)}


def _errors(code: str, message: str) -> web.Response:
    return web.json_response({"errors": [{"extensions": {"path": "$", "code": code}, "message": message}]})
