"""A Hasura stand-in on 127.0.0.1 that runs the user sync's GraphQL as real SQL on a real Postgres.

No Hasura runs on these machines (no container engine), and a double that merely records would only prove what the
store *sends*. This one proves what the writes *do*: ``on_conflict`` guards, tombstones, unique constraints and
column types are Postgres's own, because each mutation becomes the ``INSERT … ON CONFLICT ON CONSTRAINT … DO UPDATE
SET … WHERE …`` that Hasura generates for it, and a test reads the rows back with SQL.

What it serves, on ``POST /v1/graphql`` (Hasura's transport: every answer is HTTP 200, ``{"data": …}`` or
``{"errors": [{"message", "extensions": {"path", "code", "internal"?}}]}``):

* a GraphQL schema built from the ``public`` tables on every request (so a test may alter its tables at any time),
  with Hasura's names: ``<t>``, ``<t>_by_pk``, ``insert_<t>_one(object, on_conflict: {constraint,
  update_columns, where})``, ``delete_<t>_by_pk``, ``<t>_insert_input``, ``<t>_bool_exp`` (``_and`` / ``_or`` /
  ``_not`` and ``_eq`` ``_neq`` ``_lt`` ``_lte`` ``_gt`` ``_gte`` ``_in`` ``_nin`` ``_is_null``), the
  ``<t>_constraint`` and ``<t>_update_column`` enums, ``bigint`` / ``timestamptz`` / ``jsonb`` scalars. Documents and
  variables are validated against it with graphql-core, so a misspelt column or constraint is refused
  (``validation-failed``) as Hasura would;
* ``x-hasura-admin-secret`` is required and checked (``access-denied``); a request that also sends an
  ``x-hasura-role`` other than ``admin`` sees no root fields (Hasura's answer for a role without permissions);
* the root fields of one mutation run in one transaction; a rejected ``on_conflict`` update answers ``null``;
* Postgres errors come back as Hasura maps them (REFERENCE §8.6): 23505 → ``constraint-violation``, message
  ``Uniqueness violation. duplicate key value violates unique constraint "<name>"``, with an admin-only
  ``extensions.internal`` that, like Hasura's, quotes the failing values (a store must never read it).

Switches for failure tests: :meth:`fail_with_status`, :meth:`fail_with_errors`, :meth:`answer_not_json`,
:meth:`hang`, each for the next ``times`` requests (``None``: until :meth:`reset`). Every request is recorded.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import graphql
import psycopg
from aiohttp import web
from graphql.execution.values import get_argument_values, get_variable_values
from psycopg import sql

from .ports import BackgroundServer
from .postgres import PostgresServer
from .upstream import RecordedRequest

__all__ = ["DEFAULT_ADMIN_SECRET", "GRAPHQL_PATH", "PgGraphQL"]

GRAPHQL_PATH = "/v1/graphql"
DEFAULT_ADMIN_SECRET = "pg-graphql-admin-secret"

#: Postgres type (``udt_name``) → Hasura's GraphQL scalar; anything else keeps its Postgres name as a scalar.
_SCALARS = {"text": "String", "varchar": "String", "bpchar": "String", "name": "String", "int4": "Int",
            "int2": "Int", "bool": "Boolean", "float4": "Float", "int8": "bigint"}
_BUILT_IN = {"String", "Int", "Boolean", "Float", "ID"}
_NAME = re.compile(r"^[_A-Za-z][_0-9A-Za-z]*$")
_COMPARISONS = {"_eq": "=", "_neq": "<>", "_lt": "<", "_lte": "<=", "_gt": ">", "_gte": ">="}
#: SQLSTATE → (extensions.code, message prefix), as Hasura's mkTxErrorHandler maps them.
_POSTGRES_ERRORS = {
    "23505": ("constraint-violation", "Uniqueness violation. "),
    "23503": ("constraint-violation", "Foreign key violation. "),
    "23502": ("constraint-violation", "Not-NULL violation. "),
    "23001": ("constraint-violation", "Can not delete or update due to data being referred. "),
    "23514": ("permission-error", "Check constraint violation. "),
}

_COLUMNS_SQL = """
SELECT c.table_name, c.column_name, c.udt_name, c.is_nullable = 'YES'
FROM information_schema.columns c
JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
ORDER BY c.table_name, c.ordinal_position
"""
_CONSTRAINTS_SQL = """
SELECT rel.relname, con.conname, con.contype = 'p', array_agg(att.attname::text ORDER BY k.ord)
FROM pg_constraint con
JOIN pg_class rel ON rel.oid = con.conrelid
JOIN pg_namespace ns ON ns.oid = rel.relnamespace
CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute att ON att.attrelid = rel.oid AND att.attnum = k.attnum
WHERE ns.nspname = 'public' AND con.contype IN ('p', 'u')
GROUP BY rel.relname, con.conname, con.contype
ORDER BY rel.relname, con.conname
"""


@dataclass(frozen=True, slots=True)
class _Column:
    name: str
    udt: str
    nullable: bool


@dataclass(slots=True)
class _Table:
    name: str
    columns: dict[str, _Column] = field(default_factory=dict)
    #: unique and primary-key constraints: name → columns
    constraints: dict[str, tuple[str, ...]] = field(default_factory=dict)
    primary_key: tuple[str, ...] = ()


class _Refusal(Exception):
    """One Hasura error: ``{"message", "extensions": {"path", "code", "internal"?}}``."""

    def __init__(self, code: str, message: str, *, path: str = "$", internal: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.path, self.internal = code, message, path, internal

    def body(self) -> dict[str, Any]:
        extensions: dict[str, Any] = {"path": self.path, "code": self.code}
        if self.internal is not None:
            extensions["internal"] = self.internal
        return {"errors": [{"message": self.message, "extensions": extensions}]}


@dataclass(slots=True)
class _Failure:
    kind: Literal["status", "errors", "not-json", "hang"]
    remaining: int | None
    status: int = 500
    code: str = "unexpected"
    message: str = "database query error"


class PgGraphQL(BackgroundServer):
    """The double; ``dsn`` is the Postgres database it writes to (a test may point it at another)."""

    def __init__(self, dsn: str, *, admin_secret: str = DEFAULT_ADMIN_SECRET, port: int | None = None,
                 hang_seconds: float = 30.0) -> None:
        super().__init__(self._build_app, port=port)
        self.dsn = dsn
        self.admin_secret = admin_secret
        self.hang_seconds = hang_seconds
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._failure: _Failure | None = None

    # -- what tests read and set ----------------------------------------------------------------------------------

    @property
    def graphql_url(self) -> str:
        return self.base_url + GRAPHQL_PATH

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies received, in order."""
        return [json.loads(request.body) for request in self.requests]

    def fail_with_status(self, status: int = 500, *, times: int | None = 1) -> None:
        """Answer HTTP ``status`` with a plain-text body, as a proxy in front of Hasura would."""
        self._set(_Failure("status", times, status=status))

    def fail_with_errors(self, code: str = "unexpected", message: str = "database query error", *,
                         times: int | None = 1) -> None:
        """Answer HTTP 200 ``{"errors": [{"message", "extensions": {"code"}}]}`` without touching Postgres."""
        self._set(_Failure("errors", times, code=code, message=message))

    def answer_not_json(self, *, times: int | None = 1) -> None:
        """Answer HTTP 200 with an HTML body (a captive portal, a misrouted load balancer)."""
        self._set(_Failure("not-json", times))

    def hang(self, *, times: int | None = 1) -> None:
        """Accept the request and answer nothing for :attr:`hang_seconds` (or until the client goes away)."""
        self._set(_Failure("hang", times))

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._failure = None

    def _set(self, failure: _Failure) -> None:
        with self._lock:
            self._failure = failure

    def _take_failure(self) -> _Failure | None:
        with self._lock:
            failure = self._failure
            if failure is not None and failure.remaining is not None:
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failure = None
            return failure

    # -- the server -----------------------------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(GRAPHQL_PATH, self._graphql)
        return app

    async def _graphql(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        with self._lock:
            self._requests.append(RecordedRequest(
                method=request.method, path=request.path, query=request.query_string,
                headers=tuple((name.decode("latin-1").lower(), value.decode("latin-1"))
                              for name, value in request.raw_headers),
                body=body))
        failure = self._take_failure()
        if failure is not None:
            return await self._fail(failure)
        try:
            data = await self._answer(request, body)
        except _Refusal as refusal:
            return web.json_response(refusal.body())
        return web.json_response({"data": data})

    async def _fail(self, failure: _Failure) -> web.StreamResponse:
        if failure.kind == "status":
            return web.Response(status=failure.status, text=f"upstream failed ({failure.status})")
        if failure.kind == "errors":
            return web.json_response(_Refusal(failure.code, failure.message).body())
        if failure.kind == "not-json":
            return web.Response(text="<html><body>Bad gateway</body></html>", content_type="text/html")
        await asyncio.sleep(self.hang_seconds)
        return web.Response(status=504, text="hung")

    async def _answer(self, request: web.Request, body: bytes) -> dict[str, Any]:
        secret = request.headers.get("x-hasura-admin-secret")
        if secret is None:
            raise _Refusal("access-denied", "x-hasura-admin-secret/x-hasura-access-key required, but not found")
        if secret != self.admin_secret:
            raise _Refusal("access-denied", "invalid x-hasura-admin-secret/x-hasura-access-key")
        try:
            payload = json.loads(body)
        except ValueError:
            raise _Refusal("invalid-json", "invalid json", path="$") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            raise _Refusal("parse-failed", "the key 'query' was not present", path="$")
        variables = payload.get("variables") or {}
        if not isinstance(variables, dict):
            raise _Refusal("parse-failed", "variables must be an object", path="$.variables")
        role = request.headers.get("x-hasura-role")
        return await self._execute(payload["query"], variables, payload.get("operationName"), role)

    async def _execute(self, text: str, variables: dict[str, Any], operation_name: str | None,
                       role: str | None) -> dict[str, Any]:
        try:
            document = graphql.parse(text)
        except graphql.GraphQLError:
            raise _Refusal("validation-failed", "not a valid graphql query", path="$.query") from None
        try:
            connection = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True, connect_timeout=5)
        except psycopg.Error:
            raise _Refusal("unexpected", "database query error") from None
        async with connection:
            tables = await _load_tables(connection)
            schema = graphql.build_schema(_schema_sdl(tables))
            errors = graphql.validate(schema, document)
            if errors:
                raise _Refusal("validation-failed", errors[0].message, path="$.selectionSet")
            operation = graphql.get_operation_ast(document, operation_name)
            if operation is None:
                raise _Refusal("validation-failed", "exactly one operation has to be present", path="$")
            root = schema.mutation_type if operation.operation == graphql.OperationType.MUTATION \
                else schema.query_type
            assert root is not None
            fields = [node for node in operation.selection_set.selections if isinstance(node, graphql.FieldNode)]
            if len(fields) != len(operation.selection_set.selections):
                raise _Refusal("validation-failed", "fragments are not supported by this double")
            if role is not None and role != "admin":
                raise _Refusal("validation-failed", f"field '{fields[0].name.value}' not found in type: "
                               f"'{root.name}'", path="$.selectionSet")
            coerced = get_variable_values(schema, operation.variable_definitions or [], variables)
            if isinstance(coerced, list):
                raise _Refusal("validation-failed", coerced[0].message, path="$.variableValues")
            result: dict[str, Any] = {}
            try:
                async with connection.transaction():
                    for node in fields:
                        key = node.alias.value if node.alias else node.name.value
                        if node.name.value == "__typename":
                            result[key] = root.name
                            continue
                        arguments = get_argument_values(root.fields[node.name.value], node, coerced)
                        result[key] = await _run_field(connection, tables, node, arguments)
            except psycopg.Error as error:
                raise _postgres_refusal(error) from None
            return result


