"""Fixtures of the CLI tests: a fake ConnectionService and a way to run `cts` in-process."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cts.cli.main import run
from tests.support.sim_fixtures import sim, sim_channel, sim_daemon

from .fake_service import FakeServer, start_fake_server


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    # A short directory: Unix socket paths are limited to about 100 bytes.
    with tempfile.TemporaryDirectory(prefix="cts-") as directory:
        server = start_fake_server(str(Path(directory) / "fake.sock"))
        try:
            yield server
        finally:
            server.stop()


@dataclass
class Result:
    """What one in-process `cts` run produced."""

    code: int
    stdout: str
    stderr: str


class TtyInput(io.StringIO):
    """Stdin that claims to be a terminal, for the prompt paths."""

    def isatty(self) -> bool:
        return True


Runner = Callable[..., Result]


@pytest.fixture
def cts(fake: FakeServer) -> Runner:
    """Run `cts` against the fake with captured streams; pass `stdin=` and `answers=`."""

    def invoke(
        *argv: str, stdin: io.StringIO | None = None, answers: list[str] | None = None
    ) -> Result:
        out, err = io.StringIO(), io.StringIO()
        replies = list(answers or [])

        def read_hidden(prompt: str) -> str:
            err.write(prompt)
            return replies.pop(0)

        try:
            code = run(
                ["--addr", fake.address, *argv],
                stdin=stdin or io.StringIO(""),
                stdout=out,
                stderr=err,
                read_hidden=read_hidden,
            )
        except SystemExit as exit_:  # argparse's usage errors
            code = int(exit_.code or 0)
        return Result(code, out.getvalue(), err.getvalue())

    return invoke


__all__ = ["sim", "sim_channel", "sim_daemon"]  # the simulator-backed daemon, for test commands
