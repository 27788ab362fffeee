"""Adapters: one per backend; each turns a verified token plus the incoming request into the
upstream request. They never verify tokens or open sockets themselves."""