# -- the catalog, as a GraphQL schema --------------------------------------------------------------------------------


async def _load_tables(connection: psycopg.AsyncConnection[Any]) -> dict[str, _Table]:
    tables: dict[str, _Table] = {}
    async with connection.cursor() as cursor:
        await cursor.execute(_COLUMNS_SQL)
        for table, column, udt, nullable in await cursor.fetchall():
            if _NAME.match(table) and _NAME.match(column):
                tables.setdefault(table, _Table(table)).columns[column] = _Column(column, udt, bool(nullable))
        await cursor.execute(_CONSTRAINTS_SQL)
        for table, name, primary, columns in await cursor.fetchall():
            if table in tables and _NAME.match(name):
                tables[table].constraints[name] = tuple(columns)
                if primary:
                    tables[table].primary_key = tuple(columns)
    return tables


def _scalar(udt: str) -> str:
    return _SCALARS.get(udt, udt)


def _schema_sdl(tables: dict[str, _Table]) -> str:
    """Hasura's schema for ``tables``, as SDL (only the parts the sync and its tests use)."""
    parts: list[str] = ["enum order_by { asc desc }"]
    scalars: set[str] = {"String", "Boolean", "Int"}
    query_fields: list[str] = []
    mutation_fields: list[str] = []
    for table in tables.values():
        t = table.name
        columns = list(table.columns.values())
        scalars.update(_scalar(column.udt) for column in columns)
        parts.append(f"type {t} {{ " + " ".join(
            f"{c.name}: {_scalar(c.udt)}{'' if c.nullable else '!'}" for c in columns) + " }")
        parts.append(f"input {t}_insert_input {{ " + " ".join(f"{c.name}: {_scalar(c.udt)}" for c in columns) + " }")
        parts.append(f"input {t}_bool_exp {{ _and: [{t}_bool_exp!] _or: [{t}_bool_exp!] _not: {t}_bool_exp "
                     + " ".join(f"{c.name}: {_scalar(c.udt)}_comparison_exp" for c in columns) + " }")
        parts.append(f"input {t}_order_by {{ " + " ".join(f"{c.name}: order_by" for c in columns) + " }")
        parts.append(f"enum {t}_update_column {{ " + " ".join(c.name for c in columns) + " }")
        query_fields.append(f"{t}(where: {t}_bool_exp, order_by: [{t}_order_by!], limit: Int): [{t}!]!")
        on_conflict = ""
        if table.constraints:
            parts.append(f"enum {t}_constraint {{ " + " ".join(table.constraints) + " }")
            parts.append(f"input {t}_on_conflict {{ constraint: {t}_constraint! "
                         f"update_columns: [{t}_update_column!]! = [] where: {t}_bool_exp }}")
            on_conflict = f", on_conflict: {t}_on_conflict"
        mutation_fields.append(f"insert_{t}_one(object: {t}_insert_input!{on_conflict}): {t}")
        if table.primary_key:
            keys = ", ".join(f"{name}: {_scalar(table.columns[name].udt)}!" for name in table.primary_key)
            query_fields.append(f"{t}_by_pk({keys}): {t}")
            mutation_fields.append(f"delete_{t}_by_pk({keys}): {t}")
    for name in sorted(scalars):
        if name not in _BUILT_IN:
            parts.append(f"scalar {name}")
        parts.append(f"input {name}_comparison_exp {{ _eq: {name} _neq: {name} _lt: {name} _lte: {name} "
                     f"_gt: {name} _gte: {name} _in: [{name}!] _nin: [{name}!] _is_null: Boolean }}")
    parts.append("type query_root { " + (" ".join(query_fields) or "no_tables: Boolean") + " }")
    parts.append("type mutation_root { " + (" ".join(mutation_fields) or "no_tables: Boolean") + " }")
    parts.append("schema { query: query_root mutation: mutation_root }")
    return "\n".join(parts)


