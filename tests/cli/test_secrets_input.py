"""Secret sources: the two-line format, files, and the hidden prompt."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from cts.cli.errors import UsageError
from cts.cli.secrets_input import (
    Console,
    Secrets,
    parse_secret_text,
    prompt_secrets,
    read_secret_file,
)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_first_line_is_the_secret_second_the_passphrase() -> None:
    assert parse_secret_text("s3cr3t\npass\n", "stdin") == Secrets("s3cr3t", "pass")
    assert parse_secret_text("s3cr3t\r\n", "stdin") == Secrets("s3cr3t", None)


def test_the_secret_keeps_its_own_characters() -> None:
    assert parse_secret_text("  spaced secret \n", "stdin").api_secret == "  spaced secret "


@pytest.mark.parametrize("text", ["", "\n", "\npass\n"])
def test_an_empty_first_line_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="no API secret"):
        parse_secret_text(text, "stdin")


def test_more_than_two_lines_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="3 lines"):
        parse_secret_text("a\nb\nc\n", "stdin")


def test_repr_never_shows_the_values() -> None:
    assert "s3cr3t" not in repr(Secrets("s3cr3t", "pass"))


def test_secret_file(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("s3cr3t\n")
    assert read_secret_file(path) == Secrets("s3cr3t")
    with pytest.raises(UsageError, match="cannot read secret file"):
        read_secret_file(tmp_path / "missing")


def test_prompt_asks_for_the_passphrase_only_when_told() -> None:
    asked: list[str] = []

    def answer(prompt: str) -> str:
        asked.append(prompt)
        return {"API secret: ": "s3cr3t", "Passphrase: ": "pass"}[prompt]

    console = Console(stdin=_Tty(), stderr=io.StringIO(), read_hidden=answer)
    assert prompt_secrets(console, None) == Secrets("s3cr3t")
    assert prompt_secrets(console, "Passphrase: ") == Secrets("s3cr3t", "pass")
    assert asked == ["API secret: ", "API secret: ", "Passphrase: "]


def test_prompt_without_a_terminal_is_a_usage_error() -> None:
    console = Console(stdin=io.StringIO(), stderr=io.StringIO(), read_hidden=lambda _: "x")
    with pytest.raises(UsageError, match="not a terminal"):
        prompt_secrets(console, None)
