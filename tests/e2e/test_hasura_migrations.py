"""The Hasura project in ``hasura/`` (config v3): its metadata is what the Hasura CLI reads, and its migrations
create, on a real Postgres, the table the metadata's permissions talk about.

No Hasura runs here (no container engine), so two halves stand in for ``hasura metadata apply`` + ``migrate apply``:

- **structure** (no server): every metadata file parses, is one the CLI reads (or is reached through ``!include``,
  in either of the CLI's two spellings: the YAML tag or the quoted string) and has the shape Hasura expects, the
  permissions are the tutorials' (role ``user``, own row only, ``last_seen`` the only updatable column), and every
  session variable they use is one the gateway sends;
- **Postgres** (a throw-away cluster from :mod:`tests.support.postgres`): each ``up.sql`` is applied in version order
  in one transaction, like the CLI does; the catalog must show the tutorials' ``users`` table (types, default, primary
  key), every table the metadata tracks and every column its permissions name must exist, and ``down.sql`` must undo
  it exactly (the schema after up → down → up equals the one after up).

What this cannot prove: that Hasura accepts the metadata (its server-side validation, e.g. of the bool expressions'
operators against column types) and enforces the permissions; only a running Hasura does.
"""

from __future__ import annotations

import copy
import itertools
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import graphql
import pytest
import yaml

from clerk_gateway.adapters.claims import USER_ID
from clerk_gateway.adapters.orgs import ORG_ID, ORG_PERMISSIONS, ORG_ROLE, ORG_SLUG
from tests.support.postgres import PostgresServer, PsqlError, unavailable_reason

ROOT = Path(__file__).resolve().parents[2]
HASURA = ROOT / "hasura"

#: Session variables the gateway sends (admin_secret: headers; mint: claims) or Clerk's Hasura template carries.
GATEWAY_SESSION_VARIABLES = frozenset({USER_ID, ORG_ID, ORG_SLUG, ORG_ROLE, ORG_PERMISSIONS})

# -- the metadata directory, as the Hasura CLI (v2, config v3) reads it ----------------------------------------------
# Top-level files and the YAML type each must hold. The CLI reads exactly these names and skips a missing one, so a
# misspelt file would be silently ignored: any other file must be reached through an !include.
TOP_LEVEL: dict[str, type] = {
    "version.yaml": dict, "actions.graphql": str, "actions.yaml": dict, "allow_list.yaml": list,
    "cron_triggers.yaml": list, "inherited_roles.yaml": list, "query_collections.yaml": list,
    "remote_schemas.yaml": list, "rest_endpoints.yaml": list, "network.yaml": dict,
    # Hasura Cloud / Enterprise objects: allowed, not needed by the community edition the compose file runs
    "api_limits.yaml": dict, "graphql_schema_introspection.yaml": dict, "metrics_config.yaml": dict,
    "opentelemetry.yaml": dict, "backend_configs.yaml": dict,
}
REQUIRED = ("version.yaml", "databases/databases.yaml")
SOURCE_KEYS = {"name", "kind", "configuration", "tables", "functions", "customization", "health_check",
               "logical_models", "native_queries", "stored_procedures"}
TABLE_KEYS = {"table", "configuration", "is_enum", "object_relationships", "array_relationships",
              "remote_relationships", "computed_fields", "insert_permissions", "select_permissions",
              "update_permissions", "delete_permissions", "event_triggers", "apollo_federation_config",
              "logical_model"}
