"""Start-up checks on a real state directory, and readiness following them."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest
import pytest_asyncio

from ctsd.exchanges.ccxt_internals import missing_classes
from ctsd.health.readiness import ReadinessMonitor
from ctsd.health.startup import StartupChecks, StartupEnvironment
from ctsd.store.database import Database
from ctsd.vault.master_key import generate_key, read_key_file, write_key_file


@pytest_asyncio.fixture
async def env(tmp_path: Path) -> AsyncIterator[StartupEnvironment]:
    db = await Database.open(tmp_path)
    key_path = tmp_path / "master-key"
    write_key_file(key_path, generate_key())
    try:
        yield StartupEnvironment(
            state_dir=tmp_path,
            db=db,
            key_path=key_path,
            key_id=read_key_file(key_path).key_id,
            exchange_ids=("binance",),
            missing_exchange_classes=partial(missing_classes, ("binance",)),
            endpoints={},
        )
    finally:
        await db.close()


@pytest.mark.asyncio
async def test_local_checks_pass_on_a_healthy_state_dir(env: StartupEnvironment) -> None:
    results = await StartupChecks(env).run_local()
    assert [(r.name, r.passed) for r in results] == [
        ("state_dir_writable", True),
        ("database_integrity", True),
        ("schema_version", True),
        ("master_key", True),
        ("database_writable", True),
    ]
    assert not [p for p in env.state_dir.iterdir() if p.name.startswith(".write-check")]


@pytest.mark.asyncio
async def test_a_readable_or_replaced_master_key_fails_its_check(env: StartupEnvironment) -> None:
    checks = StartupChecks(env)
    os.chmod(env.key_path, 0o644)
    readable = (await checks.run_local())[3]
    assert not readable.passed and "0644" in readable.detail
    env.key_path.unlink()
    write_key_file(env.key_path, generate_key())
    replaced = (await checks.run_local())[3]
    assert not replaced.passed and "different key" in replaced.detail


@pytest.mark.asyncio
async def test_a_clock_before_this_software_existed_fails(env: StartupEnvironment) -> None:
    checks = StartupChecks(env, now=lambda: datetime(2001, 1, 1, tzinfo=UTC))
    passed, detail = await checks.clock()
    assert not passed and "2001" in detail


@pytest.mark.asyncio
async def test_readiness_turns_not_serving_when_a_check_fails_and_back(
    env: StartupEnvironment,
) -> None:
    states: list[bool] = []

    async def set_serving(ready: bool) -> None:
        states.append(ready)

    monitor = ReadinessMonitor(StartupChecks(env), set_serving)
    await monitor.check_once()
    await monitor.check_once()  # unchanged: not set again
    key = env.key_path.read_bytes()
    env.key_path.unlink()
    await monitor.check_once()
    fd = os.open(env.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, key)  # the same key is back, owner-only
    os.close(fd)
    await monitor.check_once()
    assert states == [True, False, True]
