"""clerk-gateway: verifies Clerk tokens and forwards requests to Hasura, Nhost or Fauna."""

__version__ = "0.1.0"