PERMISSION_KEYS: dict[str, tuple[set[str], set[str]]] = {  # kind -> (required keys, allowed keys)
    "insert": ({"check", "columns"}, {"check", "columns", "set", "backend_only", "validate_input"}),
    "select": ({"columns", "filter"}, {"columns", "filter", "limit", "allow_aggregations", "computed_fields",
                                       "query_root_fields", "subscription_root_fields"}),
    # Hasura defaults a missing `check` to the filter; the project spells it out, so a review sees both sides.
    "update": ({"columns", "filter", "check"}, {"columns", "filter", "check", "set", "backend_only",
                                               "validate_input"}),
    "delete": ({"filter"}, {"filter", "backend_only", "validate_input"}),
}
OPERATORS = {"_eq", "_neq", "_gt", "_lt", "_gte", "_lte", "_in", "_nin", "_is_null", "_like", "_nlike", "_ilike",
             "_nilike", "_similar", "_nsimilar", "_regex", "_nregex", "_iregex", "_niregex", "_contains",
             "_contained_in", "_has_key", "_has_keys_any", "_has_keys_all", "_ceq", "_cne", "_cgt", "_clt",
             "_cgte", "_clte"}
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MIGRATION_DIR = re.compile(r"^(\d{13})_([a-z0-9_]+)$")


class MetadataError(ValueError):
    """A metadata file that cannot be read the way the CLI reads it (bad YAML, a dangling or cyclic include)."""


class _IncludeTag(str):
    """The tag spelling, ``key: !include file.yaml``, kept apart from plain strings until resolved."""


class _Included(dict[str, Any]):
    """A mapping that came from an included file; ``source`` is that file (tables are named by their file)."""

    source: Path


class _MetadataLoader(yaml.SafeLoader):
    """SafeLoader that knows the ``!include`` tag (PyYAML refuses unknown tags)."""


def _construct_include(loader: yaml.SafeLoader, node: yaml.Node) -> _IncludeTag:
    assert isinstance(node, yaml.ScalarNode)
    return _IncludeTag(loader.construct_scalar(node))


_MetadataLoader.add_constructor("!include", _construct_include)


@dataclass
class MetadataTree:
    """Reads a metadata directory, resolving includes relative to the including file's directory, as the CLI's
    ``metadatautil.resolveTags`` does: the tag form, or any string containing ``!include`` (the words after the
    first are the path, quotes trimmed); a non-``.yaml`` target is inlined as text."""

    root: Path
    files_read: set[Path] = field(default_factory=set)

    def load(self, relative: str) -> Any:
        return self._load_file((self.root / relative).resolve(), ())

    def _load_file(self, path: Path, chain: tuple[Path, ...]) -> Any:
        if path in chain:
            raise MetadataError(f"include cycle: {' -> '.join(p.name for p in (*chain, path))}")
        if not path.is_file():
            where = f" (included from {chain[-1].relative_to(self.root)})" if chain else ""
            raise MetadataError(f"{self._name(path)}: no such file{where}")
        self.files_read.add(path)
        if path.suffix != ".yaml":
            return path.read_text()
        try:
            data = yaml.load(path.read_text(), Loader=_MetadataLoader)  # a SafeLoader subclass
        except yaml.YAMLError as error:
            raise MetadataError(f"{self._name(path)}: not YAML: {error}") from None
        resolved = self._resolve(data, path, (*chain, path))
        if isinstance(resolved, dict):
            included = _Included(resolved)
            included.source = path
            return included
        return resolved

    def _resolve(self, value: Any, path: Path, chain: tuple[Path, ...]) -> Any:
        if isinstance(value, _IncludeTag):
            return self._load_file((path.parent / str(value)).resolve(), chain)
        if isinstance(value, str) and "!include" in value:
            target = " ".join(value.split(" ")[1:]).strip('"')
            return self._load_file((path.parent / target).resolve(), chain)
        if isinstance(value, list):
            return [self._resolve(item, path, chain) for item in value]
        if isinstance(value, dict):
            return {key: self._resolve(item, path, chain) for key, item in value.items()}
        return value

    def _name(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)


@dataclass
class TrackedTable:
    schema: str
    name: str
    #: every column a permission lists or a filter/check compares, by the permission that names it
    columns: dict[str, set[str]] = field(default_factory=dict)
    permissions: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # kind -> role -> permission


@dataclass
class Metadata:
    problems: list[str] = field(default_factory=list)
    sources: dict[str, list[TrackedTable]] = field(default_factory=dict)


