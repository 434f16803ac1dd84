"""Bit rot anywhere in the file, opened the way the daemon opens it, many times over.

The daemon-level corpus (tests/robustness/test_corrupt_databases.py) starts a process
per damaged file, so it can afford only a few random ones in `make test`; its soak form
found files whose damage made SQLite quote undecodable bytes in its error message, which
escaped as a UnicodeDecodeError (a traceback and exit 1 under systemd). Here the same
damage runs in-process on hundreds of seeds: `Database.open` either opens the file or
refuses it with a ConfigurationError (exit 78 with one line), and the start-up audit then
reads every decoded table through (the fleet's members, leases and statuses included):
damaged rows are quarantined, a damaged page is the store's own error; nothing else may
escape.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ctsd.errors import ConfigurationError, CtsError
from ctsd.store.audit import audit_rows
from ctsd.store.database import Database
from tests.robustness.tally import Tally
from tests.robustness.test_corrupt_databases import SEED, random_pages, seeded

pytestmark = pytest.mark.long

__all__ = ["seeded"]  # the corpus' seeded state dir, one per module

CASES = int(os.environ.get("CTS_CORRUPTION_CASES", 1000))


@pytest.mark.asyncio
async def test_random_damage_opens_or_is_refused_as_configuration(seeded: Path,
                                                                    tmp_path: Path) -> None:
    tally = Tally("random bit rot, opened in-process")
    escaped: list[str] = []
    for n in range(CASES):
        state = tmp_path / f"s{n}"
        shutil.copytree(seeded, state)
        random_pages(SEED + 1000 + n)(state)
        tally.tried += 1
        try:
            db = await Database.open(state)
        except ConfigurationError:
            pass
        except Exception as exc:  # what this test hunts
            escaped.append(f"seed {SEED + 1000 + n}: {type(exc).__name__}: {exc}"[:200])
            continue
        else:
            try:
                await audit_rows(db)
            except CtsError:  # the store's own answer (the file is corrupt): reported
                pass
            except Exception as exc:
                escaped.append(f"seed {SEED + 1000 + n}, audit: {type(exc).__name__}: "
                               f"{exc}"[:200])
                continue
            finally:
                await db.close()
        finally:
            shutil.rmtree(state)
        tally.survived += 1
    tally.lost = len(escaped)
    tally.notes.extend(escaped[:5])
    tally.report()
    assert not escaped, escaped[:5]
