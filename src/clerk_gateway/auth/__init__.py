"""Authentication: token sources → keys → verifier → verified identity."""