def _bool_exp_problems(exp: Any, where: str, table: TrackedTable, relationships: set[str], used_by: str,
                       problems: list[str]) -> None:
    """Hasura's boolean expression shape: ``_and``/``_or`` lists, ``_not``, ``_exists``, or a column (or a
    relationship) with operators; session variables must be ones the gateway sends."""
    if not isinstance(exp, dict):
        problems.append(f"{where}: a boolean expression must be a mapping, not {type(exp).__name__}")
        return
    for key, value in exp.items():
        if key in ("_and", "_or"):
            if not isinstance(value, list):
                problems.append(f"{where}.{key}: must be a list of expressions")
                continue
            for index, item in enumerate(value):
                _bool_exp_problems(item, f"{where}.{key}[{index}]", table, relationships, used_by, problems)
        elif key == "_not":
            _bool_exp_problems(value, f"{where}._not", table, relationships, used_by, problems)
        elif key == "_exists":
            if not (isinstance(value, dict) and {"_table", "_where"} <= set(value)):
                problems.append(f"{where}._exists: needs _table and _where")
        elif not isinstance(key, str) or not IDENTIFIER.match(key):
            problems.append(f"{where}: {key!r} is neither an operator group nor a column name")
        elif key in relationships:
            _bool_exp_problems(value, f"{where}.{key}", table, set(), used_by, problems)
        elif not isinstance(value, dict) or not value:
            problems.append(f"{where}.{key}: a column needs a mapping of operators, e.g. {{_eq: X-Hasura-User-Id}}")
        else:
            table.columns.setdefault(key, set()).add(used_by)
            for operator, operand in value.items():
                if operator not in OPERATORS:
                    problems.append(f"{where}.{key}: unknown operator {operator!r}")
                for literal in operand if isinstance(operand, list) else [operand]:
                    if isinstance(literal, str) and literal.lower().startswith("x-hasura-") \
                            and literal.lower() not in GATEWAY_SESSION_VARIABLES:
                        problems.append(f"{where}.{key}.{operator}: session variable {literal!r} is not one the "
                                        f"gateway sends ({', '.join(sorted(GATEWAY_SESSION_VARIABLES))})")


def _table_problems(entry: Any, source: str, index: int, metadata: Metadata) -> TrackedTable | None:
    where = f"source {source} tables[{index}]"
    problems = metadata.problems
    if not isinstance(entry, dict):
        problems.append(f"{where}: a table entry must be a mapping (an !include of <schema>_<table>.yaml)")
        return None
    ref = entry.get("table")
    if not (isinstance(ref, dict) and isinstance(ref.get("name"), str) and isinstance(ref.get("schema"), str)):
        problems.append(f"{where}: needs table: {{name, schema}}")
        return None
    table = TrackedTable(schema=ref["schema"], name=ref["name"])
    where = f"table {table.schema}.{table.name}"
    if isinstance(entry, _Included) and entry.source.name != f"{table.schema}_{table.name}.yaml":
        problems.append(f"{where}: is in {entry.source.name}; the CLI writes it as {table.schema}_{table.name}.yaml")
    for key in sorted(set(entry) - TABLE_KEYS):
        problems.append(f"{where}: unknown key {key!r}")
    relationships = {str(rel.get("name")) for kind in ("object_relationships", "array_relationships")
                     for rel in entry.get(kind) or [] if isinstance(rel, dict)}
    for kind, (required, allowed) in PERMISSION_KEYS.items():
        entries = entry.get(f"{kind}_permissions") or []
        if not isinstance(entries, list):
            problems.append(f"{where}: {kind}_permissions must be a list")
            continue
        by_role: dict[str, dict[str, Any]] = {}
        for position, item in enumerate(entries):
            here = f"{where} {kind}_permissions[{position}]"
            if not isinstance(item, dict) or not isinstance(item.get("role"), str) \
                    or not isinstance(item.get("permission"), dict):
                problems.append(f"{here}: needs role (a name) and permission (a mapping)")
                continue
            for key in sorted(set(item) - {"role", "permission", "comment"}):
                problems.append(f"{here}: unknown key {key!r}")
            role, permission = item["role"], item["permission"]
            if role in by_role:
                problems.append(f"{here}: role {role!r} has two {kind} permissions")
            by_role[role] = permission
            here = f"{where} {kind} permission of {role!r}"
            for key in sorted(required - set(permission)):
                problems.append(f"{here}: permission.{key} is missing")
            for key in sorted(set(permission) - allowed):
                problems.append(f"{here}: unknown key permission.{key}")
            columns = permission.get("columns", [])
            if columns != "*":
                if not (isinstance(columns, list) and all(isinstance(c, str) and IDENTIFIER.match(c) for c in columns)):
                    problems.append(f"{here}: permission.columns must be a list of column names (or '*')")
                else:
                    for column in columns:
                        table.columns.setdefault(column, set()).add(f"{kind}:{role}")
            for key in ("filter", "check"):
                if key in permission:
                    _bool_exp_problems(permission[key], f"{here} {key}", table, relationships, f"{kind}:{role}",
                                       problems)
        table.permissions[kind] = by_role
    return table


