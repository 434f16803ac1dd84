"""The state-dir lock refuses clearly, as a ConfigurationError (exit 78), not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctsd.errors import ConfigurationError
from ctsd.instance_lock import InstanceLock


def test_a_second_holder_is_refused(tmp_path: Path) -> None:
    first = InstanceLock(tmp_path)
    first.acquire("daemon")
    try:
        with pytest.raises(ConfigurationError, match="in use"):
            InstanceLock(tmp_path).acquire("rotate-key")
    finally:
        first.release()


def test_an_unwritable_state_dir_is_a_configuration_error(tmp_path: Path) -> None:
    # a missing dir stands in for a read-only one (root ignores permission bits)
    with pytest.raises(ConfigurationError, match="cannot open lock file"):
        InstanceLock(tmp_path / "missing").acquire("daemon")