# -- GraphQL → SQL ---------------------------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    """A GraphQL input value as the text Postgres casts to the column's type (what Hasura's prepared args are)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _value(table: _Table, column: str, value: Any) -> sql.Composable:
    return sql.SQL("CAST({} AS {})").format(sql.Literal(_text(value)), sql.Identifier(table.columns[column].udt))


def _column(table: _Table, column: str) -> sql.Composable:
    return sql.Identifier(table.name, column)


def _where(table: _Table, expression: dict[str, Any]) -> sql.Composable:
    """A ``<t>_bool_exp`` as SQL on ``table`` (qualified, so that inside ``ON CONFLICT … WHERE`` it is the stored
    row, as in Hasura)."""
    conditions: list[sql.Composable] = []
    for key, value in expression.items():
        if key == "_and":
            conditions.append(_joined([_where(table, item) for item in value], "AND", "TRUE"))
        elif key == "_or":
            conditions.append(_joined([_where(table, item) for item in value], "OR", "FALSE"))
        elif key == "_not":
            conditions.append(sql.SQL("NOT ({})").format(_where(table, value)))
        else:
            for operator, operand in value.items():
                conditions.append(_comparison(table, key, operator, operand))
    return _joined(conditions, "AND", "TRUE")


def _comparison(table: _Table, column: str, operator: str, operand: Any) -> sql.Composable:
    target = _column(table, column)
    if operator == "_is_null":
        return sql.SQL("{} IS NULL" if operand else "{} IS NOT NULL").format(target)
    if operator in ("_in", "_nin"):
        if not operand:
            return sql.SQL("FALSE" if operator == "_in" else "TRUE")
        values = sql.SQL(", ").join(_value(table, column, item) for item in operand)
        return sql.SQL("{} IN ({})" if operator == "_in" else "{} NOT IN ({})").format(target, values)
    return sql.SQL("{} {} {}").format(target, sql.SQL(_COMPARISONS[operator]), _value(table, column, operand))


