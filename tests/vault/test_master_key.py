"""Key sources, formats and the refusal of readable key files."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from ctsd.errors import ConfigurationError
from ctsd.vault.master_key import (
    KeySource,
    decode_key,
    generate_key,
    locate_key,
    read_key_file,
    write_key_file,
)


def test_a_written_key_is_private_whole_and_never_overwritten(tmp_path: Path) -> None:
    source = locate_key(tmp_path, None, env={})
    assert source == KeySource(tmp_path / "master-key", managed=True)
    (tmp_path / "master-key.tmp").write_bytes(b"torn")  # a write that was killed
    material = generate_key()
    write_key_file(source.path, material)
    assert (source.path.stat().st_mode & 0o777) == 0o600
    assert read_key_file(source.path).material == material
    assert sorted(p.name for p in tmp_path.iterdir()) == ["master-key"]
    with pytest.raises(FileExistsError):
        write_key_file(source.path, generate_key())
    assert read_key_file(source.path).material == material


def test_credentials_directory_wins_over_file_flag(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "master-key").write_bytes(os.urandom(32))
    source = locate_key(tmp_path, tmp_path / "other", env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert source.path == creds / "master-key" and not source.managed


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_group_or_world_readable_key_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "master-key"
    path.write_bytes(os.urandom(32))
    path.chmod(mode)
    with pytest.raises(ConfigurationError, match="readable by its owner only"):
        read_key_file(path)


def test_key_formats(tmp_path: Path) -> None:
    raw = os.urandom(32)
    assert decode_key(raw, tmp_path) == raw
    assert decode_key(raw.hex().encode() + b"\n", tmp_path) == raw
    assert decode_key(base64.b64encode(raw), tmp_path) == raw
    with pytest.raises(ConfigurationError):
        decode_key(b"too short", tmp_path)


def test_missing_explicit_key_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        read_key_file(tmp_path / "nope")
