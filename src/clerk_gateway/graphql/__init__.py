"""GraphQL document limits: static analysis of documents and the request guard that applies it."""

from __future__ import annotations

from .guard import GraphQLLimitsGuard, GraphQLRequestRefused, prefers_graphql_response
from .limits import DocumentAnalyser, DocumentLimits, DocumentReport, Violation, analyse_document

__all__ = [
    "DocumentAnalyser",
    "DocumentLimits",
    "DocumentReport",
    "GraphQLLimitsGuard",
    "GraphQLRequestRefused",
    "Violation",
    "analyse_document",
    "prefers_graphql_response",
]