def _joined(conditions: list[sql.Composable], operator: str, empty: str) -> sql.Composable:
    if not conditions:
        return sql.SQL(empty)
    return sql.SQL("(") + sql.SQL(f" {operator} ").join(conditions) + sql.SQL(")")


def _row(table: _Table, node: graphql.FieldNode) -> sql.Composable:
    """``json_build_object(…)`` of the selected columns: the row exactly as Hasura would print it."""
    items: list[sql.Composable] = []
    for selection in node.selection_set.selections if node.selection_set else ():
        if not isinstance(selection, graphql.FieldNode):
            raise _Refusal("validation-failed", "fragments are not supported by this double")
        key = selection.alias.value if selection.alias else selection.name.value
        if selection.name.value == "__typename":
            items.append(sql.SQL("{}, {}").format(sql.Literal(key), sql.Literal(table.name)))
        else:
            items.append(sql.SQL("{}, {}").format(sql.Literal(key), _column(table, selection.name.value)))
    return sql.SQL("json_build_object({})").format(sql.SQL(", ").join(items))


def _by_pk(table: _Table, arguments: dict[str, Any]) -> sql.Composable:
    return _joined([sql.SQL("{} = {}").format(_column(table, name), _value(table, name, arguments[name]))
                    for name in table.primary_key], "AND", "TRUE")