def load_metadata(metadata_dir: Path) -> Metadata:
    """Every structural problem of a metadata directory, and the tables it tracks."""
    metadata = Metadata()
    problems = metadata.problems
    tree = MetadataTree(metadata_dir.resolve())
    for name in REQUIRED:
        if not (metadata_dir / name).is_file():
            problems.append(f"{name}: missing (the CLI needs it)")
    for name, expected in TOP_LEVEL.items():
        if not (metadata_dir / name).is_file():
            continue
        try:
            value = tree.load(name)
        except MetadataError as error:
            problems.append(str(error))
            continue
        if name == "actions.graphql":
            if value.strip():
                try:
                    graphql.parse(value)
                except graphql.GraphQLError as error:
                    problems.append(f"actions.graphql: not GraphQL SDL: {error.message}")
        elif name == "version.yaml":
            version = value.get("version") if isinstance(value, dict) else None
            if version != 3:
                problems.append(f"version.yaml: version must be 3 (config v3 metadata), not {version!r}")
        elif value is None and expected is dict:
            continue  # what `hasura init` writes for an unused Enterprise object
        elif not isinstance(value, expected):
            problems.append(f"{name}: must hold a {'list' if expected is list else 'mapping'}")
        elif name == "actions.yaml" and isinstance(value, dict) and set(value) - {"actions", "custom_types"}:
            problems.append(f"actions.yaml: unknown keys {sorted(set(value) - {'actions', 'custom_types'})}")
    sources: Any = []
    if (metadata_dir / "databases/databases.yaml").is_file():
        try:
            sources = tree.load("databases/databases.yaml")
        except MetadataError as error:
            problems.append(str(error))
    if not isinstance(sources, list):
        problems.append("databases/databases.yaml: must hold a list of sources")
        sources = []
    for index, source in enumerate(sources):
        if not (isinstance(source, dict) and isinstance(source.get("name"), str)):
            problems.append(f"databases/databases.yaml[{index}]: a source needs a name")
            continue
        name = source["name"]
        if name in metadata.sources:
            problems.append(f"source {name}: listed twice")
        for key in sorted(set(source) - SOURCE_KEYS):
            problems.append(f"source {name}: unknown key {key!r}")
        url = ((source.get("configuration") or {}).get("connection_info") or {}).get("database_url")
        if not (isinstance(url, str) or (isinstance(url, dict) and isinstance(url.get("from_env"), str))):
            problems.append(f"source {name}: configuration.connection_info.database_url must be a URL or "
                            "{from_env: VARIABLE}")
        tables = source.get("tables") or []
        if not isinstance(tables, list):
            problems.append(f"source {name}: tables must be a list")
            tables = []
        tracked = [_table_problems(entry, name, i, metadata) for i, entry in enumerate(tables)]
        metadata.sources[name] = [table for table in tracked if table is not None]
    for path in sorted(p.resolve() for p in metadata_dir.rglob("*") if p.is_file()):
        if path not in tree.files_read:
            problems.append(f"{path.relative_to(tree.root)}: not a file the Hasura CLI reads (not a top-level "
                            "metadata file and not reached by any !include)")
    return metadata


