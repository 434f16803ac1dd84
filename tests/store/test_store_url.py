"""`[store] url`: only postgresql:// URLs (or none), and a password never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctsd.config import load_config
from ctsd.errors import ConfigurationError
from ctsd.store.database import Database
from ctsd.store.store_url import redacted_url, url_password


@pytest.mark.parametrize(("url", "shown", "password"), [
    ("postgresql://ctsd:s3cret-pw@db:5432/ctsd", "postgresql://ctsd:***@db:5432/ctsd",
     "s3cret-pw"),
    ("postgresql://ctsd@db/ctsd?password=s3cret-pw&sslmode=require",
     "postgresql://ctsd@db/ctsd?password=***&sslmode=require", "s3cret-pw"),
    ("postgresql://ctsd:p%40ss%3Aword@db/ctsd", "postgresql://ctsd:***@db/ctsd", "p@ss:word"),
    ("postgresql:///ctsd?host=/run/postgresql", "postgresql:///ctsd?host=/run/postgresql", None),
    ("postgresql:///ctsd?host=/run/pg&password=s3cret-pw",
     "postgresql:///ctsd?host=/run/pg&password=***", "s3cret-pw"),
])
def test_a_password_is_found_and_never_shown(url: str, shown: str, password: str | None,
                                             ) -> None:
    assert redacted_url(url) == shown
    assert url_password(url) == password


def test_the_store_table_takes_a_postgresql_url_or_nothing(tmp_path: Path) -> None:
    config = tmp_path / "ctsd.toml"
    config.write_text('[store]\nurl = "postgresql://ctsd@db/ctsd"\n')
    assert load_config(config, {}, env={}).store.url == "postgresql://ctsd@db/ctsd"
    config.write_text("[store]\n")
    assert load_config(config, {}, env={}).store.url is None
    for bad in ("mysql://x@db/ctsd", "/var/lib/ctsd/ctsd.db", "postgresql://db:notaport/x"):
        config.write_text(f'[store]\nurl = "{bad}"\n')
        with pytest.raises(ConfigurationError, match=r"\[store\] url|store.url|url"):
            load_config(config, {}, env={})
    config.write_text('[store]\nurl = "mysql://ctsd:s3cret-pw@db/ctsd"\n')
    with pytest.raises(ConfigurationError) as refused:
        load_config(config, {}, env={})
    assert "s3cret-pw" not in str(refused.value)


def test_the_sqlite_durability_is_full_unless_told_normal(tmp_path: Path) -> None:
    config = tmp_path / "ctsd.toml"
    config.write_text("[store]\n")
    assert load_config(config, {}, env={}).store.sqlite_synchronous == "full"
    config.write_text('[store]\nsqlite_synchronous = "NORMAL"\n')
    assert load_config(config, {}, env={}).store.sqlite_synchronous == "normal"
    config.write_text('[store]\nsqlite_synchronous = "off"\n')
    with pytest.raises(ConfigurationError, match="sqlite_synchronous must be one of full"):
        load_config(config, {}, env={})


@pytest.mark.asyncio
@pytest.mark.parametrize(("setting", "pragma"), [("full", 2), ("normal", 1)])
async def test_the_writer_commits_with_the_configured_synchronous(
        tmp_path: Path, setting: str, pragma: int) -> None:
    db = await Database.open(tmp_path, synchronous=setting)
    try:
        found = await db.write(lambda tx: tx.fetch_all("PRAGMA synchronous"))
        assert found == [(pragma,)]
    finally:
        await db.close()
