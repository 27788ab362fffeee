"""The proxy moves bytes: HTTP (and later WebSocket) forwarding, streaming, transport failures."""