@dataclass(frozen=True)
class Migration:
    source: str
    version: int
    name: str
    up: Path
    down: Path


def load_migrations(hasura_dir: Path, problems: list[str]) -> list[Migration]:
    """``migrations/<source>/<13-digit version>_<name>/{up,down}.sql``, in version order (the CLI's order)."""
    migrations: list[Migration] = []
    root = hasura_dir / "migrations"
    for source_dir in sorted(p for p in root.iterdir()):
        if not source_dir.is_dir():
            problems.append(f"migrations/{source_dir.name}: expected a directory per source")
            continue
        for directory in sorted(source_dir.iterdir()):
            match = MIGRATION_DIR.match(directory.name)
            if not directory.is_dir() or not match:
                problems.append(f"migrations/{source_dir.name}/{directory.name}: expected <13-digit version>_<name>/")
                continue
            files = {p.name for p in directory.iterdir()}
            if files != {"up.sql", "down.sql"}:
                problems.append(f"migrations/{source_dir.name}/{directory.name}: has {sorted(files)}, "
                                "expected up.sql and down.sql (every migration can be rolled back)")
                continue
            migrations.append(Migration(source_dir.name, int(match.group(1)), match.group(2),
                                        directory / "up.sql", directory / "down.sql"))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        problems.append("migrations: two migrations share a version")
    return sorted(migrations, key=lambda m: m.version)


def project_problems(hasura_dir: Path) -> list[str]:
    """config.yaml, metadata and migrations together: what ``hasura deploy`` would need to agree."""
    problems: list[str] = []
    config = yaml.safe_load((hasura_dir / "config.yaml").read_text())
    if not isinstance(config, dict) or config.get("version") != 3:
        problems.append("config.yaml: version must be 3")
        config = config if isinstance(config, dict) else {}
    metadata_dir = hasura_dir / config.get("metadata_directory", "metadata")
    if config.get("metadata_directory") != "metadata" or config.get("migrations_directory", "migrations") \
            != "migrations":
        problems.append("config.yaml: metadata_directory/migrations_directory must be metadata/migrations, the "
                        "directories docker-compose.yml mounts")
    metadata = load_metadata(metadata_dir)
    problems += metadata.problems
    migrations = load_migrations(hasura_dir, problems)
    for source in sorted({m.source for m in migrations} - set(metadata.sources)):
        problems.append(f"migrations/{source}: no source of that name in databases/databases.yaml")
    return problems


# -- structure -------------------------------------------------------------------------------------------------------

def _copy_project(tmp_path: Path) -> Path:
    target = tmp_path / "hasura"
    shutil.copytree(HASURA, target)
    return target


def test_the_hasura_project_is_what_the_cli_reads() -> None:
    assert project_problems(HASURA) == []


def test_the_metadata_tracks_the_tutorials_users_table_with_own_row_permissions() -> None:
    metadata = load_metadata(HASURA / "metadata")
    assert metadata.problems == []
    assert list(metadata.sources) == ["default"]
    (users,) = metadata.sources["default"]
    assert (users.schema, users.name) == ("public", "users")
    own_row = {"id": {"_eq": "X-Hasura-User-Id"}}
    assert set(users.permissions["select"]) == {"user"}
    select = users.permissions["select"]["user"]
    assert sorted(select["columns"]) == ["id", "last_seen", "name"] and select["filter"] == own_row
    assert set(users.permissions["update"]) == {"user"}
    update = users.permissions["update"]["user"]
    assert update["columns"] == ["last_seen"]
    assert update["filter"] == own_row and update["check"] == own_row
    # rows are created and deleted by the admin (the Clerk webhook sync), never by a user
    assert users.permissions["insert"] == {} and users.permissions["delete"] == {}
    databases = yaml.safe_load((HASURA / "metadata/databases/databases.yaml").read_text())
    assert databases[0]["configuration"]["connection_info"]["database_url"] == {
        "from_env": "HASURA_GRAPHQL_DATABASE_URL"}


