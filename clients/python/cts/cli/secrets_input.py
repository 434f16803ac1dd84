"""Where the API secret (and OKX's passphrase) come from: never the command line.

A value on the command line lands in shell history and in `ps` output for
every user on the host, so there is deliberately no `--secret VALUE`. The
three sources, one per run:

- a hidden prompt (`--prompt-secret`, or by default for `add` when stdin is a
  terminal): the secret, then the passphrase when the exchange needs one;
- `--secret-stdin`: line 1 is the secret, an optional line 2 the passphrase;
- `--secret-file FILE`: the same two-line format, read from FILE.

Without a terminal and without a source, `add` stops with a usage error
rather than guessing. Nothing here ever prints a secret.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from cts.cli.errors import UsageError

STDIN = "stdin"
FILE = "file"
PROMPT = "prompt"

SOURCE_HELP = (
    "Secrets are never taken as option values. Give them with --secret-stdin or "
    "--secret-file FILE (line 1: API secret; optional line 2: passphrase, which OKX "
    "requires), or type them at a hidden prompt (--prompt-secret). With none of "
    "these, `add` prompts when stdin is a terminal and otherwise stops with exit "
    "code 2; `edit` keeps the stored secret."
)


@dataclass(frozen=True, repr=False)
class Secrets:
    """The secret parts of a credential. `repr` hides them so a traceback cannot leak them."""

    api_secret: str
    passphrase: str | None = None

    def __repr__(self) -> str:
        return "Secrets(api_secret=<hidden>, passphrase=<hidden>)"


@dataclass
class Console:
    """The user's terminal, injected so tests can stand in for a person typing."""

    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    read_hidden: Callable[[str], str] = getpass.getpass

    @property
    def is_tty(self) -> bool:
        """Whether a person can answer a prompt; piped stdin means a script is driving."""
        isatty = getattr(self.stdin, "isatty", None)
        return bool(isatty and isatty())

    def read_line(self, prompt: str) -> str:
        """A visible prompt on stderr, so `-o json` output on stdout stays clean."""
        self.stderr.write(prompt)
        self.stderr.flush()
        return self.stdin.readline().rstrip("\r\n")


def add_secret_options(parser: argparse.ArgumentParser) -> None:
    """The three mutually exclusive secret sources, shared by `add` and `edit`."""
    group = parser.add_argument_group("secrets", SOURCE_HELP)
    sources = group.add_mutually_exclusive_group()
    sources.add_argument(
        "--secret-stdin",
        dest="secret_source",
        action="store_const",
        const=STDIN,
        help="read the API secret (line 1) and optional passphrase (line 2) from stdin",
    )
    sources.add_argument(
        "--secret-file",
        dest="secret_file",
        metavar="FILE",
        type=Path,
        help="read the API secret (line 1) and optional passphrase (line 2) from FILE",
    )
    sources.add_argument(
        "--prompt-secret",
        dest="secret_source",
        action="store_const",
        const=PROMPT,
        help="ask for the API secret (and passphrase if needed) without echoing",
    )


def chosen_source(args: argparse.Namespace) -> str | None:
    """The source the user asked for, or None when they named none."""
    if getattr(args, "secret_file", None) is not None:
        return FILE
    source: str | None = getattr(args, "secret_source", None)
    return source


def parse_secret_text(text: str, origin: str) -> Secrets:
    """Line 1 is the secret, optional line 2 the passphrase; anything more is a mistake.

    Only line endings are stripped: a secret's own characters are kept as typed.
    """
    lines = text.splitlines()
    while lines and not lines[-1]:
        lines.pop()
    if not lines or not lines[0]:
        raise UsageError(f"no API secret on the first line of {origin}")
    if len(lines) > 2:
        raise UsageError(
            f"{origin} has {len(lines)} lines; expected the API secret and at most a passphrase"
        )
    passphrase = lines[1] if len(lines) == 2 and lines[1] else None
    return Secrets(api_secret=lines[0], passphrase=passphrase)


def read_secret_file(path: Path) -> Secrets:
    """Secrets from a file; an unreadable file is the user's to fix, so a usage error."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise UsageError(f"cannot read secret file {path}: {err.strerror}") from None
    return parse_secret_text(text, f"secret file {path}")


def prompt_secrets(console: Console, passphrase_prompt: str | None) -> Secrets:
    """Hidden prompts; the passphrase is asked only when `passphrase_prompt` is given.

    An empty passphrase answer means "none" (or, for `edit`, "keep the stored one").
    """
    if not console.is_tty:
        raise UsageError("cannot prompt for the API secret: stdin is not a terminal")
    secret = console.read_hidden("API secret: ")
    if not secret:
        raise UsageError("no API secret given")
    passphrase = console.read_hidden(passphrase_prompt) if passphrase_prompt else ""
    return Secrets(api_secret=secret, passphrase=passphrase or None)


def read_secrets(
    source: str,
    args: argparse.Namespace,
    console: Console,
    passphrase_prompt: str | None,
) -> Secrets:
    """Secrets from the chosen source; `passphrase_prompt` matters only when prompting.

    The caller decides whether to ask for a passphrase (it may take a round trip
    to the daemon: does this exchange need one?) before the user types anything.
    """
    if source == STDIN:
        return parse_secret_text(console.stdin.read(), "stdin")
    if source == FILE:
        return read_secret_file(args.secret_file)
    return prompt_secrets(console, passphrase_prompt)
