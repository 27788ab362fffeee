"""``clerk-gateway documents check FILE…``: is a manifest usable, before a deploy finds out?

Needs no other settings. Each file is read the way ``serve`` reads it (format, shape, ids), every
document must parse, an id may not stand for two different documents across the files, and every
document is run through the GraphQL limits (``GATEWAY_GRAPHQL_*`` when set, else the defaults),
because a document the limits refuse would be refused on every request.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from pydantic import ValidationError

from clerk_gateway.graphql.guard import GraphQLLimitsGuard
from clerk_gateway.settings.graphql_limits import GraphQLLimitSettings

from .manifests import ManifestError, Manifests, parse_problems, read_manifest


def check_manifests(paths: Sequence[str], *, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """0 when every file is usable; 1 with one line per problem otherwise."""
    problems: list[str] = []
    manifests = Manifests()
    for path in paths:
        try:
            operations = read_manifest(path)
        except ManifestError as exc:
            problems.append(str(exc))
            continue
        ids = [operation.id for operation in operations]
        duplicates = sorted({identifier for identifier in ids if ids.count(identifier) > 1})
        for identifier in duplicates:
            problems.append(f"{path}: id {identifier[:16]}… is listed more than once")
        for operation in operations:
            try:
                manifests.add(operation)
            except ManifestError as exc:
                problems.append(str(exc))
    problems.extend(parse_problems(manifests))
    try:
        guard = GraphQLLimitsGuard(GraphQLLimitSettings())
    except ValidationError as exc:
        problems.append(f"GATEWAY_GRAPHQL_*: the limits settings are invalid ({exc.error_count()} problems)")
    else:
        for operation in manifests.by_id.values():
            violation = guard.check_query(operation.body, role=None)
            if violation is not None and violation.reason != "graphql-syntax-error":
                problems.append(f"{operation.source}: {operation.name or operation.id[:16]}: the GraphQL limits "
                                f"would refuse it ({violation.message})")
    for problem in problems:
        print(f"documents check: {problem}", file=err)
    files = len(paths)
    if problems:
        print(f"documents check: {len(problems)} problem{'s' if len(problems) != 1 else ''} in {files} "
              f"file{'s' if files != 1 else ''}", file=out)
        return 1
    print(f"documents check: {len(manifests)} operation{'s' if len(manifests) != 1 else ''} in {files} "
          f"file{'s' if files != 1 else ''}, all usable", file=out)
    return 0
