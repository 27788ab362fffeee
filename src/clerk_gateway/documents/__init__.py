"""Trusted documents and Automatic Persisted Queries for GraphQL backends (Hasura, Nhost): which
documents may run, resolved from ids before the GraphQL limits and the upstream see them."""
