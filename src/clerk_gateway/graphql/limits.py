"""Static analysis of a GraphQL document, with no schema: size, shape and introspection use.

The gateway does not know the backend's schema, and does not need it to refuse the documents that
hurt: ones nested deeper than any screen needs, alias batches (``a1: f … a500: f``), walls of root
fields, huge token counts. Everything here is computed from the parsed document alone.

Work is bounded before it starts: the text length is checked first (O(1)), then tokens are counted
by the lexer, which stops at the token limit and at :data:`NESTING_CEILING` open brackets, so the
recursive parser only ever sees documents small and shallow enough to parse in milliseconds. The
result of each document is cached (:class:`DocumentAnalyser`), so a client repeating the same
query (the usual case) costs one digest and one dictionary look-up.

A document that does not lex or parse is reported as such and *not* refused here: the backend
owns syntax errors and answers them in its own words (the GraphQL-over-HTTP audit checks those).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from graphql.error import GraphQLSyntaxError
from graphql.language import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    Lexer,
    OperationDefinitionNode,
    SelectionSetNode,
    Source,
    TokenKind,
    parse,
)

__all__ = [
    "INTROSPECTION_FIELDS",
    "NESTING_CEILING",
    "DocumentAnalyser",
    "DocumentLimits",
    "DocumentReport",
    "Violation",
    "analyse_document",
]

INTROSPECTION_FIELDS = frozenset({"__schema", "__type"})
"""Fields that reveal the schema. ``__typename`` is not one: clients (and the audit) rely on it."""

NESTING_CEILING = 64
"""Open ``{``/``[``/``(`` beyond which a document is refused whatever the settings: the parser is
recursive, and real queries (fields plus ``where`` objects) stay far below this."""

_COUNT_CAP = 1 << 30  # alias/field counts are capped here: fragments spread in fragments multiply
_OPENERS = frozenset({TokenKind.BRACE_L, TokenKind.BRACKET_L, TokenKind.PAREN_L})
_CLOSERS = frozenset({TokenKind.BRACE_R, TokenKind.BRACKET_R, TokenKind.PAREN_R})


@dataclass(frozen=True, slots=True)
class DocumentLimits:
    """The limits one document must respect; ``0`` turns a limit off."""

    max_depth: int = 12
    max_aliases: int = 15
    max_root_fields: int = 20
    max_tokens: int = 1000
    max_operations: int = 3
    max_query_length: int = 20_000


@dataclass(frozen=True, slots=True)
class DocumentReport:
    """What a document is made of. Counts are maxima over its operations.

    ``tokens`` stops at the token cap plus one (counting further would be wasted work), and
    then nothing else was looked at: ``parsed`` is false. ``too_nested`` says the brackets went
    past :data:`NESTING_CEILING`. ``parsed`` false with neither means a syntax error.
    """

    tokens: int
    parsed: bool
    too_nested: bool = False
    operations: int = 0
    depth: int = 0
    aliases: int = 0
    root_fields: int = 0
    introspection: bool = False


@dataclass(frozen=True, slots=True)
class Violation:
    """The first limit a document broke: ``reason`` for machines, ``message`` for the client."""

    reason: str
    message: str


# -- lexing --------------------------------------------------------------------------------------


def _count_tokens(text: str, cap: int | None) -> tuple[int, bool]:
    """Tokens up to ``cap + 1`` and whether the nesting ceiling was passed; raises on bad syntax."""
    lexer = Lexer(Source(text))
    count = 0
    nesting = 0
    while True:
        kind = lexer.advance().kind
        if kind is TokenKind.EOF:
            return count, False
        count += 1
        if cap is not None and count > cap:
            return count, False
        if kind in _OPENERS:
            nesting += 1
            if nesting > NESTING_CEILING:
                return count, True
        elif kind in _CLOSERS and nesting:
            nesting -= 1


# -- shape ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Shape:
    """Of one selection set, fragments expanded: depth below it, aliases in it, fields at its level."""

    depth: int = 0
    aliases: int = 0
    fields: int = 0
    introspection: bool = False

    def include(self, other: _Shape) -> None:
        """Merge a fragment (inline or spread) that sits at this level."""
        self.depth = max(self.depth, other.depth)
        self.aliases = min(self.aliases + other.aliases, _COUNT_CAP)
        self.fields = min(self.fields + other.fields, _COUNT_CAP)
        self.introspection = self.introspection or other.introspection


_EMPTY = _Shape()


def _shape(selection_set: SelectionSetNode, fragments: Mapping[str, _Shape]) -> _Shape:
    """Recursive, but only as deep as the document's brackets, which the lexer capped."""
    shape = _Shape()
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            name = selection.name.value
            child = _shape(selection.selection_set, fragments) if selection.selection_set else _EMPTY
            shape.fields = min(shape.fields + 1, _COUNT_CAP)
            shape.aliases = min(shape.aliases + child.aliases + (selection.alias is not None), _COUNT_CAP)
            if name in INTROSPECTION_FIELDS:
                # Depth inside introspection is the schema's, not the data's (``ofType`` chains).
                shape.introspection = True
                shape.depth = max(shape.depth, 1)
            else:
                shape.introspection = shape.introspection or child.introspection
                shape.depth = max(shape.depth, 1 + child.depth)
        elif isinstance(selection, InlineFragmentNode):
            shape.include(_shape(selection.selection_set, fragments))
        elif isinstance(selection, FragmentSpreadNode):
            # Unknown or cyclic fragments count as empty: the backend rejects such documents.
            shape.include(fragments.get(selection.name.value, _EMPTY))
    return shape


def _spreads(selection_set: SelectionSetNode) -> Iterator[str]:
    for selection in selection_set.selections:
        if isinstance(selection, FragmentSpreadNode):
            yield selection.name.value
        elif isinstance(selection, FieldNode | InlineFragmentNode) and selection.selection_set:
            yield from _spreads(selection.selection_set)


def _fragment_shapes(definitions: Mapping[str, FragmentDefinitionNode]) -> dict[str, _Shape]:
    """Each fragment's shape, computed after the fragments it spreads (iterative depth-first
    order, so a long chain of fragments cannot exhaust the interpreter's stack)."""
    deps = {name: list(_spreads(node.selection_set)) for name, node in definitions.items()}
    done: dict[str, _Shape] = {}
    for root in definitions:
        if root in done:
            continue
        visiting = {root}
        stack = [(root, iter(deps[root]))]
        while stack:
            name, pending = stack[-1]
            following = next((dep for dep in pending
                              if dep in definitions and dep not in done and dep not in visiting), None)
            if following is None:
                stack.pop()
                visiting.discard(name)
                done[name] = _shape(definitions[name].selection_set, done)
            else:
                visiting.add(following)
                stack.append((following, iter(deps[following])))
    return done


def _report(document: DocumentNode, tokens: int) -> DocumentReport:
    fragments = {node.name.value: node for node in document.definitions
                 if isinstance(node, FragmentDefinitionNode)}
    shapes = _fragment_shapes(fragments)
    operations = [_shape(node.selection_set, shapes) for node in document.definitions
                  if isinstance(node, OperationDefinitionNode)]
    return DocumentReport(
        tokens=tokens, parsed=True, operations=len(operations),
        depth=max((shape.depth for shape in operations), default=0),
        aliases=max((shape.aliases for shape in operations), default=0),
        root_fields=max((shape.fields for shape in operations), default=0),
        introspection=any(shape.introspection for shape in operations),
    )


def analyse_document(text: str, max_tokens: int | None = None) -> DocumentReport:
    """Lex (stopping after ``max_tokens``), parse and measure one document."""
    try:
        tokens, too_nested = _count_tokens(text, max_tokens)
    except GraphQLSyntaxError:
        return DocumentReport(tokens=0, parsed=False)
    if too_nested or (max_tokens is not None and tokens > max_tokens):
        return DocumentReport(tokens=tokens, parsed=False, too_nested=too_nested)
    try:
        document = parse(Source(text), no_location=True)
    except GraphQLSyntaxError:
        return DocumentReport(tokens=tokens, parsed=False)
    except RecursionError:  # older graphql-core; unreachable below the nesting ceiling
        return DocumentReport(tokens=tokens, parsed=False, too_nested=True)
    return _report(document, tokens)


# -- limits and cache ----------------------------------------------------------------------------


class _Lru:
    """A small LRU map with hit/miss counts (one per worker; the event loop is single-threaded)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.hits = 0
        self.misses = 0
        self._data: OrderedDict[bytes, DocumentReport] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: bytes) -> DocumentReport | None:
        report = self._data.get(key)
        if report is None:
            self.misses += 1
            return None
        self.hits += 1
        self._data.move_to_end(key)
        return report

    def put(self, key: bytes, report: DocumentReport) -> None:
        if self.size <= 0:
            return
        self._data[key] = report
        if len(self._data) > self.size:
            self._data.popitem(last=False)


class DocumentAnalyser:
    """Checks documents against :class:`DocumentLimits`, remembering each document's report.

    The cache key is a 16-byte BLAKE2b digest of the text rather than the text itself, so the
    cache's memory is bounded by its entry count whatever size the documents are.
    """

    def __init__(self, limits: DocumentLimits, *, cache_size: int = 1024) -> None:
        self.limits = limits
        self.cache = _Lru(cache_size)
        self._token_cap = limits.max_tokens or None

    def report(self, text: str) -> DocumentReport:
        key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        report = self.cache.get(key)
        if report is None:
            report = analyse_document(text, self._token_cap)
            self.cache.put(key, report)
        return report

    def check(self, text: str, *, introspection_allowed: bool) -> Violation | None:
        """The first limit ``text`` breaks, or ``None`` (also for documents that do not parse)."""
        limits = self.limits
        if limits.max_query_length and len(text) > limits.max_query_length:
            return Violation("graphql-length-limit",
                             f"the query is longer than the limit of {limits.max_query_length} characters")
        report = self.report(text)
        if limits.max_tokens and report.tokens > limits.max_tokens:
            return Violation("graphql-token-limit",
                             f"the query has more than the limit of {limits.max_tokens} tokens")
        if report.too_nested:
            return Violation("graphql-depth-limit",
                             f"the query nests brackets more than {NESTING_CEILING} levels deep")
        if not report.parsed:
            return None
        if limits.max_operations and report.operations > limits.max_operations:
            return Violation("graphql-operation-limit",
                             f"the document defines {report.operations} operations; "
                             f"the limit is {limits.max_operations}")
        if report.introspection and not introspection_allowed:
            return Violation("graphql-introspection-disabled",
                             "introspection (__schema, __type) is not allowed for this role")
        if limits.max_depth and report.depth > limits.max_depth:
            return Violation("graphql-depth-limit",
                             f"the query is {report.depth} levels deep; the limit is {limits.max_depth}")
        if limits.max_aliases and report.aliases > limits.max_aliases:
            return Violation("graphql-alias-limit",
                             f"the query uses {report.aliases} aliases; the limit is {limits.max_aliases}")
        if limits.max_root_fields and report.root_fields > limits.max_root_fields:
            return Violation("graphql-root-field-limit",
                             f"the query selects {report.root_fields} root fields; "
                             f"the limit is {limits.max_root_fields}")
        return None
