"""Persistence: the only package that speaks SQL (SQLite through aiosqlite)."""
