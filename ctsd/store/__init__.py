"""Persistence: the only package that speaks SQL (a SQLite file through sqlite3 and
aiosqlite, or PostgreSQL through psycopg; see `database`)."""
