"""Document analysis: each limit, fragments, the bounded lexing, and the parse cache."""

from __future__ import annotations

import pytest
from graphql import get_introspection_query

from clerk_gateway.graphql.limits import (
    NESTING_CEILING,
    DocumentAnalyser,
    DocumentLimits,
    analyse_document,
)


def nested(levels: int, leaf: str = "id") -> str:
    """``{ f { f { … leaf } } }`` with ``levels`` field levels in all (leaf included)."""
    return "{ " + "f { " * (levels - 1) + leaf + " }" * levels


def aliased(count: int) -> str:
    return "{ " + " ".join(f"a{i}: user {{ id }}" for i in range(count)) + " }"


def check(query: str, *, introspection: bool = False, **limits: int) -> str | None:
    violation = DocumentAnalyser(DocumentLimits(**limits)).check(query, introspection_allowed=introspection)
    return violation.reason if violation else None


# -- what is measured ----------------------------------------------------------------------------

def test_depth_counts_field_levels() -> None:
    assert analyse_document("{ __typename }").depth == 1
    assert analyse_document(nested(5)).depth == 5
    assert analyse_document("{ a { b } c { d { e } } }").depth == 3


def test_depth_and_aliases_follow_fragments() -> None:
    query = """
      query Q { users { ...U } }
      fragment U on User { a1: id a2: id posts { ...P ... on Post { deep { deeper { x } } } } }
      fragment P on Post { a3: title }
    """
    report = analyse_document(query)
    # users > posts > deep > deeper > x
    assert report.depth == 5
    assert report.aliases == 3
    assert report.root_fields == 1


def test_aliases_count_each_place_a_fragment_is_spread() -> None:
    query = "fragment F on T { a1: x a2: x a3: x } { one { ...F } two { ...F } ...F }"
    report = analyse_document(query)
    assert report.aliases == 9
    assert report.root_fields == 5  # one, two and the fragment's three fields


def test_root_fields_expand_inline_fragments() -> None:
    assert analyse_document("{ a b ... on Query { c d } }").root_fields == 4


def test_counts_are_maxima_over_operations() -> None:
    report = analyse_document(f"query A {nested(3)} query B {aliased(4)} query C {{ x y z w v }}")
    assert (report.operations, report.depth, report.aliases, report.root_fields) == (3, 3, 4, 5)


def test_cyclic_and_unknown_fragments_do_not_loop() -> None:
    report = analyse_document("fragment A on T { ...B x { y } } fragment B on T { ...A } { ...A ...Missing }")
    assert report.parsed and report.depth == 2


def test_a_long_fragment_chain_is_analysed_without_recursion_trouble() -> None:
    chain = " ".join(f"fragment F{i} on T {{ ...F{i + 1} }}" for i in range(400))
    report = analyse_document(chain + " fragment F400 on T { a1: x } { ...F0 }")
    assert report.parsed and report.aliases == 1 and report.depth == 1


def test_exponential_fragment_fan_out_is_counted_cheaply() -> None:
    fragments = " ".join(f"fragment F{i} on T {{ ...F{i + 1} ...F{i + 1} }}" for i in range(60))
    report = analyse_document(fragments + " fragment F60 on T { a: x } { ...F0 }")
    assert report.aliases >= 2 ** 30  # capped, never an endless count
    assert check(fragments + " fragment F60 on T { a: x } { ...F0 }", max_tokens=0) == "graphql-alias-limit"


@pytest.mark.parametrize(("query", "expected"), [
    ("{ __typename }", False),
    ("{ users { __typename id } }", False),
    ("{ __schema { types { name } } }", True),
    ('{ __type(name: "User") { name } }', True),
    ("{ plain: __schema { queryType { name } } }", True),
    ("{ ...F } fragment F on Query { __type(name: \"x\") { name } }", True),
    ("{ ... on Query { __schema { __typename } } }", True),
    ("fragment Unused on Query { __schema { __typename } } { a }", False),
])
def test_introspection_is_detected_by_field_name(query: str, expected: bool) -> None:
    assert analyse_document(query).introspection is expected


def test_depth_inside_introspection_is_not_counted() -> None:
    report = analyse_document(get_introspection_query(descriptions=True))
    assert report.introspection and report.depth == 1


def test_tokens_ignore_comments_and_counting_stops_at_the_cap() -> None:
    assert analyse_document("# a comment\n{ a b }").tokens == 4
    report = analyse_document(aliased(500), max_tokens=100)
    assert report.tokens == 101 and not report.parsed


def test_unparseable_documents_are_reported_not_refused() -> None:
    for text in ("{", "{ a(x: ) }", "query { a } }", '{ a(x: "unterminated) }', "\u0007"):
        report = analyse_document(text)
        assert not report.parsed and not report.too_nested
        assert check(text) is None