async def _run_field(connection: psycopg.AsyncConnection[Any], tables: dict[str, _Table], node: graphql.FieldNode,
                     arguments: dict[str, Any]) -> Any:
    name = node.name.value
    if name.startswith("insert_") and name.endswith("_one") and name[7:-4] in tables:
        table = tables[name[7:-4]]
        return await _one(connection, _insert(table, node, arguments))
    if name.startswith("delete_") and name.endswith("_by_pk") and name[7:-6] in tables:
        table = tables[name[7:-6]]
        statement = sql.SQL("DELETE FROM {} WHERE {} RETURNING {}").format(
            sql.Identifier(table.name), _by_pk(table, arguments), _row(table, node))
        return await _one(connection, statement)
    if name.endswith("_by_pk") and name[:-6] in tables:
        table = tables[name[:-6]]
        statement = sql.SQL("SELECT {} FROM {} WHERE {}").format(
            _row(table, node), sql.Identifier(table.name), _by_pk(table, arguments))
        return await _one(connection, statement)
    table = tables[name]
    statement = sql.SQL("SELECT {} FROM {} WHERE {}").format(
        _row(table, node), sql.Identifier(table.name), _where(table, arguments.get("where") or {}))
    order = [sql.SQL("{} {}").format(_column(table, column), sql.SQL("DESC" if direction == "desc" else "ASC"))
             for item in arguments.get("order_by") or [] for column, direction in item.items()]
    if order:
        statement += sql.SQL(" ORDER BY ") + sql.SQL(", ").join(order)
    if arguments.get("limit") is not None:
        statement += sql.SQL(" LIMIT {}").format(sql.Literal(int(arguments["limit"])))
    async with connection.cursor() as cursor:
        await cursor.execute(statement)
        return [row[0] for row in await cursor.fetchall()]


