"""Daemon health: start-up checks, readiness, status and per-connection health reports."""