def test_both_spellings_of_include_resolve_to_the_same_metadata(tmp_path: Path) -> None:
    project = _copy_project(tmp_path)
    databases = project / "metadata/databases/databases.yaml"
    text = databases.read_text()
    assert 'tables: "!include default/tables/tables.yaml"' in text
    before = load_metadata(project / "metadata")
    databases.write_text(text.replace('tables: "!include default/tables/tables.yaml"',
                                      "tables: !include default/tables/tables.yaml"))
    after = load_metadata(project / "metadata")
    assert after.problems == [] and after.sources == before.sources


@pytest.mark.parametrize(("breakage", "expected"), [
    ("update_without_check", "update permission of 'user': permission.check is missing"),
    ("select_typo", "unknown key permission.filters"),
    ("unknown_session_variable", "session variable 'X-Hasura-Userid' is not one the gateway sends"),
    ("dangling_include", "public_user.yaml: no such file"),
    ("misspelt_file", "allowlist.yaml: not a file the Hasura CLI reads"),
    ("version_2", "version must be 3"),
    ("migration_without_down", "expected up.sql and down.sql"),
    ("unknown_operator", "unknown operator '_equals'"),
])
def test_the_structure_check_refuses_broken_metadata(tmp_path: Path, breakage: str, expected: str) -> None:
    project = _copy_project(tmp_path)
    users_file = project / "metadata/databases/default/tables/public_users.yaml"
    users = yaml.safe_load(users_file.read_text())
    if breakage == "update_without_check":
        del users["update_permissions"][0]["permission"]["check"]
    elif breakage == "select_typo":
        permission = users["select_permissions"][0]["permission"]
        permission["filters"] = permission.pop("filter")
    elif breakage == "unknown_session_variable":
        users["select_permissions"][0]["permission"]["filter"] = {"id": {"_eq": "X-Hasura-Userid"}}
    elif breakage == "unknown_operator":
        users["update_permissions"][0]["permission"]["check"] = {"id": {"_equals": "X-Hasura-User-Id"}}
    elif breakage == "dangling_include":
        (project / "metadata/databases/default/tables/tables.yaml").write_text('- "!include public_user.yaml"\n')
    elif breakage == "misspelt_file":
        (project / "metadata/allowlist.yaml").write_text("[]\n")
    elif breakage == "version_2":
        (project / "metadata/version.yaml").write_text("version: 2\n")
    elif breakage == "migration_without_down":
        next((project / "migrations/default").glob("*/down.sql")).unlink()
    users_file.write_text(yaml.safe_dump(users, sort_keys=False))
    problems = project_problems(project)
    assert any(expected in problem for problem in problems), problems


# -- Postgres --------------------------------------------------------------------------------------------------------

_databases = itertools.count()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    reason = unavailable_reason()
    if reason is not None:
        message = f"PostgreSQL cannot run here: {reason}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with PostgresServer() as server:
        yield server


@pytest.fixture
def database(postgres: PostgresServer) -> Iterator[str]:
    """A fresh, empty database per test, so that the tests do not depend on each other's migrations."""
    name = f"migrations_{next(_databases)}"
    postgres.create_database(name)
    try:
        yield name
    finally:
        postgres.drop_database(name)


def _migrations() -> list[Migration]:
    problems: list[str] = []
    migrations = load_migrations(HASURA, problems)
    assert problems == [] and migrations
    return migrations


def _apply(postgres: PostgresServer, database: str, direction: str) -> None:
    """Each migration in one transaction (as `hasura migrate apply` does); down runs newest first."""
    migrations = _migrations() if direction == "up" else list(reversed(_migrations()))
    for migration in migrations:
        script = migration.up if direction == "up" else migration.down
        try:
            postgres.psql(script.read_text(), database=database, single_transaction=True)
        except PsqlError as error:
            pytest.fail(f"{script.relative_to(ROOT)} failed: {error}")