def _insert(table: _Table, node: graphql.FieldNode, arguments: dict[str, Any]) -> sql.Composed:
    """Hasura's upsert: ``INSERT … ON CONFLICT ON CONSTRAINT c DO UPDATE SET … WHERE <guard on the stored row>``,
    or ``DO NOTHING`` for ``update_columns: []``; a row the guard kept unchanged returns nothing (``null``)."""
    row = arguments["object"]
    target = sql.Identifier(table.name)
    if row:
        statement = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            target, sql.SQL(", ").join(sql.Identifier(column) for column in row),
            sql.SQL(", ").join(_value(table, column, value) for column, value in row.items()))
    else:
        statement = sql.SQL("INSERT INTO {} DEFAULT VALUES").format(target)
    conflict = arguments.get("on_conflict")
    if conflict is not None:
        head = sql.SQL(" ON CONFLICT ON CONSTRAINT {}").format(sql.Identifier(conflict["constraint"]))
        columns = conflict.get("update_columns") or []
        if columns:
            assignments = sql.SQL(", ").join(sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c))
                                             for c in columns)
            statement += head + sql.SQL(" DO UPDATE SET ") + assignments
            if conflict.get("where"):
                statement += sql.SQL(" WHERE ") + _where(table, conflict["where"])
        else:
            statement += head + sql.SQL(" DO NOTHING")
    return statement + sql.SQL(" RETURNING ") + _row(table, node)


async def _one(connection: psycopg.AsyncConnection[Any], statement: sql.Composed) -> Any:
    async with connection.cursor() as cursor:
        await cursor.execute(statement)
        row = await cursor.fetchone()
        return row[0] if row else None


def _postgres_refusal(error: psycopg.Error) -> _Refusal:
    """A Postgres error as Hasura reports it to an admin, ``internal`` (with the failing values) included."""
    state = error.sqlstate or ""
    primary = error.diag.message_primary or str(error)
    internal = {"error": {"exec_status": "FatalError", "message": primary, "status_code": state,
                          "description": error.diag.message_detail, "hint": error.diag.message_hint},
                "prepared": True, "statement": "INSERT/UPDATE/DELETE …"}
    if state in _POSTGRES_ERRORS:
        code, prefix = _POSTGRES_ERRORS[state]
        return _Refusal(code, prefix + primary, internal=internal)
    if state.startswith("22"):
        return _Refusal("data-exception", primary, internal=internal)
    return _Refusal("unexpected", "database query error", internal=internal)


#: The repository's Hasura migrations (the tutorials' users table), applied in order.
MIGRATIONS = sorted((Path(__file__).resolve().parents[2] / "hasura" / "migrations" / "default").glob("*/up.sql"))


def recreate_users_table(postgres: PostgresServer, database: str, extra_sql: str = "") -> None:
    """Drop ``public.users`` and create it again from the repository's migrations, plus the
    columns a test adds (``extra_sql``), in one transaction: every test starts from the same table."""
    migrations = "\n".join(path.read_text() for path in MIGRATIONS)
    postgres.psql(f"DROP TABLE IF EXISTS public.users;\n{migrations}\n{extra_sql}", database=database,
                  single_transaction=True)
