"""The simulator's WebSocket APIs (placeholder docstring; the URL map follows)."""
