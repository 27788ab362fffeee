"""Clerk webhooks: verified deliveries keep the backend's users table in sync and end revoked
sessions (``POST /webhooks/clerk``, ``clerk-gateway backfill``)."""