def test_nesting_beyond_the_ceiling_is_refused_before_parsing() -> None:
    deep_value = "{ a(w: " + "{ k: " * (NESTING_CEILING + 1) + "1" + " }" * (NESTING_CEILING + 1) + ") }"
    report = analyse_document(deep_value)
    assert report.too_nested and not report.parsed
    assert check(deep_value, max_tokens=0, max_depth=0) == "graphql-depth-limit"
    # just under the ceiling still parses
    assert analyse_document(nested(NESTING_CEILING)).parsed


# -- each limit ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("query", "limits", "reason"), [
    (nested(12), {}, None),
    (nested(13), {}, "graphql-depth-limit"),
    (nested(13), {"max_depth": 0}, None),
    (aliased(15), {}, None),
    (aliased(16), {}, "graphql-alias-limit"),
    (aliased(16), {"max_aliases": 0}, None),
    ("{ " + " ".join(f"f{i}" for i in range(20)) + " }", {}, None),
    ("{ " + " ".join(f"f{i}" for i in range(21)) + " }", {}, "graphql-root-field-limit"),
    ("{ " + " ".join(f"f{i}" for i in range(21)) + " }", {"max_root_fields": 0}, None),
    ("{ " + "a " * 998 + "}", {"max_root_fields": 0}, None),
    ("{ " + "a " * 999 + "}", {"max_root_fields": 0}, "graphql-token-limit"),
    ("{ " + "a " * 999 + "}", {"max_tokens": 0, "max_root_fields": 0}, None),
    (" ".join(f"query Q{i} {{ a }}" for i in range(3)), {}, None),
    (" ".join(f"query Q{i} {{ a }}" for i in range(4)), {}, "graphql-operation-limit"),
    (" ".join(f"query Q{i} {{ a }}" for i in range(4)), {"max_operations": 0}, None),
    ("{ a }" + " " * 60_000, {}, "graphql-length-limit"),
    ("{ a }" + " " * 60_000, {"max_query_length": 0}, None),
])
def test_each_limit(query: str, limits: dict[str, int], reason: str | None) -> None:
    assert check(query, **limits) == reason


def test_introspection_needs_permission() -> None:
    assert check("{ __schema { types { name } } }") == "graphql-introspection-disabled"
    assert check("{ __schema { types { name } } }", introspection=True) is None
    assert check("{ __typename }") is None


def test_violation_messages_name_the_numbers() -> None:
    violation = DocumentAnalyser(DocumentLimits(max_depth=3)).check(nested(5), introspection_allowed=False)
    assert violation is not None
    assert "5" in violation.message and "3" in violation.message


# -- the cache -----------------------------------------------------------------------------------

def test_repeated_documents_are_analysed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import clerk_gateway.graphql.limits as limits_module

    calls: list[str] = []
    real = limits_module.analyse_document

    def counting(text: str, max_tokens: int | None = None) -> limits_module.DocumentReport:
        calls.append(text)
        return real(text, max_tokens)

    monkeypatch.setattr(limits_module, "analyse_document", counting)
    analyser = DocumentAnalyser(DocumentLimits(), cache_size=2)
    for _ in range(5):
        assert analyser.check(nested(3), introspection_allowed=False) is None
        assert analyser.check(nested(20), introspection_allowed=False) is not None
    assert calls == [nested(3), nested(20)]
    assert (analyser.cache.hits, analyser.cache.misses) == (8, 2)


def test_cache_is_bounded_and_evicts_the_least_recently_used() -> None:
    analyser = DocumentAnalyser(DocumentLimits(), cache_size=2)
    analyser.report("{ a }")
    analyser.report("{ b }")
    analyser.report("{ a }")  # a is now the most recent
    analyser.report("{ c }")  # evicts b
    assert len(analyser.cache) == 2
    misses = analyser.cache.misses
    analyser.report("{ a }")
    assert analyser.cache.misses == misses
    analyser.report("{ b }")
    assert analyser.cache.misses == misses + 1


def test_cache_size_zero_disables_caching() -> None:
    analyser = DocumentAnalyser(DocumentLimits(), cache_size=0)
    analyser.report("{ a }")
    analyser.report("{ a }")
    assert len(analyser.cache) == 0 and analyser.cache.hits == 0


def test_length_limit_is_checked_before_any_analysis() -> None:
    analyser = DocumentAnalyser(DocumentLimits(max_query_length=10))
    assert analyser.check("{ " + "a " * 100 + "}", introspection_allowed=False) is not None
    assert analyser.cache.misses == 0