def _schema(postgres: PostgresServer, database: str) -> str:
    """Tables, columns (type, nullability, default) and constraints of the public schema, one line each."""
    return postgres.psql(
        "SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
        "coalesce(pg_get_expr(d.adbin, d.adrelid), '') FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid "
        "AND d.adnum = a.attnum WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'p') AND a.attnum > 0 "
        "AND NOT a.attisdropped ORDER BY 1, 2; "
        "SELECT conrelid::regclass, conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2",
        database=database)


def _columns(postgres: PostgresServer, database: str, schema: str, table: str) -> dict[str, tuple[str, str, str]]:
    rows = postgres.psql(
        "SELECT column_name, data_type, is_nullable, coalesce(column_default, '') FROM information_schema.columns "
        f"WHERE table_schema = '{schema}' AND table_name = '{table}' ORDER BY ordinal_position", database=database)
    return {name: (kind, nullable, default) for name, kind, nullable, default in
            (row.split("|") for row in rows.splitlines())}


def test_up_creates_the_tutorials_users_table(postgres: PostgresServer, database: str) -> None:
    _apply(postgres, database, "up")
    assert _columns(postgres, database, "public", "users") == {
        "id": ("text", "NO", ""),  # Clerk user ids ("user_…") are not UUIDs
        "name": ("text", "YES", ""),
        "last_seen": ("timestamp with time zone", "YES", "now()"),
    }
    assert postgres.psql("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                         "WHERE conrelid = 'public.users'::regclass", database=database) \
        == "users_pkey|PRIMARY KEY (id)"
    # what the schema does with rows: the default, the primary key
    assert postgres.psql("INSERT INTO public.users (id) VALUES ('user_2xtKOmOKFZcYQ8kBGzxhPlrgBJv') "
                         "RETURNING name IS NULL, abs(extract(epoch FROM last_seen - now())) < 5",
                         database=database) == "t|t"
    with pytest.raises(PsqlError, match="users_pkey"):
        postgres.psql("INSERT INTO public.users (id) VALUES ('user_2xtKOmOKFZcYQ8kBGzxhPlrgBJv')", database=database)
    with pytest.raises(PsqlError, match="null value"):
        postgres.psql("INSERT INTO public.users (name) VALUES ('Ada')", database=database)


def test_every_tracked_table_and_permission_column_exists_after_the_migrations(postgres: PostgresServer,
                                                                               database: str) -> None:
    _apply(postgres, database, "up")
    metadata = load_metadata(HASURA / "metadata")
    assert metadata.problems == []
    missing = _missing_columns(postgres, database, metadata)
    assert missing == [], missing
    # the check can fail: a permission naming a column the migrations do not create is reported
    broken = copy.deepcopy(metadata)
    broken.sources["default"][0].columns.setdefault("email", set()).add("select:user")
    assert _missing_columns(postgres, database, broken) == ["public.users.email (select:user)"]


def _missing_columns(postgres: PostgresServer, database: str, metadata: Metadata) -> list[str]:
    """What Hasura would report as inconsistent metadata: a tracked table or a permission column that is not there."""
    missing: list[str] = []
    for table in metadata.sources["default"]:
        columns = _columns(postgres, database, table.schema, table.name)
        if not columns:
            missing.append(f"{table.schema}.{table.name} (tracked, but no such table)")
            continue
        for column, users in sorted(table.columns.items()):
            if column not in columns:
                missing.append(f"{table.schema}.{table.name}.{column} ({', '.join(sorted(users))})")
    return missing


def test_down_undoes_up_exactly(postgres: PostgresServer, database: str) -> None:
    empty = _schema(postgres, database)
    _apply(postgres, database, "up")
    migrated = _schema(postgres, database)
    assert "users_pkey" in migrated
    _apply(postgres, database, "down")
    assert postgres.psql("SELECT to_regclass('public.users') IS NULL", database=database) == "t"
    assert _schema(postgres, database) == empty
    _apply(postgres, database, "up")  # and up again: the migrations can be replayed after a rollback
    assert _schema(postgres, database) == migrated
